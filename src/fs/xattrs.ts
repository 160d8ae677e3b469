/**
 * Extended attributes, read side: the in-inode area after i_extra_isize, the attribute block (checksum
 * verified), values kept in EA inodes, the VFS view (full names, ACLs converted) and inline data, which
 * is i_block followed by the system.data attribute.
 */
import { Ext4Error } from '../core/errors.js';
import { u16, u32 } from '../core/bytes.js';
import { decodeInode, GOOD_OLD_INODE_SIZE, type Inode } from '../ext4/inode.js';
import {
  XATTR_MAGIC,
  XATTR_BLOCK_HEADER,
  aclFromDisk,
  decodeXattrEntries,
  isInlineDataAttr,
  xattrBlockChecksum,
  xattrFullName,
  type RawXattr,
  type XattrEntry,
} from '../ext4/xattr.js';
import { inodeBytes } from './inodes.js';
import type { Ext4Volume } from './volume.js';

/** Values kept in EA inodes are read into memory up to this size. */
const MAX_VALUE_INODE_BYTES = 64 << 20;

/**
 * What reading attributes needs beyond the volume: reading an EA inode's value is reading a file, which
 * fs/file.ts does (and which itself reads attributes for inline data), so the front passes it in.
 */
export interface XattrVolume extends Ext4Volume {
  readFileBytes(ino: number, max?: number): Uint8Array;
}

/** The attribute area inside an inode's bytes: [start, end) after i_extra_isize, when it has one. */
export function inodeXattrArea(v: Ext4Volume, raw: Uint8Array): { start: number; end: number } | undefined {
  if (v.inodeSize <= GOOD_OLD_INODE_SIZE) return undefined;
  const start = GOOD_OLD_INODE_SIZE + u16(raw, 128);
  if (start + 4 > v.inodeSize) return undefined;
  return { start, end: v.inodeSize };
}

/**
 * An inode's attributes as stored: in-inode entries, then those of its attribute block. Values kept
 * in EA inodes are read unless `withInodeValues` is false.
 */
export function storedXattrs(
  v: XattrVolume,
  ino: number,
  raw = inodeBytes(v, ino),
  withInodeValues = true,
): { inInode: RawXattr[]; block: RawXattr[]; blockNr: number; refcount: number } {
  const where = { inode: ino };
  const area = inodeXattrArea(v, raw);
  const inInode =
    area && u32(raw, area.start) === XATTR_MAGIC
      ? decodeXattrEntries(raw, area.start + 4, area.end, area.start + 4, area.end, where)
      : [];
  const i = decodeInode(raw, 0, v.inodeSize);
  let block: RawXattr[] = [];
  let refcount = 0;
  if (i.fileAcl) {
    const b = v.readBlocks(i.fileAcl);
    if (u32(b, 0) !== XATTR_MAGIC || u32(b, 8) !== 1)
      throw new Ext4Error('CORRUPT', `inode ${ino}: bad extended attribute block ${i.fileAcl}`, {
        inode: ino,
        block: i.fileAcl,
      });
    if (
      v.verify &&
      v.csum &&
      !v.cache.isTrusted(i.fileAcl) &&
      xattrBlockChecksum(v.csumSeed, i.fileAcl, b) !== u32(b, 16)
    )
      throw new Ext4Error('BAD_CHECKSUM', `inode ${ino}: extended attribute block ${i.fileAcl} checksum mismatch`, {
        inode: ino,
        block: i.fileAcl,
      });
    block = decodeXattrEntries(b, XATTR_BLOCK_HEADER, v.blockSize, 0, v.blockSize, { ...where, block: i.fileAcl });
    refcount = u32(b, 4);
  }
  if (withInodeValues)
    for (const x of [...inInode, ...block]) {
      if (!x.valueInum) continue;
      if (x.valueSize > MAX_VALUE_INODE_BYTES)
        throw new Ext4Error('CORRUPT', `inode ${ino}: attribute value of ${x.valueSize} bytes`, where);
      if (x.valueInum === ino)
        throw new Ext4Error('CORRUPT', `inode ${ino}: attribute value inode refers to itself`, where);
      x.value = v.readFileBytes(x.valueInum, MAX_VALUE_INODE_BYTES).slice(0, x.valueSize);
    }
  return { inInode, block, blockNr: i.fileAcl, refcount };
}

/** In-inode attributes then block attributes, as stored (index, name suffix, value). */
export function rawXattrs(
  v: XattrVolume,
  ino: number,
  raw = inodeBytes(v, ino),
): { index: number; name: Uint8Array; value: Uint8Array }[] {
  const s = storedXattrs(v, ino, raw);
  return [...s.inInode, ...s.block];
}

/** Extended attributes with full names, ACLs in the VFS format; inline-data storage is hidden. */
export function xattrs(v: XattrVolume, ino: number): XattrEntry[] {
  const out: XattrEntry[] = [];
  for (const x of rawXattrs(v, ino)) {
    if (isInlineDataAttr(x)) continue;
    const full = xattrFullName(x);
    if (full === undefined) continue;
    out.push({ name: full, value: x.index === 2 || x.index === 3 ? aclFromDisk(x.value) : x.value });
  }
  return out;
}

/** Inline data: i_block then the system.data attribute. */
export function inlineData(v: XattrVolume, ino: number, i: Inode): Uint8Array {
  const x = rawXattrs(v, ino).find(isInlineDataAttr);
  const extra = x?.value ?? new Uint8Array(0);
  const all = new Uint8Array(60 + extra.length);
  all.set(i.block);
  all.set(extra, 60);
  return all;
}
