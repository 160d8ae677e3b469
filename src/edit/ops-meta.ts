/**
 * Metadata by path: mode (an access ACL follows it), owner, times, extended attributes (set, remove,
 * list), and `applyMeta`, what `copyIn` sets on each copied entry as `cp -a` does.
 */
import { Ext4Error } from '../core/errors.js';
import { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, type Timestamp } from '../ext4/inode.js';
import { toDisk, xattrKey, aclMode, chmodAcl, isInlineDataAttr } from '../ext4/xattr.js';
import type { SourceNode, XattrEntry } from '../core/types.js';
import { listXattrs, writeXattrs, sameXattr } from '../fs/xattrs.js';
import { checkId } from './inodes.js';
import { enc, resolve, checkEditable, type OpContext } from './op-context.js';

/** `perm` is checked (checkMode) before the operation starts. */
export function chmod(cx: OpContext, path: string, perm: number, opts: { noFollow?: boolean }): void {
  const { ino, inode } = resolve(cx, path, !opts.noFollow);
  if ((inode.mode & S_IFMT) === S_IFLNK)
    throw new Ext4Error('INVALID_ARGUMENT', `${path} is a symlink; its mode cannot change`, { path });
  inode.mode = (inode.mode & S_IFMT) | perm;
  inode.ctime = cx.now;
  cx.v.writeInode(ino, inode);
  const list = listXattrs(cx.v, ino);
  const acl = list.find((x) => x.index === 2);
  if (acl) {
    acl.value = chmodAcl(acl.value, perm);
    writeXattrs(cx.v, ino, cx.v.readInode(ino), list);
  }
}

export function chown(
  cx: OpContext,
  path: string,
  uid: number | undefined,
  gid: number | undefined,
  opts: { noFollow?: boolean },
): void {
  const { ino, inode } = resolve(cx, path, !opts.noFollow);
  if (uid !== undefined) inode.uid = checkId(uid, 'uid');
  if (gid !== undefined) inode.gid = checkId(gid, 'gid');
  if ((inode.mode & S_IFMT) === S_IFREG && (uid !== undefined || gid !== undefined)) {
    inode.mode &= ~0o4000;
    if (inode.mode & 0o010) inode.mode &= ~0o2000;
  }
  inode.ctime = cx.now;
  cx.v.writeInode(ino, inode);
}

/** The times are checked (checkTime) before the operation starts. */
export function utimes(
  cx: OpContext,
  path: string,
  atime: Timestamp | 'now' | undefined,
  mtime: Timestamp | 'now' | undefined,
  opts: { noFollow?: boolean },
): void {
  const { ino, inode } = resolve(cx, path, !opts.noFollow);
  if (atime) inode.atime = atime === 'now' ? cx.now : atime;
  if (mtime) inode.mtime = mtime === 'now' ? cx.now : mtime;
  inode.ctime = cx.now;
  cx.v.writeInode(ino, inode);
}

export function setXattr(
  cx: OpContext,
  path: string,
  name: string,
  value: Uint8Array | string,
  opts: { noFollow?: boolean; flag?: 'create' | 'replace' },
): void {
  const bytes = typeof value === 'string' ? enc.encode(value) : value;
  const { ino, inode } = resolve(cx, path, !opts.noFollow);
  checkEditable(ino, inode, path);
  const x = toDisk({ name, value: bytes });
  if (isInlineDataAttr(x))
    throw new Ext4Error('INVALID_ARGUMENT', 'system.data holds inline data and cannot be set', { path });
  const t = inode.mode & S_IFMT;
  // As the VFS has it: user attributes only on regular files and directories.
  if (x.index === 1 && t !== S_IFREG && t !== S_IFDIR)
    throw new Ext4Error('INVALID_ARGUMENT', `${path}: user attributes apply to regular files and directories only`, {
      path,
    });
  if (x.index === 3 && (inode.mode & S_IFMT) !== S_IFDIR)
    throw new Ext4Error('INVALID_ARGUMENT', `${path}: default ACLs apply to directories only`, { path });
  const list = listXattrs(cx.v, ino);
  const at = list.findIndex((y) => sameXattr(x, y));
  if (at >= 0 && opts.flag === 'create') throw new Ext4Error('EXISTS', `${path} has ${name} already`, { path });
  if (at < 0 && opts.flag === 'replace') throw new Ext4Error('NOT_FOUND', `${path} has no attribute ${name}`, { path });
  let store = true;
  if (x.index === 2) {
    const r = aclMode(x.value, inode.mode);
    inode.mode = r.mode;
    store = !r.equivalent;
  }
  if (at >= 0) list.splice(at, 1);
  if (store) list.push(x);
  inode.ctime = cx.now;
  writeXattrs(cx.v, ino, inode, list);
}

export function removeXattr(cx: OpContext, path: string, name: string, opts: { noFollow?: boolean }): void {
  const { ino, inode } = resolve(cx, path, !opts.noFollow);
  checkEditable(ino, inode, path);
  const x = xattrKey(name);
  if (isInlineDataAttr(x))
    throw new Ext4Error('INVALID_ARGUMENT', 'system.data holds inline data and cannot be removed', { path });
  const list = listXattrs(cx.v, ino);
  const at = list.findIndex((y) => sameXattr(x, y));
  if (at < 0) throw new Ext4Error('NOT_FOUND', `${path} has no attribute ${name}`, { path });
  list.splice(at, 1);
  inode.ctime = cx.now;
  writeXattrs(cx.v, ino, inode, list);
}

export function getXattrs(cx: OpContext, path: string, opts: { noFollow?: boolean }): XattrEntry[] {
  return cx.v.r.xattrs(resolve(cx, path, !opts.noFollow).ino);
}

/** Mode, owner, times and attributes of a copied entry, as `cp -a` sets them. */
export function applyMeta(cx: OpContext, ino: number, node: SourceNode): void {
  const i = cx.v.readInode(ino);
  if ((i.mode & S_IFMT) !== S_IFLNK) i.mode = (i.mode & S_IFMT) | (node.perm & 0o7777);
  i.uid = node.uid;
  i.gid = node.gid;
  i.atime = node.atime;
  i.mtime = node.mtime;
  i.ctime = cx.now;
  cx.v.writeInode(ino, i);
  const xs = node.xattrs();
  if (!xs.length) return;
  const list = listXattrs(cx.v, ino);
  for (const x of xs) {
    const d = toDisk(x);
    const at = list.findIndex((y) => sameXattr(d, y));
    if (at >= 0) list[at] = d;
    else list.push(d);
  }
  writeXattrs(cx.v, ino, cx.v.readInode(ino), list);
}
