/**
 * New entries other than regular files: directories (`mkdir`, with `parents`), symbolic links and
 * special files (devices, FIFOs, sockets); `makeDir`, `makeSymlink` and `makeNode` are also what
 * `copyIn` creates them with.
 */
import { Ext4Error } from '../core/errors.js';
import { S_IFMT, S_IFDIR, FL_EXTENTS, encodeDeviceNumbers, I_BLOCK_SIZE, type Inode } from '../ext4/inode.js';
import { initDir } from '../fs/dir-edit.js';
import { writeContent, bytesSource } from '../fs/content.js';
import type { Kind, NewEntryOptions } from './inodes.js';
import { linkNew } from './ops-links.js';
import { enc, normalize, parentOf, resolve, newEntryInode, type OpContext } from './op-context.js';

export function mkdir(cx: OpContext, path: string, opts: NewEntryOptions & { parents?: boolean }): void {
  if (opts.parents) {
    const parts = normalize(path).split('/').filter(Boolean);
    let cur = '';
    for (let k = 0; k < parts.length; k++) {
      cur += '/' + parts[k];
      const { parent, name, display } = parentOf(cx, cur);
      const hit = cx.v.r.findEntry(parent, name);
      if (hit) {
        let inode: Inode;
        try {
          inode = resolve(cx, display, true).inode;
        } catch (e) {
          // A symlink that leads nowhere is in the way, as mkdir -p reports it.
          if (e instanceof Ext4Error && ['NOT_FOUND', 'NAME_TOO_LONG', 'NOT_A_DIRECTORY'].includes(e.code))
            throw new Ext4Error('EXISTS', `${display} exists`, { path: display });
          throw e;
        }
        if ((inode.mode & S_IFMT) !== S_IFDIR)
          throw new Ext4Error('NOT_A_DIRECTORY', `${display} exists and is not a directory`, { path: display });
        continue;
      }
      makeDir(cx, parent, name, k === parts.length - 1 ? opts : { uid: opts.uid, gid: opts.gid });
    }
    return;
  }
  const { parent, name, display, parentInode } = parentOf(cx, path);
  if (cx.v.r.findEntry(parent, name, parentInode))
    throw new Ext4Error('EXISTS', `${display} exists`, { path: display });
  makeDir(cx, parent, name, opts, parentInode);
}

export function makeDir(
  cx: OpContext,
  parent: number,
  name: Uint8Array,
  o: NewEntryOptions,
  parentInode?: Inode,
): number {
  const { ino, inode } = newEntryInode(cx, 'dir', o, parent, parentInode);
  initDir(cx.v, ino, inode, parent);
  cx.v.writeInode(ino, inode);
  linkNew(cx, parent, name, ino, inode.mode);
  return ino;
}

export function symlink(cx: OpContext, target: string, path: string, opts: NewEntryOptions): void {
  const t = enc.encode(target);
  checkTarget(cx, t, path);
  const { parent, name, display } = parentOf(cx, path);
  if (cx.v.r.findEntry(parent, name)) throw new Ext4Error('EXISTS', `${display} exists`, { path: display });
  makeSymlink(cx, parent, name, t, opts);
}

/** A target ext4 can hold: 1 to min(4095, block size - 1) bytes, no NUL. */
export function checkTarget(cx: OpContext, t: Uint8Array, path: string): void {
  const max = Math.min(4095, cx.v.bs - 1);
  if (t.length === 0) throw new Ext4Error('INVALID_ARGUMENT', `${path}: a symlink target cannot be empty`, { path });
  if (t.includes(0)) throw new Ext4Error('INVALID_ARGUMENT', `${path}: a symlink target cannot contain NUL`, { path });
  if (t.length > max)
    throw new Ext4Error('NAME_TOO_LONG', `${path}: symlink targets hold at most ${max} bytes here, got ${t.length}`, {
      path,
    });
}

export function makeSymlink(
  cx: OpContext,
  parent: number,
  name: Uint8Array,
  t: Uint8Array,
  o: NewEntryOptions,
): number {
  const { ino, inode } = newEntryInode(cx, 'symlink', { ...o, mode: o.mode ?? 0o777 }, parent);
  if (t.length < I_BLOCK_SIZE) {
    // A fast symlink: the target lives in i_block, with no extents flag.
    inode.flags &= ~FL_EXTENTS;
    inode.block = new Uint8Array(I_BLOCK_SIZE);
    inode.block.set(t);
    inode.size = t.length;
    cx.v.initInode(ino, inode);
  } else {
    cx.v.initInode(ino, inode);
    writeContent(cx.v, ino, inode, bytesSource(t), { inline: false });
    cx.v.writeInode(ino, inode);
  }
  linkNew(cx, parent, name, ino, inode.mode);
  return ino;
}

export type NodeKind = 'chardev' | 'blockdev' | 'fifo' | 'socket';

export function mknod(
  cx: OpContext,
  path: string,
  kind: NodeKind,
  opts: NewEntryOptions & { rdev?: [number, number] },
): void {
  const { parent, name, display } = parentOf(cx, path);
  if (cx.v.r.findEntry(parent, name)) throw new Ext4Error('EXISTS', `${display} exists`, { path: display });
  makeNode(cx, parent, name, kind, opts, opts.rdev);
}

export function makeNode(
  cx: OpContext,
  parent: number,
  name: Uint8Array,
  kind: Kind,
  o: NewEntryOptions,
  rdev?: [number, number],
): number {
  const { ino, inode } = newEntryInode(cx, kind, o, parent);
  inode.block = new Uint8Array(I_BLOCK_SIZE);
  if (kind === 'chardev' || kind === 'blockdev') {
    const [major, minor] = rdev ?? [0, 0];
    if (!(major >= 0 && major < 4096 && minor >= 0 && minor < 1 << 20))
      throw new Ext4Error('BAD_OPTION', `device number ${major}:${minor} is out of range`);
    inode.block = encodeDeviceNumbers(major, minor);
  }
  cx.v.initInode(ino, inode);
  linkNew(cx, parent, name, ino, inode.mode);
  return ino;
}
