/** A subtree of an ext4 image as a tree source: image to image, with no host directory in between. */
import { Ext4Error } from '../ext4/errors.js';
import { Ext4Reader } from '../fs/reader.js';
import type { DirEntryInfo } from '../fs/dir.js';
import { fileTypeOf } from '../ext4/filetype.js';
import { S_IFMT, S_IFDIR, type Inode } from '../ext4/inode.js';
import type { FileData, NodeKind, SourceNode, TreeSource, XattrEntry } from './types.js';

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

  /** A directory's entries, read when it was checked (see `check`), until its children are made. */
  private listed?: DirEntryInfo[];

  constructor(
    private readonly r: Ext4Reader,
    readonly ino: number,
    readonly name: Uint8Array,
    readonly displayPath: string,
    private readonly i: Inode,
    private readonly depth: number,
    private readonly opts: ImageSourceOptions & { reported: Set<string> },
  ) {
    const t = fileTypeOf(i.mode);
    if (!t)
      throw new Ext4Error(
        'CORRUPT',
        `${displayPath}: inode ${ino} has an unknown file type (mode 0${i.mode.toString(8)})`,
        { inode: ino },
      );
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
    if (this.kind !== 'dir' && i.linksCount > 1) this.linkKey = `ino:${ino}`;
  }

  /**
   * Reads what the copy will need of this entry (its mapping, link target or directory listing) so
   * that an entry that cannot be read fails here, by its path, before anything of it is written.
   */
  check(): void {
    const { r, ino, i } = this;
    if (this.kind === 'file' || this.kind === 'dir' || this.kind === 'symlink') r.checkReadable(ino, i);
    if (this.kind === 'file') {
      if (i.flags & 0x10000000) r.readFileBytes(ino);
      else r.blockRuns(ino, i);
    } else if (this.kind === 'symlink') r.readLink(ino, i);
    else if (this.kind === 'dir') this.listed = r.readDir(ino, i);
  }

  xattrs(): XattrEntry[] {
    return this.r.xattrs(this.ino);
  }

  readLink(): Uint8Array {
    return this.r.readLink(this.ino, this.i);
  }

  /** Reads the whole mapping once into a cursor; the writer asks for bytes in order. */
  openData(): FileData {
    const r = this.r;
    const ino = this.ino;
    const i = this.i;
    const size = i.size;
    // Map of data pieces in order; holes are absent.
    const pieces: { off: number; len: number; read: () => Uint8Array }[] = [];
    const bs = r.blockSize;
    if (i.flags & 0x10000000) {
      const all = r.readFileBytes(ino);
      pieces.push({ off: 0, len: all.length, read: () => all });
    } else {
      for (const run of r.blockRuns(ino, i)) {
        if (run.uninit) continue;
        const off = run.lblk * bs;
        if (off >= size) break;
        const len = Math.min(run.len * bs, size - off);
        pieces.push({ off, len, read: () => r.readBlocks(run.pblk, Math.ceil(len / bs)).subarray(0, len) });
      }
    }
    let cache: { off: number; data: Uint8Array } | undefined;
    return {
      read(buf, length, position) {
        if (position >= size) return 0;
        const n = Math.min(length, size - position);
        buf.fill(0, 0, n);
        for (const p of pieces) {
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
    };
  }

  children(): SourceNode[] {
    if (this.kind !== 'dir') return [];
    if (this.depth > 4096)
      throw new Ext4Error('CORRUPT', `${this.displayPath}: directory tree deeper than 4096 levels`);
    let entries = this.listed;
    if (!entries)
      try {
        entries = this.r.readDir(this.ino, this.i);
      } catch (err) {
        if (!(err instanceof Ext4Error) || !ENTRY_ERRORS.has(err.code)) throw err;
        throw new Ext4Error(err.code, `${this.displayPath}: ${err.message}`, {
          ...err.context,
          path: this.displayPath,
        });
      }
    this.listed = undefined;
    const out: SourceNode[] = [];
    const dir = this.displayPath.endsWith('/') ? this.displayPath : this.displayPath + '/';
    for (const e of entries) {
      const p = dir + Buffer.from(e.name).toString('utf8');
      try {
        const child = this.r.inode(e.inode);
        const isDir = (child.mode & S_IFMT) === S_IFDIR;
        // A directory that is its own ancestor would loop forever; a well-formed tree never does this.
        if (isDir && (e.inode === this.ino || this.ancestors().has(e.inode)))
          throw new Ext4Error('CORRUPT', `directory loop through inode ${e.inode}`, { inode: e.inode });
        const node = new ImageNode(this.r, e.inode, e.name, p, child, this.depth + 1, this.opts).withParent(this);
        node.check();
        out.push(node);
      } catch (err) {
        if (!(err instanceof Ext4Error) || !ENTRY_ERRORS.has(err.code)) throw err;
        const named = new Ext4Error(err.code, `${p}: ${err.message}`, { ...err.context, path: p });
        if (!this.opts.onUnreadable) throw named;
        // Reported once, however often the tree is walked (sizing, then copying).
        if (!this.opts.reported.has(p)) {
          this.opts.reported.add(p);
          this.opts.onUnreadable(p, named);
        }
      }
    }
    out.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
    return out;
  }

  private parent?: ImageNode;
  withParent(p: ImageNode): this {
    this.parent = p;
    return this;
  }
  private ancestors(): Set<number> {
    const s = new Set<number>();
    for (let n: ImageNode | undefined = this; n; n = n.parent) s.add(n.ino);
    return s;
  }
}

export interface ImageSourceOptions {
  /** Skip entries with these names directly under the source root (e.g. lost+found). */
  skipRootNames?: string[];
  /**
   * Entries that cannot be read (encrypted, compressed, damaged) are left out, each reported here
   * once. Without it such an entry fails the walk with an error naming its path.
   */
  onUnreadable?: (path: string, error: Ext4Error) => void;
}

/** Errors that concern one entry (it can be left out), not the image as a whole. */
const ENTRY_ERRORS = new Set(['UNSUPPORTED_FEATURE', 'CORRUPT', 'BAD_CHECKSUM']);

/** The subtree at `path` (default `/`) of an opened image. */
export function imageTreeSource(reader: Ext4Reader, path = '/', opts: ImageSourceOptions = {}): TreeSource {
  // A source path that is a symlink to a directory (/root -> /var/root) is followed, inside the image.
  const ino = reader.lookup(path, { followLast: true });
  const i = reader.inode(ino);
  if ((i.mode & S_IFMT) !== S_IFDIR)
    throw new Ext4Error('SOURCE_ERROR', `${path} in the image is not a directory`, { path });
  const root = new ImageNode(reader, ino, new Uint8Array(0), path, i, 0, { ...opts, reported: new Set() });
  const skip = new Set(opts.skipRootNames ?? []);
  if (!skip.size) return { root: () => root };
  const filtered: SourceNode = Object.create(root);
  filtered.children = () => root.children().filter((c) => !skip.has(Buffer.from(c.name).toString('utf8')));
  return { root: () => filtered };
}

/** The image source options that carry out a "skip unreadable entries" choice, warning for each. */
export function unreadableOption(
  skip: boolean | undefined,
  onWarning: ((message: string) => void) | undefined,
): Pick<ImageSourceOptions, 'onUnreadable'> {
  return skip ? { onUnreadable: (_p, e) => onWarning?.(`${e.message}: left out (skip unreadable entries)`) } : {};
}
