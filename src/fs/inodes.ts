/**
 * Inodes: where an inode lies, its record read (inode table blocks prefetched) and its checksum verified
 * once, decoding with the checks past the checksum, the per-inode facts other modules ask (allocated
 * bytes, checksum seed, whether i_block holds a block map, readable contents), and the size and block
 * count a writer sets. The records themselves are written by the edit (WritableVolume.writeInode).
 */
import { Ext4Error } from '../core/errors.js';
import { isZero } from '../core/bytes.js';
import { RO_COMPAT } from '../ext4/features.js';
import { groupOfInode, inodeIndex, inodesPerBlock, inodeTableBlocks } from '../ext4/geometry.js';
import {
  decodeInode,
  inodeChecksum,
  inodeCsumSeed,
  storedInodeChecksum,
  type Inode,
  S_IFMT,
  S_IFDIR,
  S_IFLNK,
  S_IFCHR,
  S_IFBLK,
  S_IFIFO,
  S_IFSOCK,
  FL_EXTENTS,
  FL_INLINE_DATA,
  FL_HUGE_FILE,
  FL_ENCRYPT,
  FL_COMPR,
  GOOD_OLD_INODE_SIZE,
} from '../ext4/inode.js';
import type { Ext4Volume } from './volume.js';
import type { WritableVolume } from './writable.js';

/** Where inode `ino` lies: its inode table block and byte offset. */
export function inodeLocation(
  v: Ext4Volume,
  ino: number,
): { block: number; offset: number; group: number; index: number } {
  if (!Number.isSafeInteger(ino) || ino < 1 || ino > v.sb.s_inodes_count)
    throw new Ext4Error('CORRUPT', `inode number ${ino} is out of range`, { inode: ino });
  const group = groupOfInode(v.geo, ino);
  const index = inodeIndex(v.geo, ino);
  const perBlock = inodesPerBlock(v.geo);
  const block = v.groupDesc(group).inodeTable + Math.floor(index / perBlock);
  return { block, offset: (index % perBlock) * v.inodeSize, group, index };
}

/**
 * The cached block holding inode `ino` and its offset, checked. Inode table blocks are read 16 at a time
 * (within the group's table), so walking a tree does not cost a host read per table block.
 */
export function inodeRecord(v: Ext4Volume, ino: number): { buf: Uint8Array; off: number } {
  const { block, offset: off, index } = inodeLocation(v, ino);
  const cache = v.cache;
  if (!cache.has(block)) {
    const k = Math.floor(index / inodesPerBlock(v.geo));
    const n = Math.max(1, Math.min(16, inodeTableBlocks(v.geo) - k, v.blocksCount - block));
    if (n > 1 && !cache.changed) cache.prefetch(block, n);
  }
  const b = v.readBlocks(block);
  if (v.verify && v.csum && !cache.isTrusted(block) && !v.verifiedInodes.has(ino) && !isZero(b, off, v.inodeSize)) {
    if (inodeChecksum(v.csumSeed, ino, b, off, v.inodeSize) !== storedInodeChecksum(b, off, v.inodeSize))
      throw new Ext4Error('BAD_CHECKSUM', `inode ${ino} checksum mismatch`, { inode: ino, block });
    if (!cache.overlaid(block)) {
      if (v.verifiedInodes.size >= 100_000) v.verifiedInodes.clear();
      v.verifiedInodes.add(ino);
    }
  }
  return { buf: b, off };
}

/** Inode `ino` from its record at `off` of `buf` (checks past the checksum: i_extra_isize). */
export function decodeRecord(v: Ext4Volume, ino: number, buf: Uint8Array, off: number): Inode {
  const i = decodeInode(buf, off, v.inodeSize);
  if (v.inodeSize > GOOD_OLD_INODE_SIZE && i.extraIsize > v.inodeSize - GOOD_OLD_INODE_SIZE)
    throw new Ext4Error('CORRUPT', `inode ${ino} has i_extra_isize ${i.extraIsize} past the inode`, { inode: ino });
  if (!(v.sb.s_feature_ro_compat & RO_COMPAT.large_file) && (i.mode & S_IFMT) === S_IFDIR)
    i.size = i.size % 0x1_0000_0000;
  return i;
}

export function readInode(v: Ext4Volume, ino: number): Inode {
  const { buf, off } = inodeRecord(v, ino);
  return decodeRecord(v, ino, buf, off);
}

/** The raw bytes of inode `ino` (inodeSize of them), a copy the caller may keep. */
export function inodeBytes(v: Ext4Volume, ino: number): Uint8Array {
  const { buf, off } = inodeRecord(v, ino);
  return buf.slice(off, off + v.inodeSize);
}

/** 512-byte units to bytes, honouring huge_file. */
export function allocatedBytes(v: Ext4Volume, i: Inode): number {
  return i.flags & FL_HUGE_FILE && v.sb.s_feature_ro_compat & RO_COMPAT.huge_file
    ? i.blocks * v.blockSize
    : i.blocks * 512;
}

/** The checksum seed of inode `ino` with generation `gen`. */
export function inodeSeed(v: Ext4Volume, ino: number, gen: number): number {
  return inodeCsumSeed(v.csumSeed, ino, gen);
}

/** A symlink whose target lives in i_block (e2fsprogs and the kernel: shorter than 60 bytes, no extents). */
export function isFastSymlink(i: Inode): boolean {
  return (i.mode & S_IFMT) === S_IFLNK && !(i.flags & (FL_INLINE_DATA | FL_EXTENTS)) && i.size > 0 && i.size < 60;
}

/** True when the inode keeps a block map in i_block (not inline data, a fast symlink or a device). */
export function hasBlockMap(i: Inode): boolean {
  if (i.flags & FL_INLINE_DATA || isFastSymlink(i)) return false;
  // Device numbers, FIFOs and sockets keep no blocks; their i_block is not a map.
  const t = i.mode & S_IFMT;
  return !(t === S_IFCHR || t === S_IFBLK || t === S_IFIFO || t === S_IFSOCK);
}

/** Refuses (UNSUPPORTED_FEATURE) an inode whose contents cannot be read here: encrypted, compressed. */
export function checkReadable(ino: number, i: Inode): void {
  if (i.flags & FL_ENCRYPT)
    throw new Ext4Error('UNSUPPORTED_FEATURE', `inode ${ino} is encrypted (encrypt): its contents cannot be read`, {
      inode: ino,
    });
  if (i.flags & FL_COMPR)
    throw new Ext4Error('UNSUPPORTED_FEATURE', `inode ${ino} is compressed (compression)`, { inode: ino });
}

// ---- writing ----

/** Records a file size, setting large_file when it passes 2 GiB (what the kernel does). */
export function setSize(v: WritableVolume, inode: Inode, size: number): void {
  inode.size = size;
  if (size > 0x7fffffff) v.needRoCompat(RO_COMPAT.large_file);
}

/** i_blocks for a file with `fsBlocks` blocks of data and map, plus its attribute block. */
export function setFileBlocks(v: WritableVolume, inode: Inode, fsBlocks: number): void {
  v.setBlocks512(inode, (fsBlocks + (inode.fileAcl ? 1 : 0)) * (v.bs / 512));
}
