/**
 * Pass 1's fast path: the common inode checked where its record lies in the inode table, without
 * decoding it (but a directory's, which pass 2 needs). It takes a regular file or a directory whose
 * extent tree lies wholly in i_block, or a symlink kept in i_block, of an ordinary inode (not reserved, not an orphan, not a quota or orphan file, no
 * attributes, no flag a rule of pass 1 looks at), and only when pass 1's full path would find nothing
 * wrong with the record itself: then it claims the file's blocks and records the inode exactly as the
 * full path would. Anything else (including every problem) is left to the full path, which says what
 * is wrong; so the two cannot disagree on what they find.
 */
import { u16, u32, join64 } from '../core/bytes.js';
import { COMPAT, INCOMPAT, RO_COMPAT } from '../ext4/features.js';
import type { BlockRun } from '../fs/blockmap.js';
import {
  INODE_FIELD_OFFSETS as F,
  I_BLOCK_OFFSET,
  GOOD_OLD_INODE_SIZE,
  S_IFMT,
  S_IFREG,
  S_IFLNK,
  S_IFDIR,
  FL_EXTENTS,
  FL_INDEX,
  FL_HUGE_FILE,
  FL_INLINE_DATA,
  FL_EA_INODE,
  FL_VERITY,
  FL_ENCRYPT,
  FL_COMPR,
  FIRST_INO,
} from '../ext4/inode.js';
import {
  EXTENT_MAGIC,
  EXTENT_HEADER_SIZE,
  EXTENT_ENTRY_SIZE,
  ROOT_MAX_ENTRIES,
  decodeExtentHeader,
  decodeExtent,
} from '../ext4/extent.js';
import { XATTR_MAGIC } from '../ext4/xattr.js';
import { MAX_READ_AHEAD_LIST, type CheckContext } from './context.js';
import { InodeInfo } from './inode-table.js';

/** Flags some rule of pass 1 or 2 looks at (or that change how the map is read): full path (FL_INDEX: below). */
const LOOKED_AT = FL_INLINE_DATA | FL_HUGE_FILE | FL_EA_INODE | FL_VERITY | FL_ENCRYPT | FL_COMPR;
/** A symlink shorter than this keeps its target in i_block (fs/inodes.ts isFastSymlink). */
const FAST_SYMLINK_MAX = 60;

/** What the fast path needs of the file system, worked out once per check. */
export interface QuickRules {
  inodeSize: number;
  bs: number;
  /** The first inode the fast path takes: none of the reserved ones, whatever s_first_ino says. */
  firstPlain: number;
  firstData: number;
  blocksCount: number;
  extents: boolean;
  /** i_blocks is not checked under bigalloc (pass 1's rule). */
  checkBlocks: boolean;
  /** Directories may be indexed. */
  dirIndex: boolean;
  /** s_prealloc_dir_blocks: blocks a directory may keep past its size. */
  preallocDirBlocks: number;
  /** Inodes the superblock names for itself (journal, quota, orphan file): always the full path. */
  special: number[];
}

export function quickRules(ctx: CheckContext): QuickRules {
  const sb = ctx.sb;
  return {
    inodeSize: ctx.raw.inodeSize,
    bs: ctx.bs,
    firstPlain: Math.max(ctx.firstIno, FIRST_INO),
    firstData: ctx.firstData,
    blocksCount: ctx.blocksCount,
    extents: ctx.has(INCOMPAT.extent),
    checkBlocks: !ctx.hasRo(RO_COMPAT.bigalloc),
    dirIndex: (sb.s_feature_compat & COMPAT.dir_index) !== 0,
    preallocDirBlocks: sb.s_prealloc_dir_blocks,
    special: [sb.s_journal_inum, sb.s_usr_quota_inum, sb.s_grp_quota_inum, sb.s_prj_quota_inum, sb.s_orphan_file_inum],
  };
}

/**
 * Checks inode `ino`, whose record is at `at` of `b`, when it is the common case (see the module's
 * comment): its blocks claimed and the inode recorded. False: nothing done, the full path's turn.
 */
export function quickInode(ctx: CheckContext, q: QuickRules, ino: number, b: Uint8Array, at: number): boolean {
  if (ino < q.firstPlain || q.special.includes(ino) || (ctx.orphans.size !== 0 && ctx.orphans.has(ino))) return false;
  const mode = u16(b, at + F.i_mode);
  const type = mode & S_IFMT;
  const links = u16(b, at + F.i_links_count);
  const flags = u32(b, at + F.i_flags);
  if (links === 0 || flags & LOOKED_AT) return false;
  // Directories may be indexed (with dir_index); what pass 2 needs of their flags it reads from the record.
  if (type === S_IFDIR ? flags & FL_INDEX && !q.dirIndex : type !== S_IFREG && type !== S_IFLNK) return false;
  if (type !== S_IFDIR && flags & FL_INDEX) return false;
  if (u32(b, at + F.i_dtime) !== 0 || u32(b, at + F.i_file_acl_lo) !== 0 || u16(b, at + F.l_i_file_acl_high) !== 0)
    return false;
  // i_extra_isize inside the record; no attributes in it.
  if (q.inodeSize > GOOD_OLD_INODE_SIZE) {
    const extra = u16(b, at + F.i_extra_isize);
    if (extra > q.inodeSize - GOOD_OLD_INODE_SIZE) return false;
    const xattrs = GOOD_OLD_INODE_SIZE + extra;
    if (xattrs + 4 <= q.inodeSize && u32(b, at + xattrs) === XATTR_MAGIC) return false;
  }
  const size = join64(u32(b, at + F.i_size_lo), u32(b, at + F.i_size_high));
  const iBlocks = join64(u32(b, at + F.i_blocks_lo), u16(b, at + F.l_i_blocks_high));
  const root = at + I_BLOCK_OFFSET;
  if (type === S_IFLNK) {
    // The target in i_block, no NUL in it, no block counted.
    if (flags & FL_EXTENTS || size <= 0 || size >= FAST_SYMLINK_MAX || (q.checkBlocks && iBlocks !== 0)) return false;
    for (let k = 0; k < size; k++) if (b[root + k] === 0) return false;
    ctx.inodes.set(ino, new InodeInfo(mode, flags, links));
    return true;
  }
  if (!(flags & FL_EXTENTS) || !q.extents) return false;
  const h = decodeExtentHeader(b, root);
  if (h.magic !== EXTENT_MAGIC || h.depth !== 0 || h.entries > h.max || h.max > ROOT_MAX_ENTRIES) return false;
  // Extents in order, none empty, overlapping or outside the file system (what the strict map refuses).
  let blocks = 0;
  let end = 0;
  let lastInit = -1;
  for (let k = 0; k < h.entries; k++) {
    const e = decodeExtent(b, root + EXTENT_HEADER_SIZE + k * EXTENT_ENTRY_SIZE);
    if (e.len === 0 || (k > 0 && e.lblk < end)) return false;
    if (e.pblk < q.firstData || e.pblk + e.len > q.blocksCount) return false;
    blocks += e.len;
    end = e.lblk + e.len;
    if (!e.uninit) lastInit = end - 1;
  }
  // i_blocks in 512-byte units.
  if (q.checkBlocks && iBlocks !== (blocks * q.bs) / 512) return false;
  const bs = q.bs;
  if (type === S_IFREG) {
    // The size reaches the last initialized block.
    if (lastInit >= 0 && size < lastInit * bs) return false;
    for (let k = 0; k < h.entries; k++) {
      const e = decodeExtent(b, root + EXTENT_HEADER_SIZE + k * EXTENT_ENTRY_SIZE);
      ctx.claim(e.pblk, e.len, ino, 'block');
    }
    ctx.inodes.set(ino, new InodeInfo(mode, flags, links));
    return true;
  }
  // A directory: whole blocks, as many as mapped (or fewer, by the blocks it may keep preallocated);
  // its record and map kept for pass 2, its blocks listed for reading ahead.
  const i = ctx.raw.decodeRecord(ino, b, at);
  const n = i.size / bs;
  if (i.size % bs || (n !== end && !(n < end && end - n <= q.preallocDirBlocks))) return false;
  const runs: BlockRun[] = [];
  for (let k = 0; k < h.entries; k++) {
    const e = decodeExtent(b, root + EXTENT_HEADER_SIZE + k * EXTENT_ENTRY_SIZE);
    const r: BlockRun = { lblk: e.lblk, pblk: e.pblk, len: e.len, uninit: !!e.uninit };
    runs.push(r);
    ctx.claim(r.pblk, r.len, ino, 'block');
    if (!r.uninit)
      for (let j = 0; j < r.len && (r.lblk + j) * bs < i.size && ctx.dirBlocks.length < MAX_READ_AHEAD_LIST; j++)
        ctx.dirBlocks.push(r.pblk + j);
  }
  ctx.inodes.set(ino, new InodeInfo(mode, flags, links, false, { inode: i, runs }));
  return true;
}
