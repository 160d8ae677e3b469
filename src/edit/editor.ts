/**
 * The editor: changes an existing ext2/3/4 image in place, by path, like the tools people use on a
 * mounted file system (cp, mkdir, ln, rm, mv, chmod, chown, touch, truncate, setfattr, cp -a).
 *
 * Operations collect their changes in memory; `commit()` writes them (new file data first, then the
 * metadata). An operation that fails leaves the edit as it was before it, so a batch can go on or be
 * discarded; nothing reaches the image before `commit()`.
 */
import { Ext4Error } from '../core/errors.js';
import { RO_COMPAT } from '../ext4/features.js';
import {
  S_IFMT,
  S_IFDIR,
  S_IFREG,
  S_IFLNK,
  FL_EXTENTS,
  FL_INDEX,
  encodeDeviceNumbers,
  I_BLOCK_SIZE,
  MIN_TIME,
  MAX_TIME,
  type Inode,
  type Timestamp,
} from '../ext4/inode.js';
import { FT_DIR, MAX_NAME_LEN } from '../ext4/dirent.js';
import { fileTypeOfMode } from '../ext4/filetype.js';
import { toDisk, xattrKey, aclMode, chmodAcl } from '../ext4/xattr.js';
import { Ext4Reader } from '../fs/reader.js';
import { FL_ENCRYPT, FL_VERITY } from '../ext4/inode.js';
import { isInlineDataAttr } from '../ext4/xattr.js';
import type { BlockDevice } from '../io/device.js';
import type { SourceNode, TreeSource, XattrEntry } from '../core/types.js';
import { estimateTree, checkName as checkSourceName } from '../mkfs/writer.js';
import { hostPathSource } from '../tree/sources/host.js';
import { applySpec, type Spec } from '../tree/sources/spec.js';
import { Volume, opError, type VolumeOptions } from './volume.js';
import { recoverJournal } from './recover.js';
import { lockForWrite } from '../host/lock.js';
import { addEntry, removeEntry, retarget, setDotDot, isEmptyDir, initDir } from './dir.js';
import { writeContent, truncateFile, bytesSource, ContentWriter, type Hole } from './filemap.js';
import { sourceOf, nodeSource, type FileContent } from './content.js';

export type { FileContent } from './content.js';
import { listXattrs, writeXattrs, sameXattr } from './xattrs.js';
import { newInode, deleteInode, fixedTimeOf, opTime, checkId, type Kind, type NewEntryOptions } from './inodes.js';
import { cleanOrphans } from './orphans.js';
import { sourceDateEpoch } from '../core/time.js';

export type { NewEntryOptions } from './inodes.js';

/** The kernel's link count limit; directories past it keep 1 (dir_nlink). */
const LINK_MAX = 65000;
const ROOT_INO = 2;

export interface EditorOptions extends VolumeOptions {
  /**
   * When the image's journal needs recovery, recover it first (replay, orphan clean-up) instead of
   * refusing with NEEDS_RECOVERY.
   */
  recover?: boolean;
  /**
   * The time stamped on new and changed inodes: a fixed UNIX time (seconds, or a Timestamp with
   * nanoseconds) for reproducible images; default the clock at each operation, or SOURCE_DATE_EPOCH.
   */
  timestamp?: number | Timestamp;
}

export interface WriteFileOptions extends NewEntryOptions {
  /** Modification time (default: now); atime follows it unless given. */
  mtime?: Timestamp;
  atime?: Timestamp;
}

export interface CopyInOptions {
  /** Owner of every copied entry (and of an existing destination directory merged into). */
  owner?: { uid: number; gid: number };
  /**
   * Per-path metadata (an mtree spec, see `parseSpec`), paths relative to the copied tree's root (`.`
   * is the source itself): applied after `owner`, checked against the source before anything is
   * written. A spec's `time` sets mtime and atime; ctime is the edit's time, as for every copied entry.
   */
  spec?: Spec;
}

export interface CopyInResult {
  files: number;
  dirs: number;
  other: number;
  bytes: number;
}

const enc = new TextEncoder();

export class Ext4Editor {
  private readonly v: Volume;
  private readonly fixedTime: Timestamp | undefined;
  private opNow: Timestamp = { sec: 0, nsec: 0 };

  private constructor(v: Volume, opts: EditorOptions) {
    this.v = v;
    this.fixedTime = fixedTimeOf(opts.timestamp);
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

  private now(): Timestamp {
    return this.opNow;
  }

  /**
   * Directories already resolved by path (the parents of a batch's paths repeat). Adding names cannot
   * change what a path resolves to; removing, renaming and a failed operation clear it.
   */
  private readonly dirCache = new Map<string, number>();

  /** An asynchronous write is under way: nothing else may change the edit until it settles. */
  private busy = false;

  private startOp(): void {
    if (this.busy) throw new Ext4Error('INVALID_ARGUMENT', 'an asynchronous write to this image is still under way');
    this.opNow = opTime(this.fixedTime);
    this.v.beginOp();
  }

  private failOp(e: unknown): Ext4Error {
    this.v.rollbackOp();
    this.dirCache.clear();
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

  /** Splits a path into its parent directory (resolved, symlinks followed) and last name. */
  private parentOf(
    path: string,
    nameCheck = true,
  ): { parent: number; name: Uint8Array; display: string; parentInode: Inode } {
    const display = normalize(path);
    if (display === '/')
      throw new Ext4Error('INVALID_ARGUMENT', `${path}: the root directory has no name to use here`, { path });
    const cut = display.lastIndexOf('/');
    const dirPath = display.slice(0, cut) || '/';
    const name = enc.encode(display.slice(cut + 1));
    // The parent first, as the kernel walks a path: its errors come before the last name's.
    let parent = this.dirCache.get(dirPath);
    if (parent === undefined) {
      parent = this.v.r.lookup(dirPath, { followLast: true });
      if (this.dirCache.size > 4096) this.dirCache.clear();
      this.dirCache.set(dirPath, parent);
    }
    const pi = this.v.readInode(parent);
    if ((pi.mode & S_IFMT) !== S_IFDIR)
      throw new Ext4Error('NOT_A_DIRECTORY', `${dirPath} is not a directory`, { path });
    const where = { parent, name, display, parentInode: pi };
    if (nameCheck) this.checkName(where);
    this.checkEditable(parent, pi, dirPath);
    return where;
  }

  /** A last path component that can be created or looked up (kernel: at its lookup). */
  private checkName(w: { name: Uint8Array; display: string }): void {
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

  private checkEditable(ino: number, i: Inode, path: string): void {
    if (i.flags & FL_ENCRYPT)
      throw new Ext4Error('UNSUPPORTED_FEATURE', `${path} is encrypted; it cannot be edited`, { path, inode: ino });
    if (i.flags & FL_VERITY)
      throw new Ext4Error('UNSUPPORTED_FEATURE', `${path} is protected by verity; it cannot be changed`, {
        path,
        inode: ino,
      });
  }

  /** The inode a path names (symlinks in the middle followed; the last one only with `follow`). */
  private resolve(path: string, follow: boolean): { ino: number; inode: Inode } {
    const ino = this.v.r.lookup(normalize(path), { followLast: follow });
    const inode = this.v.readInode(ino);
    return { ino, inode };
  }

  private touchDir(dir: number): void {
    const i = this.v.readInode(dir);
    i.mtime = i.ctime = this.now();
    this.v.writeInode(dir, i);
  }

  private newInode(
    kind: Kind,
    o: NewEntryOptions,
    parentIno: number,
    p: Inode = this.v.readInode(parentIno),
  ): { ino: number; inode: Inode } {
    return newInode(this.v, kind, o, parentIno, p, this.now());
  }

  /** Links a new inode into its parent, counting a new subdirectory in the parent's links. */
  private linkNew(parent: number, name: Uint8Array, ino: number, mode: number): void {
    const p = addEntry(this.v, parent, name, ino, fileTypeOfMode(mode));
    if ((mode & S_IFMT) === S_IFDIR) this.incDirLinks(p);
    p.mtime = p.ctime = this.now();
    this.v.writeInode(parent, p);
  }

  /**
   * One more subdirectory: an indexed directory past the link limit keeps 1 (dir_nlink, as the kernel's
   * ext4_inc_count does); a linear one cannot pass it.
   */
  private incDirLinks(p: Inode): void {
    if (p.linksCount === 1) return;
    if (p.linksCount + 1 < LINK_MAX) {
      p.linksCount++;
      return;
    }
    if (!(p.flags & FL_INDEX))
      throw new Ext4Error('TOO_MANY_LINKS', `a directory can hold at most ${LINK_MAX - 2} subdirectories here`);
    this.v.needRoCompat(RO_COMPAT.dir_nlink);
    p.linksCount = 1;
  }

  private decDirLinks(p: Inode): void {
    if (p.linksCount > 2) p.linksCount--;
  }

  /** Drops one link of a non-directory; the inode and its blocks go when it was the last. */
  private dropLink(ino: number): void {
    const i = this.v.readInode(ino);
    if (i.linksCount > 1) {
      i.linksCount--;
      i.ctime = this.now();
      this.v.writeInode(ino, i);
      return;
    }
    this.deleteInode(ino, i);
  }

  /** Releases an inode that nothing links any more: its attributes, blocks and number. */
  private deleteInode(ino: number, i: Inode): void {
    deleteInode(this.v, ino, i, this.now());
  }

  // ---- files ----

  /**
   * Creates or replaces a regular file. Replacing keeps the inode (its hard links and attributes), like
   * `cp` over an existing file; all-zero blocks of the content stay holes. A symlink at the path is
   * followed. New files are root:root 0644 unless `opts` say otherwise.
   */
  writeFile(path: string, content: FileContent, opts: WriteFileOptions = {}): void {
    this.op(() => {
      const t = this.fileTarget(path, opts);
      writeContent(this.v, t.ino, t.inode, sourceOf(content));
      this.fileDone(t, opts);
    });
  }

  /**
   * `writeFile` for content that arrives asynchronously (a Node.js stream, any async iterable of
   * bytes or `{ hole: n }` pieces), with memory bounded by the pieces, not by the file. No other
   * operation may run on this editor until it settles.
   */
  async writeFileStream(
    path: string,
    stream: AsyncIterable<Uint8Array | Hole>,
    opts: WriteFileOptions = {},
  ): Promise<void> {
    await this.opAsync(async () => {
      const t = this.fileTarget(path, opts);
      const w = new ContentWriter(this.v, t.ino, t.inode);
      for await (const c of stream) w.push(typeof c === 'string' ? enc.encode(c) : c);
      w.finish();
      this.fileDone(t, opts);
    });
  }

  /** The regular file a write goes to: the existing one (a symlink there followed), or a new inode. */
  private fileTarget(
    path: string,
    opts: WriteFileOptions,
  ): { ino: number; inode: Inode; parent?: number; name?: Uint8Array } {
    const { parent, name, display, parentInode } = this.parentOf(path);
    if (this.v.r.findEntry(parent, name, parentInode)) {
      const target = this.resolve(display, true);
      const t = target.inode.mode & S_IFMT;
      if (t === S_IFDIR) throw new Ext4Error('IS_A_DIRECTORY', `${display} is a directory`, { path: display });
      if (t !== S_IFREG) throw new Ext4Error('INVALID_ARGUMENT', `${display} is not a regular file`, { path: display });
      this.checkEditable(target.ino, target.inode, display);
      return target;
    }
    const { ino, inode } = this.newInode('file', opts, parent, parentInode);
    if (opts.mtime) inode.mtime = opts.mtime;
    inode.atime = opts.atime ?? inode.mtime;
    this.v.initInode(ino, inode);
    return { ino, inode, parent, name };
  }

  /** After new content: a new file is linked in; a replaced one gets what the options ask and new times. */
  private fileDone(t: { ino: number; inode: Inode; parent?: number; name?: Uint8Array }, opts: WriteFileOptions): void {
    const { ino, inode } = t;
    if (t.parent !== undefined) {
      this.v.writeInode(ino, inode);
      this.linkNew(t.parent, t.name!, ino, inode.mode);
      return;
    }
    if (opts.mode !== undefined) inode.mode = (inode.mode & S_IFMT) | checkMode(opts.mode);
    if (opts.uid !== undefined) inode.uid = checkId(opts.uid, 'uid');
    if (opts.gid !== undefined) inode.gid = checkId(opts.gid, 'gid');
    inode.mtime = opts.mtime ?? this.now();
    inode.atime = opts.atime ?? opts.mtime ?? inode.atime;
    inode.ctime = this.now();
    this.v.writeInode(ino, inode);
  }

  /** Sets a regular file's size: shorter frees blocks past the end, longer adds a hole. */
  truncate(path: string, size: number): void {
    if (!Number.isSafeInteger(size) || size < 0) throw new Ext4Error('BAD_OPTION', `size ${size} is not a byte count`);
    this.op(() => {
      const { ino, inode } = this.resolve(path, true);
      if ((inode.mode & S_IFMT) === S_IFDIR) throw new Ext4Error('IS_A_DIRECTORY', `${path} is a directory`, { path });
      if ((inode.mode & S_IFMT) !== S_IFREG)
        throw new Ext4Error('INVALID_ARGUMENT', `${path} is not a regular file`, { path });
      this.checkEditable(ino, inode, path);
      truncateFile(this.v, ino, inode, size);
      inode.mtime = inode.ctime = this.now();
      this.v.writeInode(ino, inode);
    });
  }

  // ---- directories ----

  /** Creates a directory (root:root 0755 by default); `parents` creates missing ones and accepts existing ones. */
  mkdir(path: string, opts: NewEntryOptions & { parents?: boolean } = {}): void {
    this.op(() => {
      if (opts.parents) {
        const parts = normalize(path).split('/').filter(Boolean);
        let cur = '';
        for (let k = 0; k < parts.length; k++) {
          cur += '/' + parts[k];
          const { parent, name, display } = this.parentOf(cur);
          const hit = this.v.r.findEntry(parent, name);
          if (hit) {
            let inode: Inode;
            try {
              inode = this.resolve(display, true).inode;
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
          this.makeDir(parent, name, k === parts.length - 1 ? opts : { uid: opts.uid, gid: opts.gid });
        }
        return;
      }
      const { parent, name, display, parentInode } = this.parentOf(path);
      if (this.v.r.findEntry(parent, name, parentInode))
        throw new Ext4Error('EXISTS', `${display} exists`, { path: display });
      this.makeDir(parent, name, opts, parentInode);
    });
  }

  private makeDir(parent: number, name: Uint8Array, o: NewEntryOptions, parentInode?: Inode): number {
    const { ino, inode } = this.newInode('dir', o, parent, parentInode);
    initDir(this.v, ino, inode, parent);
    this.v.writeInode(ino, inode);
    this.linkNew(parent, name, ino, inode.mode);
    return ino;
  }

  // ---- links and special files ----

  /** Creates a symbolic link at `path` pointing at `target` (any text; it is not checked). */
  symlink(target: string, path: string, opts: NewEntryOptions = {}): void {
    this.op(() => {
      const t = enc.encode(target);
      this.checkTarget(t, path);
      const { parent, name, display } = this.parentOf(path);
      if (this.v.r.findEntry(parent, name)) throw new Ext4Error('EXISTS', `${display} exists`, { path: display });
      this.makeSymlink(parent, name, t, opts);
    });
  }

  /** A target ext4 can hold: 1 to min(4095, block size - 1) bytes, no NUL. */
  private checkTarget(t: Uint8Array, path: string): void {
    const max = Math.min(4095, this.v.bs - 1);
    if (t.length === 0) throw new Ext4Error('INVALID_ARGUMENT', `${path}: a symlink target cannot be empty`, { path });
    if (t.includes(0))
      throw new Ext4Error('INVALID_ARGUMENT', `${path}: a symlink target cannot contain NUL`, { path });
    if (t.length > max)
      throw new Ext4Error('NAME_TOO_LONG', `${path}: symlink targets hold at most ${max} bytes here, got ${t.length}`, {
        path,
      });
  }

  private makeSymlink(parent: number, name: Uint8Array, t: Uint8Array, o: NewEntryOptions): number {
    const { ino, inode } = this.newInode('symlink', { ...o, mode: o.mode ?? 0o777 }, parent);
    if (t.length < I_BLOCK_SIZE) {
      // A fast symlink: the target lives in i_block, with no extents flag.
      inode.flags &= ~FL_EXTENTS;
      inode.block = new Uint8Array(I_BLOCK_SIZE);
      inode.block.set(t);
      inode.size = t.length;
      this.v.initInode(ino, inode);
    } else {
      this.v.initInode(ino, inode);
      writeContent(this.v, ino, inode, bytesSource(t), { inline: false });
      this.v.writeInode(ino, inode);
    }
    this.linkNew(parent, name, ino, inode.mode);
    return ino;
  }

  /** A hard link `newPath` to the non-directory at `existing` (a symlink there is linked itself). */
  link(existing: string, newPath: string): void {
    this.op(() => {
      // In the kernel's order: both paths resolve, the new name must be free, then the inode is checked.
      const { ino, inode } = this.resolve(existing, false);
      const { parent, name, display } = this.parentOf(newPath);
      if (this.v.r.findEntry(parent, name)) throw new Ext4Error('EXISTS', `${display} exists`, { path: display });
      if ((inode.mode & S_IFMT) === S_IFDIR)
        throw new Ext4Error('IS_A_DIRECTORY', `${existing} is a directory; directories cannot be hard-linked`, {
          path: existing,
        });
      if (inode.linksCount >= LINK_MAX)
        throw new Ext4Error('TOO_MANY_LINKS', `${existing} has ${inode.linksCount} links already`, { path: existing });
      addEntry(this.v, parent, name, ino, fileTypeOfMode(inode.mode));
      const i = this.v.readInode(ino);
      i.linksCount++;
      i.ctime = this.now();
      this.v.writeInode(ino, i);
      this.touchDir(parent);
    });
  }

  /** Creates a device node, FIFO or socket. */
  mknod(
    path: string,
    kind: 'chardev' | 'blockdev' | 'fifo' | 'socket',
    opts: NewEntryOptions & { rdev?: [number, number] } = {},
  ): void {
    this.op(() => {
      const { parent, name, display } = this.parentOf(path);
      if (this.v.r.findEntry(parent, name)) throw new Ext4Error('EXISTS', `${display} exists`, { path: display });
      this.makeNode(parent, name, kind, opts, opts.rdev);
    });
  }

  private makeNode(parent: number, name: Uint8Array, kind: Kind, o: NewEntryOptions, rdev?: [number, number]): number {
    const { ino, inode } = this.newInode(kind, o, parent);
    inode.block = new Uint8Array(I_BLOCK_SIZE);
    if (kind === 'chardev' || kind === 'blockdev') {
      const [major, minor] = rdev ?? [0, 0];
      if (!(major >= 0 && major < 4096 && minor >= 0 && minor < 1 << 20))
        throw new Ext4Error('BAD_OPTION', `device number ${major}:${minor} is out of range`);
      inode.block = encodeDeviceNumbers(major, minor);
    }
    this.v.initInode(ino, inode);
    this.linkNew(parent, name, ino, inode.mode);
    return ino;
  }

  // ---- removal and renaming ----

  /** Removes a file, link or (with `recursive`) a directory tree; `force` ignores a missing path. */
  rm(path: string, opts: { recursive?: boolean; force?: boolean } = {}): void {
    this.dirCache.clear();
    this.op(() => {
      if (normalize(path) === '/')
        throw new Ext4Error('INVALID_ARGUMENT', 'refusing to remove the root directory', { path });
      let where: { parent: number; name: Uint8Array; display: string };
      let slot;
      try {
        where = this.parentOf(path);
        slot = this.v.r.findEntry(where.parent, where.name);
      } catch (e) {
        if (opts.force && e instanceof Ext4Error && e.code === 'NOT_FOUND') return;
        throw e;
      }
      if (!slot) {
        if (opts.force) return;
        throw new Ext4Error('NOT_FOUND', `${where.display}: no such file or directory`, { path: where.display });
      }
      const i = this.v.readInode(slot.inode);
      this.checkEditable(slot.inode, i, where.display);
      if ((i.mode & S_IFMT) === S_IFDIR) {
        if (!opts.recursive && !isEmptyDir(this.v, slot.inode))
          throw new Ext4Error('IS_A_DIRECTORY', `${where.display} is a directory (use recursive removal)`, {
            path: where.display,
          });
        this.removeTree(slot.inode);
        removeEntry(this.v, where.parent, where.name);
        this.deleteInode(slot.inode, this.v.readInode(slot.inode));
        const p = this.v.readInode(where.parent);
        this.decDirLinks(p);
        p.mtime = p.ctime = this.now();
        this.v.writeInode(where.parent, p);
        return;
      }
      removeEntry(this.v, where.parent, where.name);
      this.dropLink(slot.inode);
      this.touchDir(where.parent);
    });
    this.dirCache.clear();
  }

  /** Removes everything inside directory `dir` (depth first). */
  private removeTree(dir: number): void {
    type Frame = { dir: number; name?: Uint8Array; entries: { name: Uint8Array; inode: number }[] };
    const stack: Frame[] = [{ dir, entries: this.v.r.readDir(dir) }];
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      const e = top.entries.pop();
      if (!e) {
        stack.pop();
        const parent = stack[stack.length - 1];
        if (parent) {
          // The directory is empty now: unlink it from its parent and release it.
          removeEntry(this.v, parent.dir, top.name!);
          this.deleteInode(top.dir, this.v.readInode(top.dir));
          const p = this.v.readInode(parent.dir);
          this.decDirLinks(p);
          this.v.writeInode(parent.dir, p);
          this.v.checkpoint();
        }
        continue;
      }
      const i = this.v.readInode(e.inode);
      if ((i.mode & S_IFMT) === S_IFDIR) {
        if (stack.length > 4096) throw new Ext4Error('CORRUPT', 'directory tree deeper than 4096 levels');
        if (stack.some((f) => f.dir === e.inode))
          throw new Ext4Error('CORRUPT', `directory loop through inode ${e.inode}`, { inode: e.inode });
        stack.push({ dir: e.inode, name: e.name, entries: this.v.r.readDir(e.inode) });
        continue;
      }
      removeEntry(this.v, top.dir, e.name);
      this.dropLink(e.inode);
      this.v.checkpoint();
    }
  }

  /**
   * Renames like rename(2): an existing non-directory target is replaced, an existing empty directory
   * is replaced by a directory; a directory moves with its subtree ('..' and link counts follow); moving
   * a directory into itself is refused.
   */
  rename(from: string, to: string): void {
    this.dirCache.clear();
    this.op(() => {
      if (normalize(from) === '/' || normalize(to) === '/')
        throw new Ext4Error('INVALID_ARGUMENT', 'the root directory cannot be renamed or replaced', { path: from });
      // Both parents resolve before either name is looked up (kernel: do_renameat2).
      const src = this.parentOf(from, false);
      const dst = this.parentOf(to, false);
      this.checkName(src);
      const srcSlot = this.v.r.findEntry(src.parent, src.name);
      if (!srcSlot)
        throw new Ext4Error('NOT_FOUND', `${src.display}: no such file or directory`, { path: src.display });
      this.checkName(dst);
      const srcIno = srcSlot.inode;
      const si = this.v.readInode(srcIno);
      const srcIsDir = (si.mode & S_IFMT) === S_IFDIR;
      this.checkEditable(srcIno, si, src.display);
      const dstSlot = this.v.r.findEntry(dst.parent, dst.name);
      if (dstSlot && dstSlot.inode === srcIno) return;
      if (srcIsDir) {
        const chain = this.v.r.resolve(dst.display.slice(0, dst.display.lastIndexOf('/')) || '/', { followLast: true });
        if (chain.includes(srcIno))
          throw new Ext4Error('INVALID_ARGUMENT', `cannot move ${src.display} into itself (${dst.display})`, {
            path: dst.display,
          });
      }
      // The target may not be an ancestor of the source (the kernel answers ENOTEMPTY).
      if (dstSlot) {
        const chain = this.v.r.resolve(src.display.slice(0, src.display.lastIndexOf('/')) || '/', { followLast: true });
        if (chain.includes(dstSlot.inode))
          throw new Ext4Error('NOT_EMPTY', `${dst.display} contains ${src.display}`, { path: dst.display });
      }
      let replacedDir = false;
      if (dstSlot) {
        const di = this.v.readInode(dstSlot.inode);
        const dstIsDir = (di.mode & S_IFMT) === S_IFDIR;
        if (srcIsDir && !dstIsDir)
          throw new Ext4Error('NOT_A_DIRECTORY', `${dst.display} is not a directory`, { path: dst.display });
        if (!srcIsDir && dstIsDir)
          throw new Ext4Error('IS_A_DIRECTORY', `${dst.display} is a directory`, { path: dst.display });
        this.checkEditable(dstSlot.inode, di, dst.display);
        if (dstIsDir) {
          if (!isEmptyDir(this.v, dstSlot.inode))
            throw new Ext4Error('NOT_EMPTY', `${dst.display} is not empty`, { path: dst.display });
          retarget(this.v, dst.parent, dst.name, srcIno, FT_DIR);
          this.deleteInode(dstSlot.inode, di);
          replacedDir = true;
        } else {
          retarget(this.v, dst.parent, dst.name, srcIno, fileTypeOfMode(si.mode));
          this.dropLink(dstSlot.inode);
        }
      } else addEntry(this.v, dst.parent, dst.name, srcIno, fileTypeOfMode(si.mode));
      removeEntry(this.v, src.parent, src.name);
      if (srcIsDir && src.parent !== dst.parent) {
        setDotDot(this.v, srcIno, dst.parent);
        const sp = this.v.readInode(src.parent);
        this.decDirLinks(sp);
        this.v.writeInode(src.parent, sp);
        if (!replacedDir) {
          const dp = this.v.readInode(dst.parent);
          this.incDirLinks(dp);
          this.v.writeInode(dst.parent, dp);
        }
      } else if (srcIsDir && replacedDir) {
        // Same parent: the replaced directory's '..' link is gone.
        const p = this.v.readInode(dst.parent);
        this.decDirLinks(p);
        this.v.writeInode(dst.parent, p);
      }
      const moved = this.v.readInode(srcIno);
      moved.ctime = this.now();
      this.v.writeInode(srcIno, moved);
      this.touchDir(src.parent);
      if (dst.parent !== src.parent) this.touchDir(dst.parent);
    });
    this.dirCache.clear();
  }

  // ---- metadata ----

  /** Sets permission bits (symlinks are followed; an access ACL's entries follow the new bits). */
  chmod(path: string, mode: number, opts: { noFollow?: boolean } = {}): void {
    const perm = checkMode(mode);
    this.op(() => {
      const { ino, inode } = this.resolve(path, !opts.noFollow);
      if ((inode.mode & S_IFMT) === S_IFLNK)
        throw new Ext4Error('INVALID_ARGUMENT', `${path} is a symlink; its mode cannot change`, { path });
      inode.mode = (inode.mode & S_IFMT) | perm;
      inode.ctime = this.now();
      this.v.writeInode(ino, inode);
      const list = listXattrs(this.v, ino);
      const acl = list.find((x) => x.index === 2);
      if (acl) {
        acl.value = chmodAcl(acl.value, perm);
        writeXattrs(this.v, ino, this.v.readInode(ino), list);
      }
    });
  }

  /**
   * Sets the owner (undefined keeps one of the two). Like chown(2) on Linux, even for root, a regular
   * file loses its setuid bit, and its setgid bit when group-executable.
   */
  chown(path: string, uid: number | undefined, gid: number | undefined, opts: { noFollow?: boolean } = {}): void {
    this.op(() => {
      const { ino, inode } = this.resolve(path, !opts.noFollow);
      if (uid !== undefined) inode.uid = checkId(uid, 'uid');
      if (gid !== undefined) inode.gid = checkId(gid, 'gid');
      if ((inode.mode & S_IFMT) === S_IFREG && (uid !== undefined || gid !== undefined)) {
        inode.mode &= ~0o4000;
        if (inode.mode & 0o010) inode.mode &= ~0o2000;
      }
      inode.ctime = this.now();
      this.v.writeInode(ino, inode);
    });
  }

  /** Sets access and modification times (nanoseconds kept); undefined keeps one, 'now' takes the edit's time. */
  utimes(
    path: string,
    atime: Timestamp | 'now' | undefined,
    mtime: Timestamp | 'now' | undefined,
    opts: { noFollow?: boolean } = {},
  ): void {
    for (const t of [atime, mtime]) if (t && t !== 'now') checkTime(t);
    this.op(() => {
      const { ino, inode } = this.resolve(path, !opts.noFollow);
      if (atime) inode.atime = atime === 'now' ? this.now() : atime;
      if (mtime) inode.mtime = mtime === 'now' ? this.now() : mtime;
      inode.ctime = this.now();
      this.v.writeInode(ino, inode);
    });
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
    const bytes = typeof value === 'string' ? enc.encode(value) : value;
    this.op(() => {
      const { ino, inode } = this.resolve(path, !opts.noFollow);
      this.checkEditable(ino, inode, path);
      const x = toDisk({ name, value: bytes });
      if (isInlineDataAttr(x))
        throw new Ext4Error('INVALID_ARGUMENT', 'system.data holds inline data and cannot be set', { path });
      const t = inode.mode & S_IFMT;
      // As the VFS has it: user attributes only on regular files and directories.
      if (x.index === 1 && t !== S_IFREG && t !== S_IFDIR)
        throw new Ext4Error(
          'INVALID_ARGUMENT',
          `${path}: user attributes apply to regular files and directories only`,
          { path },
        );
      if (x.index === 3 && (inode.mode & S_IFMT) !== S_IFDIR)
        throw new Ext4Error('INVALID_ARGUMENT', `${path}: default ACLs apply to directories only`, { path });
      const list = listXattrs(this.v, ino);
      const at = list.findIndex((y) => sameXattr(x, y));
      if (at >= 0 && opts.flag === 'create') throw new Ext4Error('EXISTS', `${path} has ${name} already`, { path });
      if (at < 0 && opts.flag === 'replace')
        throw new Ext4Error('NOT_FOUND', `${path} has no attribute ${name}`, { path });
      let store = true;
      if (x.index === 2) {
        const r = aclMode(x.value, inode.mode);
        inode.mode = r.mode;
        store = !r.equivalent;
      }
      if (at >= 0) list.splice(at, 1);
      if (store) list.push(x);
      inode.ctime = this.now();
      writeXattrs(this.v, ino, inode, list);
    });
  }

  /** Removes an extended attribute (NOT_FOUND when there is none by that name). */
  removeXattr(path: string, name: string, opts: { noFollow?: boolean } = {}): void {
    this.op(() => {
      const { ino, inode } = this.resolve(path, !opts.noFollow);
      this.checkEditable(ino, inode, path);
      const x = xattrKey(name);
      if (isInlineDataAttr(x))
        throw new Ext4Error('INVALID_ARGUMENT', 'system.data holds inline data and cannot be removed', { path });
      const list = listXattrs(this.v, ino);
      const at = list.findIndex((y) => sameXattr(x, y));
      if (at < 0) throw new Ext4Error('NOT_FOUND', `${path} has no attribute ${name}`, { path });
      list.splice(at, 1);
      inode.ctime = this.now();
      writeXattrs(this.v, ino, inode, list);
    });
  }

  /** The extended attributes of a path as stored now (full names, ACLs in the xattr format). */
  getXattrs(path: string, opts: { noFollow?: boolean } = {}): XattrEntry[] {
    return this.v.r.xattrs(this.resolve(path, !opts.noFollow).ino);
  }

  // ---- copying trees in ----

  /**
   * Copies a tree into the image like `cp -a`: a directory source is merged into `dest` (created when
   * missing; existing directories are merged, existing files replaced in place, entries of another
   * type replaced), keeping modes, owners (or `owner`), times, hard links, symlinks, devices and
   * extended attributes. A host path that is a file (or symlink) is copied to `dest`, or into it when
   * `dest` is a directory. Space is checked before anything is written.
   */
  copyIn(source: string | TreeSource, dest: string, opts: CopyInOptions = {}): CopyInResult {
    this.dirCache.clear();
    try {
      return this.copyInOp(source, dest, opts);
    } finally {
      this.dirCache.clear();
    }
  }

  private copyInOp(source: string | TreeSource, dest: string, opts: CopyInOptions): CopyInResult {
    return this.op(() => {
      let tree = typeof source === 'string' ? hostPathSource(source) : source;
      // The owner goes onto the source's nodes first, so a spec's uid/gid can win over it (as mkfs does).
      if (opts.spec || opts.owner) tree = applySpec(tree, opts.spec, { owner: opts.owner });
      const root = tree.root();
      const est = estimateTree(
        // A single file is estimated as the one entry of a directory that is not itself written.
        root.kind === 'dir'
          ? tree
          : { root: () => ({ ...root, kind: 'dir', children: () => [root], xattrs: () => [] }) },
        this.v.bs,
        this.v.inodeSize,
      );
      if (est.blocks > this.v.freeBlocks || est.inodes > this.v.freeInodes)
        throw new Ext4Error(
          'NO_SPACE',
          `the source needs about ${est.blocks} blocks and ${est.inodes} inodes; the image has ${this.v.freeBlocks} blocks and ${this.v.freeInodes} inodes free`,
        );
      const res: CopyInResult = { files: 0, dirs: 0, other: 0, bytes: 0 };
      const links = new Map<string, number>();
      const target = normalize(dest);
      if (root.kind !== 'dir') {
        // A single entry: into an existing directory, or at the path itself.
        let at = target;
        try {
          const { inode } = this.resolve(target, true);
          if ((inode.mode & S_IFMT) === S_IFDIR)
            at = (target === '/' ? '' : target) + '/' + Buffer.from(root.name).toString('utf8');
        } catch (e) {
          if (!(e instanceof Ext4Error) || e.code !== 'NOT_FOUND') throw e;
        }
        const { parent, name } = this.parentOf(at);
        this.copyNode(parent, name, root, opts, links, res, 0);
        return res;
      }
      let dirIno: number;
      if (target === '/') dirIno = ROOT_INO;
      else {
        const { parent, name, display } = this.parentOf(target);
        const slot = this.v.r.findEntry(parent, name);
        if (slot) {
          const { ino, inode } = this.resolve(display, true);
          if ((inode.mode & S_IFMT) !== S_IFDIR)
            throw new Ext4Error('NOT_A_DIRECTORY', `${display} is not a directory`, { path: display });
          dirIno = ino;
        } else {
          dirIno = this.makeDir(parent, name, { mode: root.perm, uid: root.uid, gid: root.gid });
          res.dirs++;
        }
      }
      this.copyChildren(dirIno, root, opts, links, res, 0);
      this.applyMeta(dirIno, root);
      return res;
    });
  }

  private copyChildren(
    dir: number,
    node: SourceNode,
    opts: CopyInOptions,
    links: Map<string, number>,
    res: CopyInResult,
    depth: number,
  ): void {
    if (depth > 4096) throw new Ext4Error('SOURCE_ERROR', `${node.displayPath}: tree deeper than 4096 levels`);
    for (const child of node.children()) {
      checkSourceName(child);
      this.copyNode(dir, child.name, child, opts, links, res, depth + 1);
      this.v.checkpoint();
    }
  }

  private copyNode(
    parent: number,
    name: Uint8Array,
    node: SourceNode,
    opts: CopyInOptions,
    links: Map<string, number>,
    res: CopyInResult,
    depth: number,
  ): void {
    const slot = this.v.r.findEntry(parent, name);
    const existing = slot ? this.v.readInode(slot.inode) : undefined;
    const existingType = existing ? existing.mode & S_IFMT : 0;
    const display = node.displayPath;
    if (slot) this.checkEditable(slot.inode, existing!, display);
    if (node.kind === 'dir') {
      let ino: number;
      if (slot) {
        if (existingType !== S_IFDIR)
          throw new Ext4Error('NOT_A_DIRECTORY', `cannot overwrite non-directory with directory ${display}`, {
            path: display,
          });
        ino = slot.inode;
      } else {
        ino = this.makeDir(parent, name, { mode: node.perm, uid: node.uid, gid: node.gid });
        res.dirs++;
      }
      this.copyChildren(ino, node, opts, links, res, depth);
      this.applyMeta(ino, node);
      return;
    }
    if (existingType === S_IFDIR)
      throw new Ext4Error('IS_A_DIRECTORY', `cannot overwrite directory with non-directory ${display}`, {
        path: display,
      });
    // A hard link to something already copied: link to it.
    const linked = node.linkKey !== undefined ? links.get(node.linkKey) : undefined;
    if (linked !== undefined) {
      if (slot) {
        if (slot.inode === linked) return;
        removeEntry(this.v, parent, name);
        this.dropLink(slot.inode);
      }
      addEntry(this.v, parent, name, linked, fileTypeOfMode(this.v.readInode(linked).mode));
      const li = this.v.readInode(linked);
      li.linksCount++;
      this.v.writeInode(linked, li);
      return;
    }
    let ino: number;
    if (node.kind === 'file' && existingType === S_IFREG) {
      ino = slot!.inode;
      const i = this.v.readInode(ino);
      writeContent(this.v, ino, i, nodeSource(node));
      this.v.writeInode(ino, i);
    } else {
      if (slot) {
        removeEntry(this.v, parent, name);
        this.dropLink(slot.inode);
      }
      const o = { mode: node.perm, uid: node.uid, gid: node.gid };
      if (node.kind === 'file') {
        const n = this.newInode('file', o, parent);
        ino = n.ino;
        this.v.initInode(ino, n.inode);
        writeContent(this.v, ino, n.inode, nodeSource(node));
        this.v.writeInode(ino, n.inode);
        this.linkNew(parent, name, ino, n.inode.mode);
      } else if (node.kind === 'symlink') {
        const t = node.readLink();
        this.checkTarget(t, display);
        ino = this.makeSymlink(parent, name, t, o);
      } else
        ino = this.makeNode(
          parent,
          name,
          node.kind,
          o,
          node.rdevMajor !== undefined ? [node.rdevMajor, node.rdevMinor ?? 0] : undefined,
        );
    }
    if (node.kind === 'file') {
      res.files++;
      res.bytes += node.size;
    } else res.other++;
    if (node.linkKey !== undefined) links.set(node.linkKey, ino);
    this.applyMeta(ino, node);
  }

  /** Mode, owner, times and attributes of a copied entry, as `cp -a` sets them. */
  private applyMeta(ino: number, node: SourceNode): void {
    const i = this.v.readInode(ino);
    if ((i.mode & S_IFMT) !== S_IFLNK) i.mode = (i.mode & S_IFMT) | (node.perm & 0o7777);
    i.uid = node.uid;
    i.gid = node.gid;
    i.atime = node.atime;
    i.mtime = node.mtime;
    i.ctime = this.now();
    this.v.writeInode(ino, i);
    const xs = node.xattrs();
    if (!xs.length) return;
    const list = listXattrs(this.v, ino);
    for (const x of xs) {
      const d = toDisk(x);
      const at = list.findIndex((y) => sameXattr(d, y));
      if (at >= 0) list[at] = d;
      else list.push(d);
    }
    writeXattrs(this.v, ino, this.v.readInode(ino), list);
  }

  // ---- recovery ----

  /**
   * The kernel's clean-up at mount of the orphan list (s_last_orphan, linked through i_dtime): an
   * orphan with no links left is deleted, one still linked is cut back to its size (an interrupted
   * truncation). Clears needs_recovery. Used by `recover`; returns the number of orphans.
   */
  cleanOrphans(): number {
    return this.op(() => cleanOrphans(this.v, this.now()));
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
      this.dirCache.clear();
      throw e;
    }
  }

  /** Drops every change not yet committed. */
  discard(): void {
    this.dirCache.clear();
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

// ---- helpers ----

/** An absolute path with '.' and empty components removed ('..' is kept for the lookup). */
function normalize(p: string): string {
  const parts = p.split('/').filter((x) => x !== '' && x !== '.');
  return '/' + parts.join('/');
}

function checkMode(m: number): number {
  if (!Number.isInteger(m) || m < 0 || m > 0o7777)
    throw new Ext4Error('BAD_OPTION', `mode ${m} is not a permission value (0 to 07777)`);
  return m;
}

function checkTime(t: Timestamp): void {
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
