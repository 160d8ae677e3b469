/**
 * Removal: `rm` of a file, link or (recursive) directory tree, depth first with a checkpoint after
 * each entry so a large tree does not hold every change in one undo step.
 */
import { Ext4Error } from '../core/errors.js';
import { S_IFMT, S_IFDIR } from '../ext4/inode.js';
import { removeEntry, isEmptyDir } from '../fs/dir-edit.js';
import { decDirLinks, dropLink, releaseInode } from './ops-links.js';
import { normalize, parentOf, checkEditable, touchDir, type OpContext } from './op-context.js';

export function rm(cx: OpContext, path: string, opts: { recursive?: boolean; force?: boolean }): void {
  if (normalize(path) === '/')
    throw new Ext4Error('INVALID_ARGUMENT', 'refusing to remove the root directory', { path });
  let where: { parent: number; name: Uint8Array; display: string };
  let slot;
  try {
    where = parentOf(cx, path);
    slot = cx.v.r.findEntry(where.parent, where.name);
  } catch (e) {
    if (opts.force && e instanceof Ext4Error && e.code === 'NOT_FOUND') return;
    throw e;
  }
  if (!slot) {
    if (opts.force) return;
    throw new Ext4Error('NOT_FOUND', `${where.display}: no such file or directory`, { path: where.display });
  }
  const i = cx.v.readInode(slot.inode);
  checkEditable(slot.inode, i, where.display);
  if ((i.mode & S_IFMT) === S_IFDIR) {
    if (!opts.recursive && !isEmptyDir(cx.v, slot.inode))
      throw new Ext4Error('IS_A_DIRECTORY', `${where.display} is a directory (use recursive removal)`, {
        path: where.display,
      });
    removeTree(cx, slot.inode);
    removeEntry(cx.v, where.parent, where.name);
    releaseInode(cx, slot.inode, cx.v.readInode(slot.inode));
    const p = cx.v.readInode(where.parent);
    decDirLinks(p);
    p.mtime = p.ctime = cx.now;
    cx.v.writeInode(where.parent, p);
    return;
  }
  removeEntry(cx.v, where.parent, where.name);
  dropLink(cx, slot.inode);
  touchDir(cx, where.parent);
}

/** Removes everything inside directory `dir` (depth first). */
function removeTree(cx: OpContext, dir: number): void {
  type Frame = { dir: number; name?: Uint8Array; entries: { name: Uint8Array; inode: number }[] };
  const stack: Frame[] = [{ dir, entries: cx.v.r.readDir(dir) }];
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const e = top.entries.pop();
    if (!e) {
      stack.pop();
      const parent = stack[stack.length - 1];
      if (parent) {
        // The directory is empty now: unlink it from its parent and release it.
        removeEntry(cx.v, parent.dir, top.name!);
        releaseInode(cx, top.dir, cx.v.readInode(top.dir));
        const p = cx.v.readInode(parent.dir);
        decDirLinks(p);
        cx.v.writeInode(parent.dir, p);
        cx.v.checkpoint();
      }
      continue;
    }
    const i = cx.v.readInode(e.inode);
    if ((i.mode & S_IFMT) === S_IFDIR) {
      if (stack.length > 4096) throw new Ext4Error('CORRUPT', 'directory tree deeper than 4096 levels');
      if (stack.some((f) => f.dir === e.inode))
        throw new Ext4Error('CORRUPT', `directory loop through inode ${e.inode}`, { inode: e.inode });
      stack.push({ dir: e.inode, name: e.name, entries: cx.v.r.readDir(e.inode) });
      continue;
    }
    removeEntry(cx.v, top.dir, e.name);
    dropLink(cx, e.inode);
    cx.v.checkpoint();
  }
}
