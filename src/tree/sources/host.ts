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

class HostNode implements SourceNode {
  readonly name: Uint8Array;
  readonly displayPath: string;
  readonly kind: NodeKind;
  readonly perm: number;
  readonly uid: number;
  readonly gid: number;
  readonly atime: Timestamp;
  readonly mtime: Timestamp;
  readonly ctime: Timestamp;
  readonly crtime?: Timestamp;
  readonly size: number;
  readonly allocatedBytes: number;
  readonly rdevMajor?: number;
  readonly rdevMinor?: number;
  readonly linkKey?: string;
  /** What the change check compares after reading (the rest of the stat result is not kept). */
  private readonly sizeAtStat: bigint;
  private readonly mtimeAtStat: bigint;

  /** Buffer paths keep names that are not valid UTF-8 exact. */
  constructor(
    readonly hostPath: Buffer,
    name: Uint8Array,
    st: fs.BigIntStats,
    private readonly xattrMap?: Map<string, XattrEntry[]>,
  ) {
    this.name = name;
    this.displayPath = hostPath.toString('utf8');
    this.sizeAtStat = st.size;
    this.mtimeAtStat = st.mtimeNs;
    this.kind = kindOf(st);
    this.perm = Number(st.mode) & 0o7777;
    this.uid = Number(st.uid);
    this.gid = Number(st.gid);
    this.atime = ts(st.atimeNs);
    this.mtime = ts(st.mtimeNs);
    this.ctime = ts(st.ctimeNs);
    if (st.birthtimeNs > 0n) this.crtime = ts(st.birthtimeNs);
    this.size = Number(st.size);
    this.allocatedBytes = Number(st.blocks) * 512;
    if (this.kind === 'chardev' || this.kind === 'blockdev') [this.rdevMajor, this.rdevMinor] = splitDev(st.rdev);
    if (this.kind !== 'dir' && st.nlink > 1n) this.linkKey = `${st.dev}:${st.ino}`;
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
    const size = this.sizeAtStat;
    const mtime = this.mtimeAtStat;
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

  /** Listed once and kept: the writer's fit estimate and the copy walk the same tree. */
  children(): SourceNode[] {
    if (this.cached) return this.cached;
    this.cached = this.list();
    return this.cached;
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
      return new HostNode(childPath, new Uint8Array(n), st, this.xattrMap);
    });
  }
}

export interface HostSourceOptions {
  /** Extended attributes by absolute host path (latin1 string of the path bytes); see readXattrDump. */
  xattrs?: Map<string, XattrEntry[]>;
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
  const root = new HostNode(rootPath, new Uint8Array(0), st, opts.xattrs);
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
  const node = new HostNode(filePath, new Uint8Array(Buffer.from(path.basename(p))), st, opts.xattrs);
  return { root: () => node };
}
