/**
 * Moving the inodes of a shrink's removed groups into the groups it keeps, before the blocks move
 * (move-blocks.ts then finds the moved inodes among the kept ones). Each inode gets a free number in a
 * kept group (near the directory that names it) and, in one operation:
 * - its record is copied byte for byte (in-inode attributes and inline data with it), sealed anew;
 * - the blocks its number seeds the checksums of (extent tree blocks, a directory's leaf and htree
 *   tails: kernel doc checksums.rst) are sealed with the new number's seed;
 * - every name of it points at the new number: its directory entries (every hard link), a directory's
 *   own '.' and its subdirectories' '..', the attributes whose value it keeps (an EA inode), and the
 *   superblock fields that name inodes;
 * - the old inode is freed (marked deleted, as the kernel leaves a deleted inode).
 * So each journal transaction leaves a consistent file system. The names are found first, in one pass
 * over every inode (an inode does not record its names; resize2fs scans the same way). Inode
 * numbers change: whatever holds them outside the file system (NFS file handles, backups keyed by inode)
 * sees new ones, as after resize2fs.
 */
import { FT_DIR } from '../ext4/dirent.js';
import { BG_INODE_UNINIT } from '../ext4/group-desc.js';
import { testBit } from '../ext4/bitmap.js';
import { INCOMPAT } from '../ext4/features.js';
import { S_IFDIR, S_IFMT, ROOT_INO, inodeCsumSeed, type Timestamp } from '../ext4/inode.js';
import { INODE_FIELDS } from '../ext4/superblock.js';
import { readDir } from '../fs/dir.js';
import { retarget, setDot, setDotDot } from '../fs/dir-edit.js';
import { retargetXattrValueInode, storedXattrs } from '../fs/xattrs.js';
import { reseedOwned } from '../edit/csum-rewrite.js';
import type { Volume } from '../edit/volume.js';

/** A directory entry naming an inode that moves. */
interface Name {
  dir: number;
  name: Uint8Array;
  fileType: number;
}

/** Every in-use inode of groups [from, to), in order (uninitialized tables skipped). */
export function* usedInodes(v: Volume, from: number, to: number): Generator<number> {
  for (let g = from; g < to; g++) {
    const gd = v.r.groupDesc(g);
    if (gd.flags & BG_INODE_UNINIT && v.hasGroupCsum) continue;
    if (gd.freeInodes === v.ipg) continue;
    const n = v.hasGroupCsum ? v.ipg - gd.itableUnused : v.ipg;
    const bm = v.r.readBlocks(gd.inodeBitmap);
    for (let i = 0; i < n; i++) if (testBit(bm, i)) yield g * v.ipg + i + 1;
  }
}

/** What names the inodes that move (numbered above `last`), by the inode named. */
interface References {
  /** Directory entries other than '.' and '..'. */
  names: Map<number, Name[]>;
  /** Inodes whose attributes keep a value in the inode (ea_inode). */
  valueOwners: Map<number, number[]>;
}

function add<T>(m: Map<number, T[]>, key: number, x: T): void {
  const list = m.get(key);
  if (list) list.push(x);
  else m.set(key, [x]);
}

/** One pass over every in-use inode: the directory entries and attribute values naming an inode above `last`. */
function referencesAbove(v: Volume, last: number): References {
  const out: References = { names: new Map(), valueOwners: new Map() };
  const eaInodes = (v.sb.s_feature_incompat & INCOMPAT.ea_inode) !== 0;
  for (const ino of usedInodes(v, 0, v.groupCount)) {
    const i = v.readInode(ino);
    if (i.linksCount === 0) continue;
    if (eaInodes) {
      const s = storedXattrs(v.r, ino, undefined, false);
      for (const x of [...s.inInode, ...s.block]) if (x.valueInum > last) add(out.valueOwners, x.valueInum, ino);
    }
    if ((i.mode & S_IFMT) !== S_IFDIR) continue;
    for (const e of readDir(v.r, ino, i))
      if (e.inode > last) add(out.names, e.inode, { dir: ino, name: e.name, fileType: e.fileType });
  }
  return out;
}

/**
 * Moves every in-use inode of the groups from `keptGroups` on into the kept groups, one operation per
 * inode, committing as the journal fills. Returns how many moved.
 */
export function moveInodes(v: Volume, keptGroups: number, now: Timestamp): number {
  const moving = [...usedInodes(v, keptGroups, v.groupCount)];
  if (!moving.length) return 0;
  const refs = referencesAbove(v, keptGroups * v.ipg);
  const renumbered = new Map<number, number>();
  const current = (ino: number) => renumbered.get(ino) ?? ino;
  for (const old of moving) {
    const names = refs.names.get(old) ?? [];
    const owners = refs.valueOwners.get(old) ?? [];
    const to = v.runOp(() => moveInode(v, old, names, owners, current, keptGroups, now));
    renumbered.set(old, to);
    v.checkpoint();
  }
  return moving.length;
}

/** Moves inode `old` (see the module comment); returns its new number. */
function moveInode(
  v: Volume,
  old: number,
  names: Name[],
  owners: number[],
  current: (ino: number) => number,
  keptGroups: number,
  now: Timestamp,
): number {
  const i = v.readInode(old);
  const isDir = (i.mode & S_IFMT) === S_IFDIR;
  // Near what names it: its directory, or for an EA inode its owner (the kernel puts it right after).
  const near = v.groupOfInode(names.length ? current(names[0]!.dir) : owners.length ? current(owners[0]!) : ROOT_INO);
  const ino = v.ialloc.allocIn(near < keptGroups ? near : near % keptGroups, isDir, keptGroups);
  const src = v.inodeRecordForWrite(old);
  const dst = v.inodeRecordForWrite(ino);
  dst.buf.set(src.buf.subarray(src.offset, src.offset + v.inodeSize), dst.offset);
  v.sealInode(ino);
  if (v.csum)
    reseedOwned(v, old, i, inodeCsumSeed(v.csumSeed, old, i.generation), inodeCsumSeed(v.csumSeed, ino, i.generation));
  if (isDir) {
    setDot(v, ino, ino);
    for (const e of readDir(v.r, ino, v.readInode(ino))) {
      const sub = v.r.hasFileType ? e.fileType === FT_DIR : (v.readInode(e.inode).mode & S_IFMT) === S_IFDIR;
      if (sub) setDotDot(v, e.inode, ino);
    }
  }
  for (const n of names) retarget(v, current(n.dir), n.name, ino, n.fileType);
  for (const o of owners) retargetXattrValueInode(v, current(o), old, ino);
  for (const f of INODE_FIELDS)
    if (v.sb[f] === old) {
      v.tx.saveFields(v.sb);
      v.sb[f] = ino;
      v.sbChanged = true;
    }
  const gone = v.readInode(old);
  gone.linksCount = 0;
  gone.dtime = now.sec;
  v.writeInode(old, gone);
  v.ialloc.free(old, isDir);
  return ino;
}
