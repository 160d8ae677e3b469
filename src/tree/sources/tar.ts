/**
 * Tar archives (and container image layers) as a tree source. Entries are applied in archive order the
 * way `tar -x` applies them: a later entry replaces an earlier one of the same name (a directory over a
 * directory only updates its metadata), missing parent directories are created, names are made safe the
 * way GNU tar makes them (a leading `/` and everything up to the last `..` removed, with a warning), and
 * a hard link names an entry that came earlier. In layer mode, OCI whiteouts (`.wh.NAME`, the opaque
 * `.wh..wh..opq`) remove what lower layers hold. Only metadata is kept in memory; file data is read
 * where the archive (or its spool file) holds it.
 */
import * as os from 'node:os';
import type { Readable } from 'node:stream';
import { Ext4Error } from '../../core/errors.js';
import type { Timestamp } from '../../ext4/inode.js';
import { aclFromText } from '../../archive/acl.js';
import { openArchive } from '../../archive/input.js';
import {
  StreamByteSource,
  preadArchive,
  readTar,
  type ByteSource,
  type DataRef,
  type TarEntry,
} from '../../archive/read.js';
import type { FileData, NodeKind, SourceNode, TreeSource, XattrEntry } from '../../core/types.js';

interface TNode {
  id: number;
  kind: NodeKind;
  perm: number;
  uid: number;
  gid: number;
  atime: Timestamp;
  mtime: Timestamp;
  ctime: Timestamp;
  size: number;
  target?: Buffer;
  data?: DataRef;
  rdev?: [number, number];
  xattrs: XattrEntry[];
  children?: Map<string, Dirent>;
}

/** A name in a directory; the name itself is the map's key (latin1 of its bytes). */
interface Dirent {
  node: TNode;
  /** The last layer that created or declared this name (whiteouts only hide lower layers). */
  layer: number;
}

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/** Reads `length` bytes of a stored entry at `position` of the file (holes of a sparse file as zeros). */
export function readStored(d: DataRef, size: number, buf: Uint8Array, length: number, position: number): number {
  const n = Math.max(0, Math.min(length, size - position));
  if (n === 0) return 0;
  const pread = (dst: number, len: number, at: number) => {
    if (preadArchive(d.fd, buf, dst, len, d.offset + at) < len)
      throw new Ext4Error('SOURCE_CHANGED', 'the archive became shorter while it was read');
  };
  const segs = d.segments;
  if (!segs) {
    pread(0, n, position);
    return n;
  }
  buf.fill(0, 0, n);
  // Binary search for the first segment ending after `position`.
  let lo = 0;
  let hi = segs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (segs[mid]![0] + segs[mid]![1] <= position) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < segs.length; i++) {
    const [o, len] = segs[i]!;
    if (o >= position + n) break;
    const from = Math.max(o, position);
    const to = Math.min(o + len, position + n);
    if (to > from) pread(from - position, to - from, d.storedAt![i]! + (from - o));
  }
  return n;
}

export interface TarTreeOptions {
  onWarning?: (message: string) => void;
  /** The root directory's metadata until an entry for `.` sets it (default 0755 root:root, time 0). */
  rootTime?: Timestamp;
}

/** A tree built from archive entries, one or more archives (layers) applied in order. */
export class TarTree {
  private nextId = 1;
  private readonly root: TNode;
  private readonly warned = new Set<string>();
  entries = 0;
  constructor(private readonly opts: TarTreeOptions = {}) {
    const t = opts.rootTime ?? { sec: 0, nsec: 0 };
    this.root = this.node('dir', 0o755, 0, 0, t);
  }

  private node(kind: NodeKind, perm: number, uid: number, gid: number, t: Timestamp): TNode {
    const n: TNode = {
      id: this.nextId++,
      kind,
      perm,
      uid,
      gid,
      atime: t,
      mtime: t,
      ctime: t,
      size: 0,
      xattrs: NO_XATTRS,
    };
    if (kind === 'dir') n.children = new Map();
    return n;
  }

  /** Passes a warning on, once per distinct text. */
  warn(msg: string): void {
    if (this.warned.has(msg)) return;
    this.warned.add(msg);
    this.opts.onWarning?.(msg);
  }

  /** Path components of a member name, made safe like GNU tar: no leading '/', nothing up to the last '..'. */
  private components(name: Buffer, what: string): Buffer[] {
    const parts: Buffer[] = [];
    let start = 0;
    for (let i = 0; i <= name.length; i++) {
      if (i === name.length || name[i] === 0x2f) {
        if (i > start && !(i - start === 1 && name[start] === 0x2e)) parts.push(name.subarray(start, i));
        start = i + 1;
      }
    }
    if (name[0] === 0x2f) this.warn(`removing leading '/' from ${what}`);
    let last = -1;
    parts.forEach((p, i) => {
      if (p.length === 2 && p[0] === 0x2e && p[1] === 0x2e) last = i;
    });
    if (last >= 0) {
      const prefix = parts
        .slice(0, last + 1)
        .map((p) => p.toString('utf8'))
        .join('/');
      this.warn(`removing leading '${name[0] === 0x2f ? '/' : ''}${prefix}/' from ${what}`);
      return parts.slice(last + 1);
    }
    return parts;
  }

  private static key(b: Buffer): string {
    return b.toString('latin1');
  }

  private display(parts: Buffer[]): string {
    return '/' + parts.map((p) => p.toString('utf8')).join('/');
  }

  /** The directory holding `parts`' last component; missing directories are made (0755 root:root). */
  private parentDir(parts: Buffer[], t: Timestamp, layer: number): TNode {
    let dir = this.root;
    for (let i = 0; i < parts.length - 1; i++) {
      const k = TarTree.key(parts[i]!);
      let d = dir.children!.get(k);
      if (!d) {
        d = { node: this.node('dir', 0o755, 0, 0, t), layer };
        dir.children!.set(k, d);
      } else if (d.node.kind !== 'dir')
        throw new Ext4Error(
          'SOURCE_ERROR',
          `${this.display(parts)}: ${this.display(parts.slice(0, i + 1))} is not a directory in the archive`,
          { path: this.display(parts) },
        );
      dir = d.node;
    }
    return dir;
  }

  /** The entry at `parts`, or undefined. */
  private lookup(parts: Buffer[]): Dirent | undefined {
    let dir = this.root;
    let d: Dirent | undefined;
    for (let i = 0; i < parts.length; i++) {
      d = dir.children?.get(TarTree.key(parts[i]!));
      if (!d) return undefined;
      dir = d.node;
    }
    return d;
  }

  /** Hides in `dir` everything lower layers put there (an opaque directory of `layer`). */
  private hideLower(dir: TNode, layer: number): void {
    for (const [k, d] of dir.children!) {
      if (d.layer < layer) dir.children!.delete(k);
      else if (d.node.kind === 'dir') this.hideLower(d.node, layer);
    }
  }

  private setMeta(n: TNode, e: TarEntry): void {
    n.perm = e.perm;
    n.uid = e.uid;
    n.gid = e.gid;
    n.mtime = e.mtime;
    n.atime = e.atime ?? e.mtime;
    n.ctime = e.ctime ?? e.mtime;
    n.xattrs = attributes(e);
  }

  /** Applies one archive entry. `layer` is the layer's index in layer mode (whiteouts apply), else undefined. */
  apply(e: TarEntry, layer?: number): void {
    this.entries++;
    const L = layer ?? 0;
    const parts = this.components(e.name, 'member names');
    const where = this.display(parts);
    if (parts.length === 0) {
      if (e.kind !== 'dir')
        throw new Ext4Error('SOURCE_ERROR', `an entry of type ${e.kind} names the archive's root directory`);
      this.setMeta(this.root, e);
      return;
    }
    const last = parts[parts.length - 1]!;
    if (layer !== undefined && last.toString('latin1').startsWith(WHITEOUT)) {
      const dir = this.lookup(parts.slice(0, -1));
      if (parts.length > 1 && (!dir || dir.node.kind !== 'dir')) return; // nothing below to hide
      const parent = parts.length > 1 ? dir!.node : this.root;
      const s = last.toString('latin1');
      if (s === OPAQUE) this.hideLower(parent, L);
      else if (s.startsWith(WHITEOUT + WHITEOUT)) this.warn(`${where}: reserved whiteout name, ignored`);
      else {
        const k = s.slice(WHITEOUT.length);
        const d = parent.children!.get(k);
        if (d && d.layer < L) parent.children!.delete(k);
      }
      return;
    }
    const dir = this.parentDir(parts, e.mtime, L);
    const k = TarTree.key(last);
    const existing = dir.children!.get(k);
    if (e.kind === 'hardlink') {
      const tparts = this.components(e.linkName, 'hard link targets');
      const t = this.lookup(tparts);
      if (!t)
        throw new Ext4Error(
          'SOURCE_ERROR',
          `${where}: hard link to ${this.display(tparts)}, which is not earlier in the archive`,
          { path: where },
        );
      if (t.node.kind === 'dir')
        throw new Ext4Error('SOURCE_ERROR', `${where}: hard link to the directory ${this.display(tparts)}`, {
          path: where,
        });
      if (existing?.node.kind === 'dir' && existing.node.children!.size)
        throw new Ext4Error('SOURCE_ERROR', `${where}: a hard link cannot replace a non-empty directory`, {
          path: where,
        });
      dir.children!.set(k, { node: t.node, layer: L });
      return;
    }
    if (e.kind === 'dir' && existing?.node.kind === 'dir') {
      this.setMeta(existing.node, e);
      existing.layer = L;
      return;
    }
    const n = this.node(e.kind, e.perm, e.uid, e.gid, e.mtime);
    this.setMeta(n, e);
    if (e.kind === 'file') {
      n.size = e.size;
      n.data = e.data;
    } else if (e.kind === 'symlink') {
      if (e.linkName.length === 0) throw new Ext4Error('SOURCE_ERROR', `${where}: symlink without a target`);
      n.target = e.linkName;
      n.size = e.linkName.length;
    } else if (e.kind === 'chardev' || e.kind === 'blockdev') n.rdev = [e.devMajor, e.devMinor];
    dir.children!.set(k, { node: n, layer: L });
  }

  /** Reads a whole archive into the tree. */
  async read(src: ByteSource, layer?: number): Promise<void> {
    for await (const e of readTar(src, { onWarning: (m) => this.warn(m) })) this.apply(e, layer);
    // A stream is read to its end: a compressed one's checksums cover it all, and trailing bytes are noticed.
    if (src instanceof StreamByteSource) await src.drain();
  }

  /** The tree as a source for the image writer. */
  source(): TreeSource {
    // Hard links: inodes reached through more than one name.
    const refs = new Map<number, number>();
    const stack = [this.root];
    while (stack.length) {
      for (const d of stack.pop()!.children!.values()) {
        if (d.node.kind === 'dir') stack.push(d.node);
        else refs.set(d.node.id, (refs.get(d.node.id) ?? 0) + 1);
      }
    }
    const r = new TarNode('', this.root, undefined, refs);
    return { root: () => r };
  }
}

/**
 * A tree node as the writer sees it: made when its directory is listed, kept by nobody after (a
 * million-entry archive holds its tree once, not a second time as nodes), methods on the prototype.
 */
class TarNode implements SourceNode {
  constructor(
    /** latin1 of the name's bytes (the directory map's key). */
    private readonly key: string,
    private readonly n: TNode,
    private readonly parent: TarNode | undefined,
    private readonly refs: Map<number, number>,
  ) {}
  get name(): Uint8Array {
    return Buffer.from(this.key, 'latin1');
  }
  get displayPath(): string {
    if (!this.parent) return '/';
    const up = this.parent.displayPath;
    return `${up === '/' ? '' : up}/${Buffer.from(this.key, 'latin1').toString('utf8')}`;
  }
  get kind(): NodeKind {
    return this.n.kind;
  }
  get perm(): number {
    return this.n.perm;
  }
  get uid(): number {
    return this.n.uid;
  }
  get gid(): number {
    return this.n.gid;
  }
  get atime(): Timestamp {
    return this.n.atime;
  }
  get mtime(): Timestamp {
    return this.n.mtime;
  }
  get ctime(): Timestamp {
    return this.n.ctime;
  }
  get size(): number {
    return this.n.size;
  }
  get allocatedBytes(): number {
    return this.n.data ? this.n.data.length : 0;
  }
  get rdevMajor(): number | undefined {
    return this.n.rdev?.[0];
  }
  get rdevMinor(): number | undefined {
    return this.n.rdev?.[1];
  }
  get linkKey(): string | undefined {
    return (this.refs.get(this.n.id) ?? 0) > 1 ? `tar:${this.n.id}` : undefined;
  }
  xattrs(): XattrEntry[] {
    return this.n.xattrs;
  }
  readLink(): Uint8Array {
    return this.n.target ?? new Uint8Array(0);
  }
  openData(): FileData {
    const n = this.n;
    return {
      read: (buf, length, position) => (n.data ? readStored(n.data, n.size, buf, length, position) : 0),
      verifyUnchanged: () => {},
      close: () => {},
    };
  }
  /** In byte order of the names (latin1 keys compare as their bytes do). */
  children(): SourceNode[] {
    return [...this.n.children!.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, d]) => new TarNode(k, d.node, this, this.refs));
  }
}

/** Shared by every entry without attributes (never changed: entries get a new list when they have some). */
const NO_XATTRS: XattrEntry[] = [];

/** An entry's attributes; a text ACL is used only where no binary ACL attribute came with it. */
function attributes(e: TarEntry): XattrEntry[] {
  if (!e.xattrs.length && e.aclAccess === undefined && e.aclDefault === undefined) return NO_XATTRS;
  const out = e.xattrs.slice();
  const where = e.name.toString('utf8');
  if (e.aclAccess !== undefined && !out.some((x) => x.name === 'system.posix_acl_access')) {
    const v = aclFromText(e.aclAccess, where);
    // An ACL of only the three base entries says nothing the mode does not: tar writes none either.
    if (v.length > 4 + 8 * 3) out.push({ name: 'system.posix_acl_access', value: v });
  }
  if (e.aclDefault !== undefined && e.kind === 'dir' && !out.some((x) => x.name === 'system.posix_acl_default')) {
    const v = aclFromText(e.aclDefault, where);
    if (v.length > 4) out.push({ name: 'system.posix_acl_default', value: v });
  }
  return out;
}

export interface TarSourceOptions extends TarTreeOptions {
  /** Where file data of a stream (stdin, gzip) is spooled while the tree is read; default the temp dir. */
  spoolDir?: string;
  /** The stream read for '-' (default process.stdin). */
  stdin?: Readable;
}

export interface TarSource {
  source: TreeSource;
  /** Entries read from the archive. */
  entries: number;
  /** Releases the archive and its spool file; call after the image is written. */
  close(): void;
}

/**
 * Reads a tar archive (plain or gzip, a file or '-' for stdin) into a tree source. The whole archive is
 * read (and checked) before this returns, so a bad archive fails before any image is made.
 */
export async function tarTreeSource(input: string, opts: TarSourceOptions = {}): Promise<TarSource> {
  const a = await openArchive(input, opts.spoolDir ?? os.tmpdir(), opts.stdin, opts.onWarning);
  try {
    const tree = new TarTree(opts);
    await tree.read(a.source);
    return { source: tree.source(), entries: tree.entries, close: () => a.close() };
  } catch (e) {
    a.close();
    throw e;
  }
}
