/**
 * Link counts and hard links: a new inode linked into its parent, a subdirectory counted in or out of
 * its parent's links (dir_nlink past the limit), a non-directory's link dropped (the inode released
 * with its last one), and the `link` operation.
 */
import { Ext4Error } from '../core/errors.js';
import { RO_COMPAT } from '../ext4/features.js';
import { S_IFMT, S_IFDIR, FL_INDEX, LINK_MAX, type Inode } from '../ext4/inode.js';
import { fileTypeOfMode } from '../ext4/filetype.js';
import { addEntry } from '../fs/dir-edit.js';
import { deleteInode } from './inodes.js';
import { parentOf, resolve, type OpContext } from './op-context.js';

/** The kernel's link count limit; directories past it keep 1 (dir_nlink). */

/** Links a new inode into its parent, counting a new subdirectory in the parent's links. */
export function linkNew(cx: OpContext, parent: number, name: Uint8Array, ino: number, mode: number): void {
  addEntry(cx.v, parent, name, ino, fileTypeOfMode(mode), (p) => {
    if ((mode & S_IFMT) === S_IFDIR) incDirLinks(cx, p);
    p.mtime = p.ctime = cx.now;
  });
}

/**
 * One more subdirectory: an indexed directory past the link limit keeps 1 (dir_nlink, as the kernel's
 * ext4_inc_count does); a linear one cannot pass it.
 */
export function incDirLinks(cx: OpContext, p: Inode): void {
  if (p.linksCount === 1) return;
  if (p.linksCount + 1 < LINK_MAX) {
    p.linksCount++;
    return;
  }
  if (!(p.flags & FL_INDEX))
    throw new Ext4Error('TOO_MANY_LINKS', `a directory can hold at most ${LINK_MAX - 2} subdirectories here`);
  cx.v.needRoCompat(RO_COMPAT.dir_nlink);
  p.linksCount = 1;
}

export function decDirLinks(p: Inode): void {
  if (p.linksCount > 2) p.linksCount--;
}

/** Drops one link of a non-directory; the inode and its blocks go when it was the last. */
export function dropLink(cx: OpContext, ino: number): void {
  const i = cx.v.readInode(ino);
  if (i.linksCount > 1) {
    i.linksCount--;
    i.ctime = cx.now;
    cx.v.writeInode(ino, i);
    return;
  }
  releaseInode(cx, ino, i);
}

/** Releases an inode that nothing links any more: its attributes, blocks and number. */
export function releaseInode(cx: OpContext, ino: number, i: Inode): void {
  deleteInode(cx.v, ino, i, cx.now);
}

/** A hard link `newPath` to the non-directory at `existing` (a symlink there is linked itself). */
export function link(cx: OpContext, existing: string, newPath: string): void {
  // In the kernel's order: both paths resolve, the new name must be free, then the inode is checked.
  const { ino, inode } = resolve(cx, existing, false);
  const { parent, name, display } = parentOf(cx, newPath);
  if (cx.v.r.findEntry(parent, name)) throw new Ext4Error('EXISTS', `${display} exists`, { path: display });
  if ((inode.mode & S_IFMT) === S_IFDIR)
    throw new Ext4Error('IS_A_DIRECTORY', `${existing} is a directory; directories cannot be hard-linked`, {
      path: existing,
    });
  if (inode.linksCount >= LINK_MAX)
    throw new Ext4Error('TOO_MANY_LINKS', `${existing} has ${inode.linksCount} links already`, { path: existing });
  addEntry(cx.v, parent, name, ino, fileTypeOfMode(inode.mode), (p) => {
    p.mtime = p.ctime = cx.now;
  });
  const i = cx.v.readInode(ino);
  i.linksCount++;
  i.ctime = cx.now;
  cx.v.writeInode(ino, i);
}
