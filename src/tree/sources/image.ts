/** A subtree of an ext4 image as a tree source: image to image, or out to a directory or an archive. */
import { Ext4Error } from '../../core/errors.js';
import { Ext4Reader } from '../../fs/reader.js';
import type { DirEntryInfo } from '../../fs/dir.js';
import type { BlockRun } from '../../fs/blockmap.js';
import { fileTypeOf } from '../../ext4/filetype.js';
import { FL_INLINE_DATA, S_IFMT, S_IFDIR, type Inode } from '../../ext4/inode.js';
import type { FileData, NodeKind, SourceNode, TreeSource, XattrEntry } from '../../core/types.js';
import { ENTRY_ERRORS } from '../walk.js';

/** CORRUPT for a name no directory may hold ('', '.', '..', a '/' or a NUL): it could lead out of a destination. */
function checkEntryName(name: Uint8Array, dir: string): void {
  const n = name.length;
  let bad = n === 0 || (name[0] === 0x2e && (n === 1 || (n === 2 && name[1] === 0x2e)));
  for (let k = 0; k < n && !bad; k++) bad = name[k] === 0x2f || name[k] === 0;
  if (bad)
    throw new Ext4Error(
      'CORRUPT',
      `unsafe entry name ${JSON.stringify(Buffer.from(name).toString('latin1'))} in ${dir}`,
    );
}

/** Byte order of two names (Buffer.compare costs more than the comparison for short names). */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let k = 0; k < n; k++) if (a[k] !== b[k]) return a[k]! - b[k]!;
  return a.length - b.length;
}

/** `e` with the path of the entry it concerns in front of its message. */
const withPath = (p: string, e: Ext4Error): Ext4Error =>
  new Ext4Error(e.code, `${p}: ${e.message}`, { ...e.context, path: p });

interface NodeOptions {
  /** The source's choice for unreadable entries (see ImageSourceOptions), each path reported once. */
  report?: (path: string, error: Ext4Error) => void;
}

class ImageNode implements SourceNode {
  readonly kind: NodeKind;
  readonly perm: number;
  readonly uid: number;
  readonly gid: number;
  readonly atime;
  readonly mtime;
  readonly ctime;
  readonly crtime;
  readonly size: number;
  readonly allocatedBytes: number;
  readonly rdevMajor?: number;
  readonly rdevMinor?: number;
  readonly linkKey?: string;
  readonly dirKey?: string;

  /** A directory's entries, read when it was checked (see `check`), until its children are made. */
  private listed?: DirEntryInfo[];
  /** A file's block map, read once when it was checked, for its data. */
  private runs?: BlockRun[];
  /** A symlink's target, read when it was checked. */
  private target?: Uint8Array;

  constructor(
    private readonly r: Ext4Reader,
    readonly ino: number,
    readonly name: Uint8Array,
    readonly displayPath: string,
    private readonly i: Inode,
    private readonly opts: NodeOptions,
  ) {
    const t = fileTypeOf(i.mode);
    if (!t)
      throw new Ext4Error('CORRUPT', `inode ${ino} has an unknown file type (mode 0${i.mode.toString(8)})`, {
        inode: ino,
      });
    this.kind = t;
    this.perm = i.mode & 0o7777;
    this.uid = i.uid;
    this.gid = i.gid;
    this.atime = i.atime;
    this.mtime = i.mtime;
    this.ctime = i.ctime;
    this.crtime = i.crtime.sec || i.crtime.nsec ? i.crtime : undefined;
    this.size = i.size;
    this.allocatedBytes = r.allocatedBytes(i);
    if (this.kind === 'chardev' || this.kind === 'blockdev') [this.rdevMajor, this.rdevMinor] = r.deviceNumbers(i);
    if (this.kind === 'dir') this.dirKey = `inode ${ino}`;
    else if (i.linksCount > 1) this.linkKey = `ino:${ino}`;
  }

  /**
   * Reads what a copy will need of this entry (its block map, link target or directory listing) so
   * that an entry that cannot be read fails here, by its path, before anything of it is written.
   */
  check(): this {
    const { r, ino, i } = this;
    if (this.kind === 'file' || this.kind === 'dir' || this.kind === 'symlink') r.checkReadable(ino, i);
    if (this.kind === 'file') {
      if (i.flags & FL_INLINE_DATA) r.readFileBytes(ino);
      else this.runs = r.blockRuns(ino, i);
    } else if (this.kind === 'symlink') this.target = r.readLink(ino, i);
    else if (this.kind === 'dir') this.listed = r.readDir(ino, i);
    return this;
  }

  xattrs(): XattrEntry[] {
    return this.r.xattrs(this.ino);
  }

  readLink(): Uint8Array {
    return (this.target ??= this.r.readLink(this.ino, this.i));
  }

  /** The data pieces (holes and unwritten extents left out), adjacent ones joined. */
  private segments(): [number, number][] {
    const { r, i } = this;
    const size = i.size;
    if (i.flags & FL_INLINE_DATA) return size ? [[0, size]] : [];
    const bs = r.blockSize;
    const segs: [number, number][] = [];
    for (const run of this.blockMap()) {
      const start = run.lblk * bs;
      if (start >= size) break;
      if (run.uninit) continue;
      const end = Math.min(size, (run.lblk + run.len) * bs);
      const last = segs[segs.length - 1];
      if (last && last[0] + last[1] === start) last[1] += end - start;
      else segs.push([start, end - start]);
    }
    return segs;
  }

  private blockMap(): BlockRun[] {
    return (this.runs ??= this.r.blockRuns(this.ino, this.i));
  }

  /** The file's bytes from its block map, read once: streamed in order, or by position. */
  openData(): FileData {
    const { r, ino, i } = this;
    const size = i.size;
    const runs = i.flags & FL_INLINE_DATA ? undefined : this.blockMap();
    const stream = (sink: (data: Uint8Array, offset: number) => void) =>
      r.readFile(ino, (d, off) => d && sink(d, off), i, runs);
    // By position (the image writer, copy-in): whole pieces are read through the block cache.
    let pieces: { off: number; len: number; read: () => Uint8Array }[] | undefined;
    const piecesOf = (pieces: { off: number; len: number; read: () => Uint8Array }[]) => {
      if (!runs) {
        const all = r.readFileBytes(ino);
        pieces.push({ off: 0, len: all.length, read: () => all });
      } else {
        const bs = r.blockSize;
        for (const run of runs) {
          if (run.uninit) continue;
          const off = run.lblk * bs;
          if (off >= size) break;
          const len = Math.min(run.len * bs, size - off);
          pieces.push({ off, len, read: () => r.readBlocks(run.pblk, Math.ceil(len / bs)).subarray(0, len) });
        }
      }
      return pieces;
    };
    let cache: { off: number; data: Uint8Array } | undefined;
    return {
      read(buf, length, position) {
        if (position >= size) return 0;
        const n = Math.min(length, size - position);
        buf.fill(0, 0, n);
        for (const p of (pieces ??= piecesOf([]))) {
          if (p.off >= position + n) break;
          if (p.off + p.len <= position) continue;
          if (!cache || cache.off !== p.off) cache = { off: p.off, data: p.read() };
          const s = Math.max(position, p.off);
          const e = Math.min(position + n, p.off + p.len);
          buf.set(cache.data.subarray(s - p.off, e - p.off), s - position);
        }
        return n;
      },
      verifyUnchanged() {},
      close() {
        cache = undefined;
      },
      segments: () => this.segments(),
      stream,
    };
  }

  children(skip?: (path: string, error: Error) => void): SourceNode[] {
    if (this.kind !== 'dir') return [];
    let entries = this.listed;
    if (!entries)
      try {
        entries = this.r.readDir(this.ino, this.i);
      } catch (err) {
        if (!(err instanceof Ext4Error) || !ENTRY_ERRORS.has(err.code)) throw err;
        throw withPath(this.displayPath, err);
      }
    this.listed = undefined;
    const out: ImageNode[] = [];
    const dir = this.displayPath.endsWith('/') ? this.displayPath : this.displayPath + '/';
    for (const e of entries) {
      const p = dir + Buffer.from(e.name).toString('utf8');
      try {
        checkEntryName(e.name, this.displayPath);
        // Directory loops are the walk's to find (tree/walk.ts, by dirKey): every whole-tree walk
        // goes through it.
        out.push(new ImageNode(this.r, e.inode, e.name, p, this.r.inode(e.inode), this.opts).check());
      } catch (err) {
        if (!(err instanceof Ext4Error) || !ENTRY_ERRORS.has(err.code)) throw err;
        if (skip) {
          skip(p, err);
          continue;
        }
        if (!this.opts.report) throw withPath(p, err);
        this.opts.report(p, withPath(p, err));
      }
    }
    // Byte order of names; a linear directory written in that order (ours, mkfs -d) needs no sort.
    for (let k = 1; k < out.length; k++)
      if (compareBytes(out[k - 1]!.name, out[k]!.name) > 0) return out.sort((a, b) => compareBytes(a.name, b.name));
    return out;
  }
}

export interface ImageSourceOptions {
  /** Skip entries with these names directly under the source root (e.g. lost+found). */
  skipRootNames?: string[];
  /**
   * Entries that cannot be read (encrypted, compressed, damaged, a directory loop) are left out, each
   * reported here once, with its path in front of the message. Without it such an entry fails the walk
   * with an error naming its path. A walk with a choice of its own (extract, the tar export) decides
   * for itself.
   */
  onUnreadable?: (path: string, error: Ext4Error) => void;
}

/** The subtree at `path` (default `/`) of an opened image. */
export function imageTreeSource(reader: Ext4Reader, path = '/', opts: ImageSourceOptions = {}): TreeSource {
  // A source path that is a symlink to a directory (/root -> /var/root) is followed, inside the image.
  const ino = reader.lookup(path, { followLast: true });
  const i = reader.inode(ino);
  if ((i.mode & S_IFMT) !== S_IFDIR)
    throw new Ext4Error('SOURCE_ERROR', `${path} in the image is not a directory`, { path });
  // Reported once, however often the tree is walked (sizing, then copying).
  const reported = new Set<string>();
  const own = opts.onUnreadable;
  const report =
    own &&
    ((p: string, e: Ext4Error) => {
      if (reported.has(p)) return;
      reported.add(p);
      own(p, e);
    });
  // What a walk finds unreadable (a loop, too deep, or what a listing hands it) comes without its path.
  // The walk reports nothing but an Ext4Error.
  const onUnreadable = report && ((p: string, e: Error) => report(p, withPath(p, e as Ext4Error)));
  const root = new ImageNode(reader, ino, new Uint8Array(0), path, i, { report });
  const skip = new Set(opts.skipRootNames ?? []);
  if (!skip.size) return { root: () => root, onUnreadable };
  const filtered = Object.create(root) as SourceNode;
  filtered.children = (s) => root.children(s).filter((c) => !skip.has(Buffer.from(c.name).toString('utf8')));
  return { root: () => filtered, onUnreadable };
}

/**
 * Inode `ino` of an image, of any type, as one source node named `name` (shown as `displayPath`), with
 * what a copy needs of it read already: an entry that cannot be read throws here.
 */
export function imageNode(reader: Ext4Reader, ino: number, name: Uint8Array, displayPath: string): SourceNode {
  return new ImageNode(reader, ino, name, displayPath, reader.inode(ino), {}).check();
}

/** The image source options that carry out a "skip unreadable entries" choice, warning for each. */
export function unreadableOption(
  skip: boolean | undefined,
  onWarning: ((message: string) => void) | undefined,
): Pick<ImageSourceOptions, 'onUnreadable'> {
  return skip ? { onUnreadable: (_p, e) => onWarning?.(`${e.message}: left out (skip unreadable entries)`) } : {};
}
