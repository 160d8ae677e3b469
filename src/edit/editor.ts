/**
 * The editor: changes an existing ext2/3/4 image in place, by path, like the tools people use on a
 * mounted file system (cp, mkdir, ln, rm, mv, chmod, chown, touch, truncate, setfattr, cp -a).
 *
 * Operations collect their changes in memory; `commit()` writes them (new file data first, then the
 * metadata). An operation that fails leaves the edit as it was before it, so a batch can go on or be
 * discarded; nothing reaches the image before `commit()`.
 *
 * This class is the front: opening, the operation as one undo unit (`op`), commit and close. What each
 * operation does is in the operation modules (`ops-*.ts`), over the context of `op-context.ts`.
 */
import { Ext4Error } from '../core/errors.js';
import type { Timestamp } from '../ext4/inode.js';
import type { Ext4Reader } from '../fs/reader.js';
import type { BlockDevice } from '../io/device.js';
import type { TreeSource, XattrEntry } from '../core/types.js';
import { Volume, opError, type VolumeOptions } from './volume.js';
import { recoverJournal } from './recover.js';
import { lockForWrite } from '../host/lock.js';
import { refuseDamaged } from './guard.js';
import type { Hole } from '../fs/content.js';
import type { FileContent } from './content.js';
import { fixedTimeOf, opTime, type NewEntryOptions } from './inodes.js';
import { cleanOrphans } from './orphans.js';
import { sourceDateEpoch } from '../core/time.js';
import { checkMode, checkTime, type OpContext } from './op-context.js';
import * as files from './ops-files.js';
import * as dirs from './ops-dirs.js';
import * as links from './ops-links.js';
import * as remove from './ops-remove.js';
import * as renames from './ops-rename.js';
import * as meta from './ops-meta.js';
import * as copy from './ops-copyin.js';

export type { FileContent } from './content.js';
export type { NewEntryOptions } from './inodes.js';
export type { WriteFileOptions } from './ops-files.js';
export type { CopyInOptions, CopyInResult } from './ops-copyin.js';

export interface EditorOptions extends VolumeOptions {
  /**
   * When the image's journal needs recovery, recover it first (replay, orphan clean-up) instead of
   * refusing with NEEDS_RECOVERY.
   */
  recover?: boolean;
  /**
   * Run the full check (`checkImage`'s) first, after any recovery, and refuse (NEEDS_CHECK, nothing
   * written) an image it finds anything wrong with: what the editor's own checks of the groups it
   * touches cannot see (a block in use that a bitmap calls free, a damaged inode elsewhere).
   */
  check?: boolean;
  /**
   * The time stamped on new and changed inodes: a fixed UNIX time (seconds, or a Timestamp with
   * nanoseconds) for reproducible images; default the clock at each operation, or SOURCE_DATE_EPOCH.
   */
  timestamp?: number | Timestamp;
}

export class Ext4Editor {
  private readonly v: Volume;
  private readonly fixedTime: Timestamp | undefined;
  /** What the operation modules work on: made once, its time set as each operation starts. */
  private readonly cx: OpContext;

  private constructor(v: Volume, opts: EditorOptions) {
    this.v = v;
    this.fixedTime = fixedTimeOf(opts.timestamp);
    this.cx = { v, now: { sec: 0, nsec: 0 }, dirCache: new Map() };
  }

  /** Opens an image file for editing (see Volume.open for what is refused before anything is written). */
  static open(imagePath: string, opts: EditorOptions = {}): Ext4Editor {
    // A bad SOURCE_DATE_EPOCH is refused before anything is recovered or claimed (MMP).
    if (opts.timestamp === undefined) sourceDateEpoch();
    // One lock from before the recovery to the editor's close (the volume's own nests in it). A writer
    // of ours that died holding it may have left a dirty journal: recovered as `recover` would.
    const lock = lockForWrite(imagePath, opts.lock);
    try {
      if (opts.recover || lock.tookOverFrom)
        recoverJournal(imagePath, { sync: opts.sync, onWarning: opts.onWarning, deadWriter: lock.tookOverFrom });
      if (opts.check) refuseDamaged(imagePath);
      return new Ext4Editor(Volume.open(imagePath, opts), opts);
    } finally {
      lock.release();
    }
  }

  /** Edits an image on an already open device (in-memory images). */
  static openDevice(dev: BlockDevice, opts: EditorOptions = {}): Ext4Editor {
    return new Ext4Editor(Volume.openDevice(dev, opts), opts);
  }

  /** A reader of the image as edited so far (uncommitted changes included). */
  get reader(): Ext4Reader {
    return this.v.r;
  }

  /** True when there are changes not yet committed. */
  get changed(): boolean {
    return this.v.changed;
  }

  // ---- plumbing ----

  /** An asynchronous write is under way: nothing else may change the edit until it settles. */
  private busy = false;

  private startOp(): void {
    if (this.busy) throw new Ext4Error('INVALID_ARGUMENT', 'an asynchronous write to this image is still under way');
    this.cx.now = opTime(this.fixedTime);
    this.v.beginOp();
  }

  private failOp(e: unknown): Ext4Error {
    this.v.rollbackOp();
    this.cx.dirCache.clear();
    return opError(e);
  }

  /** Runs one operation: all of it, or (on any error) none of it. */
  private op<T>(fn: () => T): T {
    this.startOp();
    let out: T;
    try {
      out = fn();
      this.v.endOp();
    } catch (e) {
      throw this.failOp(e);
    }
    this.v.checkpoint();
    return out;
  }

  private async opAsync<T>(fn: () => Promise<T>): Promise<T> {
    this.startOp();
    this.busy = true;
    let out: T;
    try {
      out = await fn();
      this.v.endOp();
    } catch (e) {
      throw this.failOp(e);
    } finally {
      this.busy = false;
    }
    this.v.checkpoint();
    return out;
  }

  /** Runs an operation that may remove or move names: resolved directories are forgotten around it. */
  private opForgetting<T>(fn: () => T): T {
    this.cx.dirCache.clear();
    try {
      return this.op(fn);
    } finally {
      this.cx.dirCache.clear();
    }
  }

  // ---- files ----

  /**
   * Creates or replaces a regular file. Replacing keeps the inode (its hard links and attributes), like
   * `cp` over an existing file; all-zero blocks of the content stay holes. A symlink at the path is
   * followed. New files are root:root 0644 unless `opts` say otherwise.
   */
  writeFile(path: string, content: FileContent, opts: files.WriteFileOptions = {}): void {
    this.op(() => files.writeFile(this.cx, path, content, opts));
  }

  /**
   * `writeFile` for content that arrives asynchronously (a Node.js stream, any async iterable of
   * bytes or `{ hole: n }` pieces), with memory bounded by the pieces, not by the file. No other
   * operation may run on this editor until it settles.
   */
  async writeFileStream(
    path: string,
    stream: AsyncIterable<Uint8Array | Hole>,
    opts: files.WriteFileOptions = {},
  ): Promise<void> {
    await this.opAsync(() => files.writeFileStream(this.cx, path, stream, opts));
  }

  /** Sets a regular file's size: shorter frees blocks past the end, longer adds a hole. */
  truncate(path: string, size: number): void {
    files.checkSize(size);
    this.op(() => files.truncate(this.cx, path, size));
  }

  // ---- directories, links and special files ----

  /** Creates a directory (root:root 0755 by default); `parents` creates missing ones and accepts existing ones. */
  mkdir(path: string, opts: NewEntryOptions & { parents?: boolean } = {}): void {
    this.op(() => dirs.mkdir(this.cx, path, opts));
  }

  /** Creates a symbolic link at `path` pointing at `target` (any text; it is not checked). */
  symlink(target: string, path: string, opts: NewEntryOptions = {}): void {
    this.op(() => dirs.symlink(this.cx, target, path, opts));
  }

  /** A hard link `newPath` to the non-directory at `existing` (a symlink there is linked itself). */
  link(existing: string, newPath: string): void {
    this.op(() => links.link(this.cx, existing, newPath));
  }

  /** Creates a device node, FIFO or socket. */
  mknod(
    path: string,
    kind: 'chardev' | 'blockdev' | 'fifo' | 'socket',
    opts: NewEntryOptions & { rdev?: [number, number] } = {},
  ): void {
    this.op(() => dirs.mknod(this.cx, path, kind, opts));
  }

  // ---- removal and renaming ----

  /** Removes a file, link or (with `recursive`) a directory tree; `force` ignores a missing path. */
  rm(path: string, opts: { recursive?: boolean; force?: boolean } = {}): void {
    this.opForgetting(() => remove.rm(this.cx, path, opts));
  }

  /**
   * Renames like rename(2): an existing non-directory target is replaced, an existing empty directory
   * is replaced by a directory; a directory moves with its subtree ('..' and link counts follow); moving
   * a directory into itself is refused.
   */
  rename(from: string, to: string): void {
    this.opForgetting(() => renames.rename(this.cx, from, to));
  }

  // ---- metadata ----

  /** Sets permission bits (symlinks are followed; an access ACL's entries follow the new bits). */
  chmod(path: string, mode: number, opts: { noFollow?: boolean } = {}): void {
    const perm = checkMode(mode);
    this.op(() => meta.chmod(this.cx, path, perm, opts));
  }

  /**
   * Sets the owner (undefined keeps one of the two). Like chown(2) on Linux, even for root, a regular
   * file loses its setuid bit, and its setgid bit when group-executable.
   */
  chown(path: string, uid: number | undefined, gid: number | undefined, opts: { noFollow?: boolean } = {}): void {
    this.op(() => meta.chown(this.cx, path, uid, gid, opts));
  }

  /** Sets access and modification times (nanoseconds kept); undefined keeps one, 'now' takes the edit's time. */
  utimes(
    path: string,
    atime: Timestamp | 'now' | undefined,
    mtime: Timestamp | 'now' | undefined,
    opts: { noFollow?: boolean } = {},
  ): void {
    for (const t of [atime, mtime]) if (t && t !== 'now') checkTime(t);
    this.op(() => meta.utimes(this.cx, path, atime, mtime, opts));
  }

  /**
   * Sets an extended attribute (user., trusted., security., system.posix_acl_access/default). ACL
   * values are in the xattr format getfattr shows; setting an access ACL updates the mode like the
   * kernel does (and one equal to the mode is not stored). `flag` create/replace as setxattr(2).
   */
  setXattr(
    path: string,
    name: string,
    value: Uint8Array | string,
    opts: { noFollow?: boolean; flag?: 'create' | 'replace' } = {},
  ): void {
    this.op(() => meta.setXattr(this.cx, path, name, value, opts));
  }

  /** Removes an extended attribute (NOT_FOUND when there is none by that name). */
  removeXattr(path: string, name: string, opts: { noFollow?: boolean } = {}): void {
    this.op(() => meta.removeXattr(this.cx, path, name, opts));
  }

  /** The extended attributes of a path as stored now (full names, ACLs in the xattr format). */
  getXattrs(path: string, opts: { noFollow?: boolean } = {}): XattrEntry[] {
    return meta.getXattrs(this.cx, path, opts);
  }

  // ---- copying trees in ----

  /**
   * Copies a tree into the image like `cp -a`: a directory source is merged into `dest` (created when
   * missing; existing directories are merged, existing files replaced in place, entries of another
   * type replaced), keeping modes, owners (or `owner`), times, hard links, symlinks, devices and
   * extended attributes. A host path that is a file (or symlink) is copied to `dest`, or into it when
   * `dest` is a directory. Space is checked before anything is written.
   */
  copyIn(source: string | TreeSource, dest: string, opts: copy.CopyInOptions = {}): copy.CopyInResult {
    return this.opForgetting(() => copy.copyIn(this.cx, source, dest, opts));
  }

  // ---- recovery ----

  /**
   * The kernel's clean-up at mount of the orphan list (s_last_orphan, linked through i_dtime): an
   * orphan with no links left is deleted, one still linked is cut back to its size (an interrupted
   * truncation). Clears needs_recovery. Used by `recover`; returns the number of orphans.
   */
  cleanOrphans(): number {
    return this.op(() => cleanOrphans(this.v, this.cx.now));
  }

  // ---- batch ----

  /** Writes every change made since opening (or the last commit): file data first, then metadata. */
  commit(): void {
    if (this.busy) throw new Ext4Error('INVALID_ARGUMENT', 'an asynchronous write to this image is still under way');
    if (!this.v.changed) return;
    try {
      this.v.commit();
    } catch (e) {
      // A commit that could not be made dropped the edit: paths resolved during it may name nothing now.
      this.cx.dirCache.clear();
      throw e;
    }
  }

  /** Drops every change not yet committed. */
  discard(): void {
    this.cx.dirCache.clear();
    this.v.discard();
  }

  /** Closes the image; changes not committed are dropped. */
  close(): void {
    this.v.close();
  }
}

/**
 * Opens an image, runs `fn` on an editor, commits and closes. When `fn` throws, nothing is written and
 * the error is passed on.
 */
export function editImage<T>(imagePath: string, fn: (e: Ext4Editor) => T, opts: EditorOptions = {}): T {
  const ed = Ext4Editor.open(imagePath, opts);
  try {
    const out = fn(ed);
    ed.commit();
    return out;
  } finally {
    ed.close();
  }
}
