/**
 * What every editing operation works with: the volume, the operation's time and the resolved-directory
 * cache (one `OpContext` per editor, made once), and the path policy shared by the operation modules
 * (`ops-*.ts`): splitting and resolving paths, which names and inodes may be edited, argument checks.
 * The editor (`editor.ts`) owns the context and runs each operation as one undo unit; the operation
 * modules take the context and never import the editor.
 */
import { Ext4Error } from '../core/errors.js';
import { utf8 } from '../core/bytes.js';
import {
  S_IFMT,
  S_IFDIR,
  FL_ENCRYPT,
  FL_VERITY,
  MIN_TIME,
  MAX_TIME,
  type Inode,
  type Timestamp,
} from '../ext4/inode.js';
import { MAX_NAME_LEN } from '../ext4/dirent.js';
import type { Volume } from './volume.js';
import { newInode, type Kind, type NewEntryOptions } from './inodes.js';

export interface OpContext {
  readonly v: Volume;
  /** The operation's time, set as it starts: every inode it stamps gets the same one. */
  now: Timestamp;
  /**
   * Directories already resolved by path (the parents of a batch's paths repeat). Adding names cannot
   * change what a path resolves to; removing, renaming and a failed operation clear it.
   */
  readonly dirCache: Map<string, number>;
}

/** A path split into its parent directory (resolved) and last name. */
export interface Where {
  parent: number;
  name: Uint8Array;
  display: string;
  parentInode: Inode;
}

export const enc = { encode: utf8 };

/** An absolute path with '.' and empty components removed ('..' is kept for the lookup). */
export function normalize(p: string): string {
  // Most paths are already in that form: checked in one pass, no split and join.
  if (p.length > 1 && p.charCodeAt(0) === 47 && p.charCodeAt(p.length - 1) !== 47 && !/\/\.{0,1}(?:\/|$)/.test(p))
    return p;
  const parts = p.split('/').filter((x) => x !== '' && x !== '.');
  return '/' + parts.join('/');
}

/** Splits a path into its parent directory (resolved, symlinks followed) and last name. */
export function parentOf(cx: OpContext, path: string, nameCheck = true): Where {
  const display = normalize(path);
  if (display === '/')
    throw new Ext4Error('INVALID_ARGUMENT', `${path}: the root directory has no name to use here`, { path });
  const cut = display.lastIndexOf('/');
  const dirPath = display.slice(0, cut) || '/';
  const name = enc.encode(display.slice(cut + 1));
  // The parent first, as the kernel walks a path: its errors come before the last name's.
  let parent = cx.dirCache.get(dirPath);
  if (parent === undefined) {
    parent = cx.v.r.lookup(dirPath, { followLast: true });
    if (cx.dirCache.size > 4096) cx.dirCache.clear();
    cx.dirCache.set(dirPath, parent);
  }
  const pi = cx.v.readInode(parent);
  if ((pi.mode & S_IFMT) !== S_IFDIR) throw new Ext4Error('NOT_A_DIRECTORY', `${dirPath} is not a directory`, { path });
  const where = { parent, name, display, parentInode: pi };
  if (nameCheck) checkName(where);
  checkEditable(parent, pi, dirPath);
  return where;
}

/** A last path component that can be created or looked up (kernel: at its lookup). */
export function checkName(w: { name: Uint8Array; display: string }): void {
  const path = w.display;
  const text = path.slice(path.lastIndexOf('/') + 1);
  if (text === '.' || text === '..')
    throw new Ext4Error('INVALID_ARGUMENT', `${path}: '.' and '..' cannot be used here`, { path });
  if (w.name.length > MAX_NAME_LEN)
    throw new Ext4Error('NAME_TOO_LONG', `${path}: the name is ${w.name.length} bytes; ext4 allows ${MAX_NAME_LEN}`, {
      path,
    });
  if (w.name.includes(0)) throw new Ext4Error('INVALID_ARGUMENT', `${path}: names cannot contain NUL`, { path });
}

export function checkEditable(ino: number, i: Inode, path: string): void {
  if (i.flags & FL_ENCRYPT)
    throw new Ext4Error('UNSUPPORTED_FEATURE', `${path} is encrypted; it cannot be edited`, { path, inode: ino });
  if (i.flags & FL_VERITY)
    throw new Ext4Error('UNSUPPORTED_FEATURE', `${path} is protected by verity; it cannot be changed`, {
      path,
      inode: ino,
    });
}

/** The inode a path names (symlinks in the middle followed; the last one only with `follow`). */
export function resolve(cx: OpContext, path: string, follow: boolean): { ino: number; inode: Inode } {
  const ino = cx.v.r.lookup(normalize(path), { followLast: follow });
  const inode = cx.v.readInode(ino);
  return { ino, inode };
}

export function touchDir(cx: OpContext, dir: number): void {
  const i = cx.v.readInode(dir);
  i.mtime = i.ctime = cx.now;
  cx.v.writeInode(dir, i);
}

/** A new inode of `kind` for an entry in `parentIno`, stamped with the operation's time. */
export function newEntryInode(
  cx: OpContext,
  kind: Kind,
  o: NewEntryOptions,
  parentIno: number,
  p: Inode = cx.v.readInode(parentIno),
): { ino: number; inode: Inode } {
  return newInode(cx.v, kind, o, parentIno, p, cx.now);
}

export function checkMode(m: number): number {
  if (!Number.isInteger(m) || m < 0 || m > 0o7777)
    throw new Ext4Error('BAD_OPTION', `mode ${m} is not a permission value (0 to 07777)`);
  return m;
}

export function checkTime(t: Timestamp): void {
  if (
    !Number.isInteger(t.sec) ||
    t.sec < MIN_TIME ||
    t.sec > MAX_TIME ||
    !Number.isInteger(t.nsec) ||
    t.nsec < 0 ||
    t.nsec > 999_999_999
  )
    throw new Ext4Error('BAD_OPTION', `time ${t.sec}.${t.nsec} is outside what ext4 stores (1901 to 2446)`);
}
