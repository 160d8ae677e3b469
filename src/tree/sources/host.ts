/** A host directory as a tree source (what `mkfs.ext4 -d DIR` reads). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Ext4Error } from '../../core/errors.js';
import type { Timestamp } from '../../ext4/inode.js';
import type { FileData, NodeKind, SourceNode, TreeSource, XattrEntry } from '../../core/types.js';

function ts(ns: bigint): Timestamp {
  const sec = ns >= 0n ? ns / 1_000_000_000n : -((-ns + 999_999_999n) / 1_000_000_000n);
  return { sec: Number(sec), nsec: Number(ns - sec * 1_000_000_000n) };
}

function kindOf(st: fs.BigIntStats): NodeKind {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

function sourceError(p: string, e: unknown): Ext4Error {
  const err = e as NodeJS.ErrnoException;
  const why =
    err.code === 'EACCES'
      ? 'permission denied'
      : err.code === 'ENOENT'
        ? 'it disappeared while being read'
        : (err.message ?? String(e));
  return new Ext4Error('SOURCE_ERROR', `cannot read ${p}: ${why}`, { path: p, cause: e });
}

/** Linux dev_t split: major is bits 8..19 and 32..43, minor bits 0..7 and 20..31. */
function splitDev(rdev: bigint): [number, number] {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return [major, minor];
}

/**
 * Listings kept between walks: the writer's fit estimate and the copy walk the same tree, and a kept
 * listing saves the second readdir and lstat of every entry. Past this many entries per source the
 * rest are listed again instead (about 0.4 KB an entry kept), so a tree of millions of entries does not
 * hold its whole metadata in memory.
 */
export const KEPT_ENTRIES = 65_536;

class HostNode implements SourceNode {
  readonly kind: NodeKind;
  readonly perm: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly allocatedBytes: number;
  readonly rdevMajor?: number;
  readonly rdevMinor?: number;
  readonly linkKey?: string;
  /**
   * The times as stat gave them (nanoseconds; mtime is also what the change check compares after
   * reading), made into timestamps when asked: a kept listing holds no object per time.
   */
  private readonly atimeNs: bigint;
  private readonly mtimeNs: bigint;
  private readonly ctimeNs: bigint;
  private readonly crtimeNs: bigint;
  /** Where the name starts in hostPath. */
  private readonly nameAt: number;

  /** Buffer paths keep names that are not valid UTF-8 exact. */
  constructor(
    readonly hostPath: Buffer,
    nameLength: number,
    st: fs.BigIntStats,
    private readonly xattrMap: Map<string, XattrEntry[]> | undefined,
    /** What is left of the source's KEPT_ENTRIES. */
    private readonly keep: { entries: number },
  ) {
    this.nameAt = hostPath.length - nameLength;
    this.atimeNs = st.atimeNs;
    this.mtimeNs = st.mtimeNs;
    this.ctimeNs = st.ctimeNs;
    this.crtimeNs = st.birthtimeNs;
    this.kind = kindOf(st);
    this.perm = Number(st.mode) & 0o7777;
    this.uid = Number(st.uid);
    this.gid = Number(st.gid);
    this.size = Number(st.size);
    this.allocatedBytes = Number(st.blocks) * 512;
    if (this.kind === 'chardev' || this.kind === 'blockdev') [this.rdevMajor, this.rdevMinor] = splitDev(st.rdev);
    if (this.kind !== 'dir' && st.nlink > 1n) this.linkKey = `${st.dev}:${st.ino}`;
  }

  /** The path's tail (no copy of its own). */
  get name(): Uint8Array {
    return this.hostPath.subarray(this.nameAt);
  }
  get atime(): Timestamp {
    return ts(this.atimeNs);
  }
  get mtime(): Timestamp {
    return ts(this.mtimeNs);
  }
  get ctime(): Timestamp {
    return ts(this.ctimeNs);
  }
  get crtime(): Timestamp | undefined {
    return this.crtimeNs > 0n ? ts(this.crtimeNs) : undefined;
  }

  /** Made when asked (messages, directories): a kept listing holds no string per entry. */
  get displayPath(): string {
    return this.hostPath.toString('utf8');
  }

  xattrs(): XattrEntry[] {
    // Node.js has no xattr API: attributes come from a getfattr dump when one is given (see xattr-dump.ts).
    if (!this.xattrMap) return [];
    return this.xattrMap.get(this.hostPath.toString('latin1')) ?? [];
  }

  readLink(): Uint8Array {
    try {
      return fs.readlinkSync(this.hostPath, { encoding: 'buffer' });
    } catch (e) {
      throw sourceError(this.displayPath, e);
    }
  }

  openData(): FileData {
    let fd: number;
    try {
      fd = fs.openSync(this.hostPath, fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0));
    } catch (e) {
      throw sourceError(this.displayPath, e);
    }
    const p = this.displayPath;
    const size = BigInt(this.size);
    const mtime = this.mtimeNs;
    return {
      read(buf, length, position) {
        try {
          return fs.readSync(fd, buf, 0, length, position);
        } catch (e) {
          throw sourceError(p, e);
        }
      },
      verifyUnchanged(bytesRead) {
        const now = fs.fstatSync(fd, { bigint: true });
        if (now.size !== size || now.mtimeNs !== mtime || BigInt(bytesRead) !== size)
          throw new Ext4Error('SOURCE_CHANGED', `${p} changed while it was being read (size ${size} -> ${now.size})`, {
            path: p,
          });
      },
      close() {
        fs.closeSync(fd);
      },
    };
  }

  private cached?: SourceNode[];

  /** Listed once and kept while the source's KEPT_ENTRIES allow; listed again past them. */
  children(): SourceNode[] {
    if (this.cached) return this.cached;
    const list = this.list();
    if (list.length <= this.keep.entries) {
      this.keep.entries -= list.length;
      this.cached = list;
    }
    return list;
  }

  private list(): SourceNode[] {
    let names: Buffer[];
    try {
      names = fs.readdirSync(this.hostPath, { encoding: 'buffer' });
    } catch (e) {
      throw sourceError(this.displayPath, e);
    }
    // Byte order, so the same tree always gives the same image.
    names.sort((a, b) => Buffer.compare(a, b));
    const slash = Buffer.from('/');
    return names.map((n) => {
      const childPath = Buffer.concat([this.hostPath, slash, n]);
      let st: fs.BigIntStats;
      try {
        st = fs.lstatSync(childPath, { bigint: true });
      } catch (e) {
        throw sourceError(childPath.toString('utf8'), e);
      }
      return new HostNode(childPath, n.length, st, this.xattrMap, this.keep);
    });
  }
}

export interface HostSourceOptions {
  /** Extended attributes by absolute host path (latin1 string of the path bytes); see readXattrDump. */
  xattrs?: Map<string, XattrEntry[]>;
  /** Entries whose listing is kept between walks (default KEPT_ENTRIES). */
  keptEntries?: number;
}

/** The directory `dir` on the host, its entries in byte order of their names. */
export function hostDirectorySource(dir: string, opts: HostSourceOptions = {}): TreeSource {
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(dir, { bigint: true });
  } catch (e) {
    throw sourceError(dir, e);
  }
  if (!st.isDirectory()) throw new Ext4Error('SOURCE_ERROR', `${dir} is not a directory`, { path: dir });
  const rootPath = Buffer.from(path.resolve(dir));
  if (opts.xattrs) checkDumpPaths(opts.xattrs, rootPath, true);
  const root = new HostNode(rootPath, 0, st, opts.xattrs, { entries: opts.keptEntries ?? KEPT_ENTRIES });
  return { root: () => root };
}

/**
 * Every path of an attribute dump must be in the source (the directory or below it, or the single
 * file): a dump taken from another directory, or with paths relative to somewhere else, would
 * otherwise lose every attribute without a word.
 */
function checkDumpPaths(xattrs: Map<string, XattrEntry[]>, rootPath: Buffer, isDir: boolean): void {
  const root = rootPath.toString('latin1');
  const prefix = root === '/' ? '/' : root + '/';
  for (const key of xattrs.keys()) {
    const inside = key === root || (isDir && key.startsWith(prefix));
    const shown = Buffer.from(key, 'latin1').toString('utf8');
    if (!inside || !fs.lstatSync(Buffer.from(key, 'latin1'), { throwIfNoEntry: false }))
      throw new Ext4Error(
        'BAD_OPTION',
        `the attribute dump names ${shown}, which is not ${isDir ? 'in the source directory' : 'the source file'} ${rootPath.toString('utf8')}; dump that ${isDir ? 'directory' : 'file'} (getfattr -R -d -m - -e hex --absolute-names ${isDir ? 'DIR' : 'FILE'})`,
        { path: shown },
      );
  }
}

/**
 * A host path as a tree source: the directory tree at `p`, or the single file, symlink or special file
 * it names (a symlink is not followed).
 */
export function hostPathSource(p: string, opts: HostSourceOptions = {}): TreeSource {
  const st = fs.lstatSync(p, { bigint: true, throwIfNoEntry: false });
  if (!st) throw new Ext4Error('SOURCE_ERROR', `${p}: no such file or directory`, { path: p });
  if (st.isDirectory()) return hostDirectorySource(p, opts);
  const filePath = Buffer.from(path.resolve(p));
  if (opts.xattrs) checkDumpPaths(opts.xattrs, filePath, false);
  const node = new HostNode(filePath, Buffer.byteLength(path.basename(filePath.toString())), st, opts.xattrs, {
    entries: 0,
  });
  return { root: () => node };
}
