/**
 * The life of an inode in an edit: a new one (number, owner and mode rules, times, an empty extent
 * tree), and the release of one nothing links any more (attributes, blocks, number). Also the time an
 * operation stamps: fixed (reproducible images, SOURCE_DATE_EPOCH) or the clock at its start.
 */
import { Ext4Error } from '../core/errors.js';
import { INCOMPAT } from '../ext4/features.js';
import {
  emptyInode,
  S_IFMT,
  S_IFDIR,
  FL_EXTENTS,
  FL_INLINE_DATA,
  I_BLOCK_SIZE,
  type Inode,
  type Timestamp,
} from '../ext4/inode.js';
import { MODE_OF_TYPE, type FileType } from '../ext4/filetype.js';
import { encodeExtentHeader, EXTENT_MAGIC, ROOT_MAX_ENTRIES } from '../ext4/extent.js';
import type { Volume } from './volume.js';
import { freeMap } from '../fs/blockmap.js';
import { releaseXattrs } from '../fs/xattrs.js';

/** Owner and permissions for a new entry; unset fields take the defaults (root:root, 0644/0755). */
export interface NewEntryOptions {
  /** Permission bits (0o7777 range). */
  mode?: number;
  uid?: number;
  gid?: number;
}

export type Kind = FileType;

export { fixedTimeOf } from '../core/time.js';

/** The time an operation starting now stamps: the fixed one, or the clock (nanoseconds kept distinct). */
export function opTime(fixed: Timestamp | undefined): Timestamp {
  if (fixed) return fixed;
  const ns = process.hrtime.bigint();
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 + Number(ns % 1_000_000n) };
}

export function checkId(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
    throw new Ext4Error('BAD_OPTION', `${what} ${v} is not a 32-bit id`);
  return v;
}

/** An empty extent tree's root, as the kernel starts every file (and leaves a deleted one). */
function emptyExtentRoot(): Uint8Array {
  const block = new Uint8Array(I_BLOCK_SIZE);
  encodeExtentHeader(block, 0, { magic: EXTENT_MAGIC, entries: 0, max: ROOT_MAX_ENTRIES, depth: 0, generation: 0 });
  return block;
}

/**
 * A new inode of `kind` under directory `parentIno` (inode `p`): its number allocated, its record not
 * written yet. A setgid directory hands its group to new entries, and its setgid bit to new directories
 * (kernel: inode_init_owner).
 */
export function newInode(
  v: Volume,
  kind: Kind,
  o: NewEntryOptions,
  parentIno: number,
  p: Inode,
  t: Timestamp,
): { ino: number; inode: Inode } {
  const isDir = kind === 'dir';
  const ino = v.allocInode(parentIno, isDir);
  const perm = o.mode ?? (isDir ? 0o755 : kind === 'symlink' ? 0o777 : 0o644);
  if (!Number.isInteger(perm) || perm < 0 || perm > 0o7777)
    throw new Ext4Error('BAD_OPTION', `mode ${perm} is not a permission value (0 to 07777)`);
  const sgid = (p.mode & 0o2000) !== 0;
  const inode: Inode = {
    ...emptyInode(),
    mode: MODE_OF_TYPE[kind] | perm | (sgid && isDir ? 0o2000 : 0),
    uid: checkId(o.uid ?? 0, 'uid'),
    gid: checkId(o.gid ?? (sgid ? p.gid : 0), 'gid'),
    atime: t,
    mtime: t,
    ctime: t,
    crtime: t,
    linksCount: isDir ? 2 : 1,
    extraIsize: v.newExtraIsize,
    generation: v.nextGeneration(ino),
  };
  if ((kind === 'file' || kind === 'dir' || kind === 'symlink') && v.sb.s_feature_incompat & INCOMPAT.extent) {
    inode.flags |= FL_EXTENTS;
    inode.block = emptyExtentRoot();
  }
  return { ino, inode };
}

/** Releases an inode that nothing links any more: its attributes, blocks and number (dtime `t`). */
export function deleteInode(v: Volume, ino: number, i: Inode, t: Timestamp): void {
  releaseXattrs(v, ino, i);
  if (!(i.flags & FL_INLINE_DATA) && v.r.hasBlockMap(i)) freeMap(v, ino, i);
  const isDir = (i.mode & S_IFMT) === S_IFDIR;
  const dead: Inode = { ...i, linksCount: 0, size: 0, blocks: 0, fileAcl: 0, dtime: t.sec >>> 0 };
  dead.flags &= ~FL_INLINE_DATA;
  dead.block = i.flags & FL_EXTENTS ? emptyExtentRoot() : new Uint8Array(I_BLOCK_SIZE);
  v.initInode(ino, dead);
  v.freeInode(ino, isDir);
}
