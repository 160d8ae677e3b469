/**
 * Pass 1 (e2fsck pass 1): every inode of every initialized inode table. For each in use: its checksum,
 * mode, flags against the features, dtime, its block map or extent tree (structure, checksums, ranges),
 * the blocks it claims (never twice, never fixed metadata), i_blocks and i_size against the map, its
 * attribute block. Reserved inodes get their own rules (root, journal, resize inode).
 */
import { COMPAT, INCOMPAT, RO_COMPAT } from '../ext4/features.js';
import { BG_INODE_UNINIT } from '../ext4/group-desc.js';
import {
  S_IFMT,
  S_IFDIR,
  S_IFREG,
  S_IFLNK,
  FL_EXTENTS,
  FL_INDEX,
  FL_HUGE_FILE,
  FL_INLINE_DATA,
  FL_EA_INODE,
  FL_VERITY,
  ROOT_INO,
  INODE_FIELD_OFFSETS,
  inodeChecksum,
  storedInodeChecksum,
  type Inode,
  BAD_BLOCKS_INO,
  RESIZE_INO,
} from '../ext4/inode.js';
import { fileTypeOf } from '../ext4/filetype.js';
import type { BlockRun } from '../fs/blockmap.js';
import { groupInode } from '../ext4/geometry.js';
import { isZero, u16, u32 } from '../core/bytes.js';
import { XATTR_MAGIC, isInlineDataAttr } from '../ext4/xattr.js';
import { MAX_READ_AHEAD_LIST, type CheckContext } from './context.js';
import { InodeInfo } from './inode-table.js';
import { quickInode, quickRules } from './quick-inode.js';
import { checkResizeInode } from './resize-inode.js';

const MODE = INODE_FIELD_OFFSETS.i_mode;
const LINKS = INODE_FIELD_OFFSETS.i_links_count;

/** Inode table blocks read in one request (into one buffer, reused: no allocation per read). */
const TABLE_CHUNK_BLOCKS = 64;

export function checkInodes(ctx: CheckContext): void {
  const { raw } = ctx;
  const perBlock = ctx.bs / raw.inodeSize;
  const size = raw.inodeSize;
  const csum = ctx.r !== raw && raw.csum;
  const seed = raw.csumSeed;
  const q = quickRules(ctx);
  const table = new Uint8Array(TABLE_CHUNK_BLOCKS * ctx.bs);
  for (let g = 0; g < ctx.groupCount; g++) {
    const d = ctx.gd(g);
    if (ctx.groupCsum && d.flags & BG_INODE_UNINIT) continue;
    const n = ctx.groupCsum ? ctx.ipg - Math.min(ctx.ipg, d.itableUnused) : ctx.ipg;
    // An inode table outside the file system cannot be read (pass 0 reported it).
    if (ctx.metaAt(d.inodeTable) === undefined) continue;
    const tableBlocks = Math.ceil(n / perBlock);
    // The used part of the table, a stretch at a time, as it currently is (a replayed journal's blocks
    // in); records with no links and no mode are unused and skipped without decoding (most of a table).
    let from = 0;
    let to = 0;
    for (let idx = 0; idx < n; idx++) {
      const ino = groupInode(raw.geo, g, idx);
      if (ino > ctx.inodesCount) return;
      const k = Math.floor(idx / perBlock);
      if (k >= to) {
        from = k;
        to = Math.min(k + TABLE_CHUNK_BLOCKS, tableBlocks, ctx.blocksCount - d.inodeTable);
        raw.cache.readDataInto(d.inodeTable + from, table.subarray(0, (to - from) * ctx.bs));
      }
      const at = (k - from) * ctx.bs + (idx % perBlock) * size;
      const rec = table;
      if (u16(rec, at + LINKS) === 0 && u16(rec, at + MODE) === 0 && ino >= ctx.firstIno && !ctx.orphans.has(ino))
        continue;
      // The record is checked and decoded where it lies.
      if (
        csum &&
        !isZero(rec, at, size) &&
        inodeChecksum(seed, ino, rec, at, size) !== storedInodeChecksum(rec, at, size)
      ) {
        ctx.problems.add('INODE_CHECKSUM', `inode ${ino}: checksum does not match`, { inode: ino });
        ctx.fixInode(ino, { checksum: true });
      }
      if (quickInode(ctx, q, ino, rec, at)) continue;
      let i: Inode;
      try {
        i = raw.decodeRecord(ino, rec, at);
      } catch (e) {
        ctx.problems.fromError('INODE_EXTRA_SIZE', e, { inode: ino });
        continue;
      }
      checkInode(ctx, ino, i, hasInodeXattrs(ctx, rec, at));
    }
  }
  checkXattrRefcounts(ctx);
}

function checkInode(ctx: CheckContext, ino: number, i: Inode, inInodeXattrs: boolean): void {
  const p = ctx.problems;
  const reserved = ino < ctx.firstIno && ino !== ROOT_INO;
  if (ino === BAD_BLOCKS_INO) {
    claimMap(ctx, ino, i);
    return;
  }
  if (ino === RESIZE_INO) {
    checkResizeInode(ctx, i);
    return;
  }
  const isJournal = ino === ctx.sb.s_journal_inum && !!(ctx.sb.s_feature_compat & COMPAT.has_journal);
  const special = isJournal || isSpecialInode(ctx, ino);
  if (reserved && !special) {
    // Other reserved inodes keep no files, but blocks they do map are in use (a journal left behind).
    if (i.mode && ctx.raw.hasBlockMap(i))
      try {
        const m = ctx.raw.mapping(ino, i, true);
        for (const r of m.runs) ctx.claim(r.pblk, r.len, ino, 'block');
        for (const b of m.metaBlocks) ctx.claim(b, 1, ino, 'map block');
      } catch {
        // Unreadable: nothing to claim.
      }
    return;
  }
  const orphan = ctx.orphans.has(ino);
  // A deletion time below the inode count is an orphan list's link: an inode the list's clean-up did
  // not reach (the list was cut). e2fsck -p stops on these: no fix is kept.
  const listLink = !orphan && i.dtime !== 0 && i.dtime < ctx.inodesCount && ctx.lowDtimeCheck;
  if (listLink) {
    p.add('INODE_DTIME', `inode ${ino} was on an orphan list its clean-up did not reach (dtime ${i.dtime})`, {
      inode: ino,
    });
    ctx.fixInode(ino, { lowDtime: true });
  }
  if (i.linksCount === 0 && !orphan && !special) {
    // Deleted, but with no deletion time: e2fsck -p sets it.
    if (ino >= ctx.firstIno && i.mode && !i.dtime) {
      p.add('INODE_DTIME', `deleted inode ${ino} has no deletion time`, { inode: ino });
      ctx.fixInode(ino, { dtime: 'set' });
    }
    return;
  }
  const type = fileTypeOf(i.mode);
  if (ino === ROOT_INO && (i.mode & S_IFMT) !== S_IFDIR) {
    p.add('ROOT', `the root inode is not a directory (mode 0${i.mode.toString(8)})`, { inode: ino });
    return;
  }
  if (!type) {
    p.add('INODE_MODE', `inode ${ino}: mode 0${i.mode.toString(8)} is no file type`, { inode: ino });
    if (ino >= ctx.firstIno) ctx.fixInode(ino, { clear: true });
    ctx.inodes.set(ino, new InodeInfo(i.mode, i.flags, i.linksCount));
    return;
  }
  if (i.dtime && !orphan && i.linksCount && !listLink) {
    p.add('INODE_DTIME', `inode ${ino} is in use but has a deletion time`, { inode: ino });
    ctx.fixInode(ino, { dtime: 'clear' });
  }
  checkFlags(ctx, ino, i);
  // Attributes (read once, only when the inode has any): checked, and whether values live in EA inodes.
  let eaValues = false;
  let inlineAttr = false;
  if (i.fileAcl && !(ctx.sb.s_feature_compat & COMPAT.ext_attr))
    p.add('XATTR', `inode ${ino} has attribute block ${i.fileAcl} but the file system has no ext_attr`, {
      inode: ino,
    });
  else if (i.fileAcl || inInodeXattrs)
    try {
      const x = ctx.r.storedXattrs(ino, undefined, false);
      for (const e of [...x.inInode, ...x.block])
        if (e.valueInum) {
          eaValues = true;
          ctx.eaValueInodes.add(e.valueInum);
        }
      inlineAttr = x.inInode.some(isInlineDataAttr);
    } catch (e) {
      ctx.eaValuesComplete = false;
      p.fromError('XATTR', e, { inode: ino });
    }
  // Inline data lives in i_block and the system.data attribute, which must be there (even empty).
  if (i.flags & FL_INLINE_DATA && !inlineAttr)
    p.add('INODE_FLAGS', `inode ${ino} has inline data but no system.data attribute`, { inode: ino });
  const runs = claimMap(ctx, ino, i, eaValues);
  // An attribute value inode is named by the attribute, not by a directory.
  ctx.inodes.set(
    ino,
    new InodeInfo(
      i.mode,
      i.flags,
      i.linksCount,
      special || !!(i.flags & FL_EA_INODE),
      // A directory's record and map, for pass 2.
      runs && (i.mode & S_IFMT) === S_IFDIR ? { inode: i, runs } : undefined,
    ),
  );
  if (i.fileAcl && (i.fileAcl < ctx.firstData || i.fileAcl >= ctx.blocksCount))
    ctx.fixInode(ino, { dropXattrBlock: true });
  if (i.fileAcl) {
    const refs = ctx.xattrRefs.get(i.fileAcl);
    if (refs === undefined) ctx.claim(i.fileAcl, 1, ino, 'attribute block');
    ctx.xattrRefs.set(i.fileAcl, (refs ?? 0) + 1);
  }
}

/** Whether the inode record at `offset` of `b` has in-inode attributes (their magic, read in place). */
function hasInodeXattrs(ctx: CheckContext, b: Uint8Array, offset: number): boolean {
  const size = ctx.raw.inodeSize;
  if (size <= 128) return false;
  const start = 128 + u16(b, offset + 128);
  return start + 4 <= size && u32(b, offset + start) === XATTR_MAGIC;
}

/** Files of the file system itself that the superblock names: quota files, the orphan file. */
function isSpecialInode(ctx: CheckContext, ino: number): boolean {
  const sb = ctx.sb;
  return (
    ino === sb.s_usr_quota_inum ||
    ino === sb.s_grp_quota_inum ||
    ino === sb.s_prj_quota_inum ||
    ino === sb.s_orphan_file_inum
  );
}

function checkFlags(ctx: CheckContext, ino: number, i: Inode): void {
  const p = ctx.problems;
  const flag = (text: string) => p.add('INODE_FLAGS', `inode ${ino}: ${text}`, { inode: ino });
  // (A repair clears the inode, or the htree flag, as e2fsck -y does.)
  const clear = () => ino >= ctx.firstIno && ctx.fixInode(ino, { clear: true });
  if (i.flags & FL_EXTENTS && !ctx.has(INCOMPAT.extent)) {
    flag('uses extents, which the file system does not have');
    clear();
  }
  if (i.flags & FL_INLINE_DATA && !ctx.has(INCOMPAT.inline_data)) {
    flag('has inline data, which the file system does not have');
    clear();
  }
  if (i.flags & FL_INLINE_DATA && i.flags & FL_EXTENTS) flag('has both inline data and extents');
  if (i.flags & FL_INDEX && (i.mode & S_IFMT) !== S_IFDIR) {
    flag('is indexed (htree) but not a directory');
    ctx.fixInode(ino, { clearFlags: FL_INDEX });
  }
  if (i.flags & FL_INDEX && !(ctx.sb.s_feature_compat & COMPAT.dir_index)) flag('is indexed without dir_index');
  if (i.flags & FL_HUGE_FILE && !ctx.hasRo(RO_COMPAT.huge_file)) flag('counts blocks in huge_file units without it');
}

/**
 * Reads the inode's map and claims its blocks; checks i_blocks and i_size against it. Returns the map's
 * runs, or undefined when the map cannot be read (the inode's problem is reported).
 */
function claimMap(ctx: CheckContext, ino: number, i: Inode, eaValues = false): BlockRun[] | undefined {
  const p = ctx.problems;
  const bs = ctx.bs;
  let runs: BlockRun[];
  let metaBlocks: number[];
  try {
    ({ runs, metaBlocks } = ctx.r.mapping(ino, i, true, true));
  } catch (e) {
    p.fromError('INODE_MAP', e, { inode: ino });
    if (ino >= ctx.firstIno) ctx.fixInode(ino, { clear: true });
    return undefined;
  }
  let blocks = 0;
  // Blocks of attribute value inodes (`eaValues`) are charged to the inode whose attributes they hold,
  // by rules (shared blocks, zero-length values) this check does not follow: its i_blocks is not checked.
  let lastInit = -1;
  let last = -1;
  const isDir = (i.mode & S_IFMT) === S_IFDIR;
  for (const r of runs) {
    ctx.claim(r.pblk, r.len, ino, 'block');
    blocks += r.len;
    if (isDir && !r.uninit)
      for (let k = 0; k < r.len && (r.lblk + k) * bs < i.size && ctx.dirBlocks.length < MAX_READ_AHEAD_LIST; k++)
        ctx.dirBlocks.push(r.pblk + k);
    last = Math.max(last, r.lblk + r.len - 1);
    if (!r.uninit) lastInit = Math.max(lastInit, r.lblk + r.len - 1);
  }
  for (const b of metaBlocks) ctx.claim(b, 1, ino, 'map block');
  blocks += metaBlocks.length;
  // i_blocks: 512-byte units (file system blocks with huge_file's per-inode flag); the attribute block counts.
  const units = i.flags & FL_HUGE_FILE && ctx.hasRo(RO_COMPAT.huge_file) ? 1 : bs / 512;
  const want = (blocks + (i.fileAcl ? 1 : 0)) * units;
  // (bigalloc counts clusters: not checked here.)
  if (!ctx.hasRo(RO_COMPAT.bigalloc) && !eaValues && i.blocks !== want) {
    p.add('INODE_BLOCKS', `inode ${ino}: i_blocks is ${i.blocks}, its map holds ${want}`, { inode: ino });
    // An attribute block outside the file system is dropped by a repair, and is not counted then.
    const aclOk = i.fileAcl >= ctx.firstData && i.fileAcl < ctx.blocksCount;
    ctx.fixInode(ino, { blocks: (blocks + (i.fileAcl && aclOk ? 1 : 0)) * units });
  }
  const t = i.mode & S_IFMT;
  if (i.flags & FL_INLINE_DATA) return runs;
  // (verity keeps its Merkle tree past the end of the file.)
  if (t === S_IFREG && lastInit >= 0 && i.size < lastInit * bs && !(i.flags & FL_VERITY)) {
    p.add('INODE_SIZE', `inode ${ino}: size ${i.size} ends before its block ${lastInit}`, { inode: ino });
    ctx.fixInode(ino, { size: (lastInit + 1) * bs });
  }
  if (t === S_IFDIR) {
    if (i.size % bs) {
      p.add('INODE_SIZE', `directory ${ino}: size ${i.size} is not whole blocks`, { inode: ino });
      ctx.fixInode(ino, { size: (last + 1) * bs });
    } else if (
      i.size / bs !== last + 1 &&
      !(i.size / bs < last + 1 && last + 1 - i.size / bs <= ctx.sb.s_prealloc_dir_blocks)
    ) {
      p.add('INODE_SIZE', `directory ${ino}: size ${i.size} does not match its ${last + 1} block(s)`, { inode: ino });
      ctx.fixInode(ino, { size: (last + 1) * bs });
    }
  }
  if (t === S_IFLNK) {
    // A repair clears a symlink that fails these, as e2fsck -y does ("Symlink ... is invalid").
    const before = p.count;
    checkSymlink(ctx, ino, i, runs, blocks);
    if (p.count > before && ino >= ctx.firstIno) ctx.fixInode(ino, { clear: true });
  }
  return runs;
}

function checkSymlink(ctx: CheckContext, ino: number, i: Inode, runs: BlockRun[], blocks: number): void {
  const p = ctx.problems;
  const fast = ctx.r.isFastSymlink(i);
  if (!fast && (runs.length !== 1 || runs[0]!.len !== 1 || i.size >= ctx.bs))
    p.add('SYMLINK', `symlink ${ino}: size ${i.size} does not match its ${blocks} block(s)`, { inode: ino });
  else
    try {
      const target = ctx.r.readLink(ino, i);
      if (target.includes(0)) p.add('SYMLINK', `symlink ${ino}: its target holds a NUL byte`, { inode: ino });
    } catch (e) {
      p.fromError('SYMLINK', e, { inode: ino });
    }
}
function checkXattrRefcounts(ctx: CheckContext): void {
  for (const [block, refs] of ctx.xattrRefs) {
    let b: Uint8Array;
    try {
      b = ctx.raw.readBlocks(block);
    } catch {
      continue;
    }
    const stored = u32(b, 4);
    if (stored !== refs)
      ctx.problems.add(
        'XATTR_REFCOUNT',
        `attribute block ${block}: reference count ${stored}, ${refs} inode(s) use it`,
        { block },
      );
    if (stored !== refs && u32(b, 0) === XATTR_MAGIC) ctx.refcountFixes?.set(block, refs);
  }
}
