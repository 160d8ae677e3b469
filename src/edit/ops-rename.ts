/**
 * `rename`, as rename(2): the kernel's order of lookups and checks, a replaced target released, a
 * moved directory's '..' and both parents' link counts kept right.
 */
import { Ext4Error } from '../core/errors.js';
import { S_IFMT, S_IFDIR } from '../ext4/inode.js';
import { FT_DIR } from '../ext4/dirent.js';
import { fileTypeOfMode } from '../ext4/filetype.js';
import { addEntry, removeEntry, retarget, setDotDot, isEmptyDir } from '../fs/dir-edit.js';
import { incDirLinks, decDirLinks, dropLink, releaseInode } from './ops-links.js';
import { normalize, parentOf, checkName, checkEditable, touchDir, type OpContext } from './op-context.js';

export function rename(cx: OpContext, from: string, to: string): void {
  const v = cx.v;
  if (normalize(from) === '/' || normalize(to) === '/')
    throw new Ext4Error('INVALID_ARGUMENT', 'the root directory cannot be renamed or replaced', { path: from });
  // Both parents resolve before either name is looked up (kernel: do_renameat2).
  const src = parentOf(cx, from, false);
  const dst = parentOf(cx, to, false);
  checkName(src);
  const srcSlot = v.r.findEntry(src.parent, src.name);
  if (!srcSlot) throw new Ext4Error('NOT_FOUND', `${src.display}: no such file or directory`, { path: src.display });
  checkName(dst);
  const srcIno = srcSlot.inode;
  const si = v.readInode(srcIno);
  const srcIsDir = (si.mode & S_IFMT) === S_IFDIR;
  checkEditable(srcIno, si, src.display);
  const dstSlot = v.r.findEntry(dst.parent, dst.name);
  if (dstSlot && dstSlot.inode === srcIno) return;
  if (srcIsDir) {
    const chain = v.r.resolve(dst.display.slice(0, dst.display.lastIndexOf('/')) || '/', { followLast: true });
    if (chain.includes(srcIno))
      throw new Ext4Error('INVALID_ARGUMENT', `cannot move ${src.display} into itself (${dst.display})`, {
        path: dst.display,
      });
  }
  // The target may not be an ancestor of the source (the kernel answers ENOTEMPTY).
  if (dstSlot) {
    const chain = v.r.resolve(src.display.slice(0, src.display.lastIndexOf('/')) || '/', { followLast: true });
    if (chain.includes(dstSlot.inode))
      throw new Ext4Error('NOT_EMPTY', `${dst.display} contains ${src.display}`, { path: dst.display });
  }
  let replacedDir = false;
  if (dstSlot) {
    const di = v.readInode(dstSlot.inode);
    const dstIsDir = (di.mode & S_IFMT) === S_IFDIR;
    if (srcIsDir && !dstIsDir)
      throw new Ext4Error('NOT_A_DIRECTORY', `${dst.display} is not a directory`, { path: dst.display });
    if (!srcIsDir && dstIsDir)
      throw new Ext4Error('IS_A_DIRECTORY', `${dst.display} is a directory`, { path: dst.display });
    checkEditable(dstSlot.inode, di, dst.display);
    if (dstIsDir) {
      if (!isEmptyDir(v, dstSlot.inode))
        throw new Ext4Error('NOT_EMPTY', `${dst.display} is not empty`, { path: dst.display });
      retarget(v, dst.parent, dst.name, srcIno, FT_DIR);
      releaseInode(cx, dstSlot.inode, di);
      replacedDir = true;
    } else {
      retarget(v, dst.parent, dst.name, srcIno, fileTypeOfMode(si.mode));
      dropLink(cx, dstSlot.inode);
    }
  } else addEntry(v, dst.parent, dst.name, srcIno, fileTypeOfMode(si.mode));
  removeEntry(v, src.parent, src.name);
  if (srcIsDir && src.parent !== dst.parent) {
    setDotDot(v, srcIno, dst.parent);
    const sp = v.readInode(src.parent);
    decDirLinks(sp);
    v.writeInode(src.parent, sp);
    if (!replacedDir) {
      const dp = v.readInode(dst.parent);
      incDirLinks(cx, dp);
      v.writeInode(dst.parent, dp);
    }
  } else if (srcIsDir && replacedDir) {
    // Same parent: the replaced directory's '..' link is gone.
    const p = v.readInode(dst.parent);
    decDirLinks(p);
    v.writeInode(dst.parent, p);
  }
  const moved = v.readInode(srcIno);
  moved.ctime = cx.now;
  v.writeInode(srcIno, moved);
  touchDir(cx, src.parent);
  if (dst.parent !== src.parent) touchDir(cx, dst.parent);
}
