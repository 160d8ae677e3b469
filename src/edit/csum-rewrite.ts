/**
 * Every checksum that depends on the file system's checksum seed, moved from one seed to another, into
 * the open transaction (tune's `--rewrite-checksums`, and `^metadata_csum_seed` when the stored seed is
 * not the UUID's): with metadata_csum the seed is crc32c(~0, uuid) unless metadata_csum_seed stores it
 * (kernel doc: super.rst s_checksum_seed, checksums.rst). What depends on it:
 * - each descriptor's checksum and the bitmap checksums it holds (every copy of the table);
 * - each inode's checksum (seeded by the fs seed, the inode number and generation), and through that
 *   inode seed: its extent tree blocks, a directory's leaf tails and htree dx tails, the orphan file's
 *   block tails;
 * - each extended attribute block (fs seed and block number);
 * - the MMP block (refused here: it is written outside the journal) and EA-inode value hashes (refused).
 * Not the superblock's own checksum (crc32c from ~0) nor the journal's (jbd2 seeds them with the uuid in
 * the journal superblock, which mkfs copied from the fs and tune2fs leaves; journal.rst).
 *
 * Every old checksum is verified before it is replaced: a block that does not match is an error and
 * nothing is written (a rewrite must not bless damage). Bitmap checksums are moved without reading the
 * bitmaps: crc32c is affine in its starting value, so for equal data crc(S1, d) = crc(S0, d) xor
 * crc(S1, 0^n) xor crc(S0, 0^n), n the bitmap's length.
 */
import { Ext4Error } from '../core/errors.js';
import { put32, u16, u32, isZero } from '../core/bytes.js';
import { crc32c } from '../core/crc32c.js';
import { INCOMPAT } from '../ext4/features.js';
import { testBit } from '../ext4/bitmap.js';
import {
  decodeGroupDesc,
  encodeGroupDesc,
  groupDescChecksum,
  putGroupDescChecksum,
  BG_BLOCK_UNINIT,
  BG_INODE_UNINIT,
} from '../ext4/group-desc.js';
import {
  decodeInode,
  inodeChecksum,
  inodeCsumSeed,
  setInodeChecksum,
  storedInodeChecksum,
  FL_EXTENTS,
  I_BLOCK_OFFSET,
  S_IFDIR,
  S_IFMT,
  type Inode,
} from '../ext4/inode.js';
import { extentBlockChecksumOk, sealExtentBlock } from '../ext4/extent.js';
import { DX_NODE_COUNT_OFFSET, dxRootCountOffset, dxTailChecksum, readDxHeader } from '../ext4/htree.js';
import { xattrBlockChecksum } from '../ext4/xattr.js';
import { ORPHAN_BLOCK_MAGIC, ORPHAN_TAIL_BYTES, orphanBlockChecksum } from '../ext4/orphan.js';
import { inodesPerBlock } from '../ext4/geometry.js';
import type { Volume } from './volume.js';
import { rewriteDescriptors } from './sb-copies.js';

/** Inode table blocks read at once. */
const TABLE_CHUNK = 64;

function mismatch(what: string, ctx: { inode?: number; block?: number }): Ext4Error {
  return new Ext4Error(
    'BAD_CHECKSUM',
    `${what} does not match its checksum; the file system needs a check (e2fsck) before its checksums can be rewritten`,
    ctx,
  );
}

/** Refuses what a seed change cannot carry through the journal, before anything is changed. */
export function checkRewritable(v: Volume): void {
  const inc = v.sb.s_feature_incompat;
  if (inc & INCOMPAT.mmp)
    throw new Ext4Error(
      'UNSUPPORTED_FEATURE',
      `${v.name}: rewriting checksums is not supported with mmp (its block is written outside the journal); change the UUID with the checksum seed instead (without --rewrite-checksums)`,
    );
  if (inc & INCOMPAT.ea_inode)
    throw new Ext4Error(
      'UNSUPPORTED_FEATURE',
      `${v.name}: rewriting checksums is not supported with ea_inode (attribute value hashes depend on the seed); change the UUID with the checksum seed instead`,
    );
}

/**
 * Moves every seed-dependent checksum from `oldSeed` to `newSeed` in the open transaction (see the
 * module comment). Returns the number of blocks changed. The superblock itself is the caller's.
 */
export function rewriteChecksums(v: Volume, oldSeed: number, newSeed: number): number {
  checkRewritable(v);
  const xattrBlocks = new Set<number>();
  for (let g = 0; g < v.groupCount; g++) rewriteGroupInodes(v, g, oldSeed, newSeed, xattrBlocks);
  for (const blk of xattrBlocks) {
    const b = v.r.readBlocks(blk);
    if (xattrBlockChecksum(oldSeed, blk, b) !== u32(b, 16)) throw mismatch(`attribute block ${blk}`, { block: blk });
    const m = v.tx.modify(blk);
    put32(m, 16, xattrBlockChecksum(newSeed, blk, m));
  }
  const bbDelta = seedDelta(oldSeed, newSeed, v.bpg >>> 3);
  const ibDelta = seedDelta(oldSeed, newSeed, v.ipg >>> 3);
  const ds = v.r.descSize;
  rewriteDescriptors(v.tx, v.r.geo, (g, b, off) => {
    if (groupDescChecksum(oldSeed, g, b, off, ds) !== (b[off + 0x1e]! | (b[off + 0x1f]! << 8)))
      throw mismatch(`the descriptor of group ${g}`, {});
    const d = decodeGroupDesc(b, off, ds);
    if (!(d.flags & BG_BLOCK_UNINIT)) d.blockBitmapCsum = (d.blockBitmapCsum ^ bbDelta) >>> 0;
    if (!(d.flags & BG_INODE_UNINIT)) d.inodeBitmapCsum = (d.inodeBitmapCsum ^ ibDelta) >>> 0;
    encodeGroupDesc(b, off, ds, d);
    putGroupDescChecksum(b, off, groupDescChecksum(newSeed, g, b, off, ds));
  });
  return v.tx.blocks.size;
}

/** What a checksum over `n` bytes changes by when its seed goes from `a` to `b` (the data the same). */
function seedDelta(a: number, b: number, n: number): number {
  const zeros = new Uint8Array(n);
  return (crc32c(a, zeros) ^ crc32c(b, zeros)) >>> 0;
}

/** The inodes of group `g`'s initialized table, and what each in-use one owns. */
function rewriteGroupInodes(v: Volume, g: number, oldSeed: number, newSeed: number, xattrs: Set<number>): void {
  const r = v.r;
  const gd = r.groupDesc(g);
  if (v.hasGroupCsum && gd.flags & BG_INODE_UNINIT) return;
  const used = v.ipg - (v.hasGroupCsum ? gd.itableUnused : 0);
  if (used <= 0) return;
  const bitmap = r.readBlocks(gd.inodeBitmap).slice();
  const isz = v.inodeSize;
  const perBlock = inodesPerBlock(r.geo);
  const tableBlocks = Math.ceil(used / perBlock);
  for (let k0 = 0; k0 < tableBlocks; k0 += TABLE_CHUNK) {
    const n = Math.min(TABLE_CHUNK, tableBlocks - k0);
    const chunk = r.readBlocks(gd.inodeTable + k0, n).slice();
    for (let k = 0; k < n; k++) {
      const block = gd.inodeTable + k0 + k;
      for (let s = 0; s < perBlock; s++) {
        const index = (k0 + k) * perBlock + s;
        if (index >= used) break;
        const off = k * v.bs + s * isz;
        if (isZero(chunk, off, isz)) continue;
        const ino = g * v.ipg + index + 1;
        const ok = inodeChecksum(oldSeed, ino, chunk, off, isz) === storedInodeChecksum(chunk, off, isz);
        const inUse = testBit(bitmap, index);
        if (!ok) {
          // A free inode's stale record is nobody's: e2fsck and the kernel never verify it.
          if (inUse) throw mismatch(`inode ${ino}`, { inode: ino });
          continue;
        }
        if (inUse) {
          const acl = u32(chunk, off + I_FILE_ACL) + u16(chunk, off + I_FILE_ACL_HIGH) * 0x1_0000_0000;
          if (acl) xattrs.add(acl);
          if (ownsSeededBlocks(v, ino, chunk, off)) {
            const i = decodeInode(chunk, off, isz);
            const from = inodeCsumSeed(oldSeed, ino, i.generation);
            reseedOwned(v, ino, i, from, inodeCsumSeed(newSeed, ino, i.generation));
          }
        }
        const m = v.tx.modify(block);
        setInodeChecksum(newSeed, ino, m, s * isz, isz);
      }
    }
  }
}

const I_FLAGS = 0x20;
const I_FILE_ACL = 0x68;
const I_FILE_ACL_HIGH = 0x76;
/** eh_depth of the extent header at the start of i_block. */
const I_EXTENT_DEPTH = I_BLOCK_OFFSET + 6;

/**
 * Whether an in-use inode may own blocks seeded by its inode seed (a directory, an extent tree deeper
 * than the inode, the orphan file), read from the raw record: most inodes (small files) own none, and
 * are spared decoding and a walk of their map.
 */
function ownsSeededBlocks(v: Volume, ino: number, b: Uint8Array, off: number): boolean {
  if ((u16(b, off) & S_IFMT) === S_IFDIR || ino === v.sb.s_orphan_file_inum) return true;
  return (u32(b, off + I_FLAGS) & FL_EXTENTS) !== 0 && u16(b, off + I_EXTENT_DEPTH) > 0;
}

/**
 * Moves the checksums of the blocks inode `ino` owns that its inode seed seeds (crc32c of the fs seed,
 * the inode number and generation) from `oldIs` to `newIs`: the file system seed changed (tune), or the
 * inode's number did (a shrink moving it). Each old checksum is verified first. Directory leaf tails are
 * left due at commit, where any earlier change of the same leaf in the edit is sealed too.
 */
export function reseedOwned(v: Volume, ino: number, i: Inode, oldIs: number, newIs: number): void {
  const r = v.r;
  if (!r.hasBlockMap(i)) return;
  const bs = v.bs;
  if (i.flags & FL_EXTENTS) {
    for (const blk of r.mapping(ino, i, true).metaBlocks) {
      if (!extentBlockChecksumOk(r.readBlocks(blk), oldIs))
        throw mismatch(`extent block ${blk} of inode ${ino}`, { inode: ino, block: blk });
      sealExtentBlock(v.tx.modify(blk), newIs);
    }
  }
  if ((i.mode & S_IFMT) === S_IFDIR) {
    // dirBlocks verifies every leaf tail and dx tail against the old seed as it reads.
    for (const d of r.dirBlocks(ino, i)) {
      if (d.dx) {
        const countOffset = d.lblk === 0 ? dxRootCountOffset(d.buf) : DX_NODE_COUNT_OFFSET;
        const { limit, count } = readDxHeader(d.buf, countOffset);
        const tail = countOffset + limit * 8;
        if (count > limit || tail + 8 > bs) continue;
        const m = v.tx.modify(d.pblk);
        put32(m, tail + 4, dxTailChecksum(newIs, m, countOffset, limit, count));
      } else if (d.tail) {
        v.tx.modify(d.pblk);
        v.sealLeafLater(d.pblk, newIs);
      }
    }
  }
  if (ino === v.sb.s_orphan_file_inum) {
    for (const run of r.blockRuns(ino, i))
      for (let k = 0; k < run.len; k++) {
        const blk = run.pblk + k;
        const b = r.readBlocks(blk);
        if (u32(b, bs - ORPHAN_TAIL_BYTES) !== ORPHAN_BLOCK_MAGIC) continue;
        if (orphanBlockChecksum(oldIs, blk, b) !== u32(b, bs - 4))
          throw mismatch(`orphan file block ${blk}`, { block: blk });
        const m = v.tx.modify(blk);
        put32(m, bs - 4, orphanBlockChecksum(newIs, blk, m));
      }
  }
}
