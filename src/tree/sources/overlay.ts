/**
 * A tree source with metadata laid over it: an owner for every node, then an mtree spec's owner, mode,
 * time and attributes for the paths it names (spec.ts parses it). A decorator like any source: nodes
 * take the new metadata as a walk meets them, no extra pass over file data. Every path the spec names
 * is looked up (and its type, link target and size checked) when the overlay is made, before anything
 * is written. mkfs, copy-in and the work-disk job see their sources through it.
 */
import { sameBytes } from '../../core/bytes.js';
import { Ext4Error } from '../../core/errors.js';
import type { Timestamp } from '../../ext4/inode.js';
import type { NodeKind, SourceNode, TreeSource, XattrEntry } from '../../core/types.js';
import { KINDS, specPath, type Spec, type SpecEntry } from './spec.js';

const KIND_WORDS: Record<NodeKind, string> = {
  file: 'a regular file',
  dir: 'a directory',
  symlink: 'a symlink',
  chardev: 'a character device',
  blockdev: 'a block device',
  fifo: 'a FIFO',
  socket: 'a socket',
};

/** Options of {@link applySpec}. */
export interface SpecApplyOptions {
  /**
   * Owner of every entry, the root included, before the spec is applied (mkfs --owner, the work-disk
   * job's root:root): the spec's uid/gid win for the paths it names.
   */
  owner?: { uid: number; gid: number };
}

interface SpecTree {
  entry?: SpecEntry;
  children: Map<string, SpecTree>;
}

const nameKey = (n: Uint8Array) => Buffer.from(n.buffer, n.byteOffset, n.length).toString('latin1');

function specTree(spec: Spec): SpecTree {
  const root: SpecTree = { children: new Map() };
  for (const e of spec.entries) {
    let t = root;
    for (const n of e.names) {
      const k = nameKey(n);
      let c = t.children.get(k);
      if (!c) t.children.set(k, (c = { children: new Map() }));
      t = c;
    }
    t.entry = e;
  }
  return root;
}

/** What a spec entry changes of a node. */
interface Meta {
  uid?: number;
  gid?: number;
  mode?: number;
  time?: Timestamp;
  xattrs: XattrEntry[];
  /** The entries merged into it (hard links named more than once). */
  from: SpecEntry[];
}

const metaOf = (e: SpecEntry): Meta => ({
  uid: e.uid,
  gid: e.gid,
  mode: e.mode,
  time: e.time,
  xattrs: e.xattrs,
  from: [e],
});

/** The first entry of a subtree that must exist in the source. */
function firstRequired(t: SpecTree): SpecEntry | undefined {
  if (t.entry && !t.entry.optional) return t.entry;
  for (const c of t.children.values()) {
    const r = firstRequired(c);
    if (r) return r;
  }
  return undefined;
}

/** Checks an entry against the source node it names: type, link target, size. */
function verify(node: SourceNode, e: SpecEntry, file: string): void {
  const where = `${file}:${e.line}: ${e.path}`;
  const mismatch = (msg: string) => new Ext4Error('SPEC_MISMATCH', `${where}: ${msg}`, { path: e.path });
  if (e.type !== undefined && e.type !== node.kind)
    throw mismatch(
      `the spec says type=${Object.keys(KINDS).find((k) => KINDS[k] === e.type)}, the source has ${KIND_WORDS[node.kind]}`,
    );
  if (e.link !== undefined) {
    if (node.kind !== 'symlink') throw mismatch(`link= is given but the source has ${KIND_WORDS[node.kind]}`);
    const target = node.readLink();
    if (!sameBytes(target, e.link))
      throw mismatch(
        `the spec says link=${Buffer.from(e.link).toString('utf8')}, the source's link points to ${Buffer.from(target).toString('utf8')}`,
      );
  }
  if (e.size !== undefined && node.kind === 'file' && node.size !== e.size)
    throw mismatch(`the spec says size=${e.size}, the source file has ${node.size} bytes`);
}

/** Merges the metadata of two entries naming one inode (hard links); a value given twice must agree. */
function mergeLinked(a: Meta, b: Meta, file: string): Meta {
  const clash = (what: string) => {
    const x = a.from[0]!;
    const y = b.from[0]!;
    return new Ext4Error(
      'BAD_OPTION',
      `${file}:${y.line}: ${y.path} is a hard link to ${x.path} (line ${x.line}), one inode, but the spec gives them different ${what}`,
      { path: y.path },
    );
  };
  const out: Meta = { ...a, xattrs: [...a.xattrs], from: [...a.from, ...b.from] };
  for (const k of ['uid', 'gid', 'mode'] as const) {
    if (b[k] === undefined) continue;
    if (a[k] !== undefined && a[k] !== b[k]) throw clash(k);
    out[k] = b[k];
  }
  if (b.time) {
    if (a.time && (a.time.sec !== b.time.sec || a.time.nsec !== b.time.nsec)) throw clash('time');
    out.time = b.time;
  }
  for (const x of b.xattrs) {
    const y = out.xattrs.find((z) => z.name === x.name);
    if (y && !sameBytes(y.value, x.value)) throw clash(`xattr.${x.name}`);
    if (!y) out.xattrs.push(x);
  }
  return out;
}

/**
 * Walks the spec against the source: every path must exist (unless `optional`) and agree with its
 * `type`, `link` and `size`. Returns the metadata of hard-linked inodes the spec names, by link key,
 * so every link of one inode gets it whichever name the writer meets first.
 */
function resolve(source: TreeSource, spec: Spec, tree: SpecTree): Map<string, Meta> {
  const byLink = new Map<string, Meta>();
  const visit = (node: SourceNode, t: SpecTree, names: Uint8Array[]) => {
    const e = t.entry;
    if (e && !e.nochange) {
      verify(node, e, spec.file);
      if (node.linkKey !== undefined) {
        const had = byLink.get(node.linkKey);
        byLink.set(node.linkKey, had ? mergeLinked(had, metaOf(e), spec.file) : metaOf(e));
      }
    }
    if (!t.children.size) return;
    const kids = new Map<string, SourceNode>();
    if (node.kind === 'dir') for (const c of node.children()) kids.set(nameKey(c.name), c);
    for (const [k, ct] of t.children) {
      const c = kids.get(k);
      if (c) {
        visit(c, ct, [...names, c.name]);
        continue;
      }
      const missing = firstRequired(ct);
      if (!missing) continue;
      const why = node.kind === 'dir' ? '' : ` (${specPath(names)} is ${KIND_WORDS[node.kind]})`;
      throw new Ext4Error(
        'NOT_FOUND',
        `${spec.file}:${missing.line}: ${missing.path} is not in the source${why}; mark it optional if it may be missing`,
        { path: missing.path },
      );
    }
  };
  visit(source.root(), tree, []);
  return byLink;
}

/**
 * Checks `spec` against `source` without building anything: every path it names exists (unless
 * `optional`) and has the `type`, `link` target and `size` the spec gives. Throws NOT_FOUND or
 * SPEC_MISMATCH naming the spec's file, line and path.
 */
export function checkSpec(source: TreeSource, spec: Spec): void {
  resolve(source, spec, specTree(spec));
}

function mergeXattrs(base: XattrEntry[], over: XattrEntry[]): XattrEntry[] {
  const out = base.filter((x) => !over.some((o) => o.name === x.name));
  return [...out, ...over];
}

/**
 * A source node with a spec entry (and the owner) laid over it. A plain delegating object, its fields
 * copied once: wrapping every node of a large tree (mkfs --owner) stays cheap.
 */
class SpecNode implements SourceNode {
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
  readonly allocatedBytes?: number;
  readonly rdevMajor?: number;
  readonly rdevMinor?: number;
  readonly linkKey?: string;
  readonly dirKey?: string;

  constructor(
    private readonly inner: SourceNode,
    private readonly meta: Meta | undefined,
    owner: SpecApplyOptions['owner'],
    private readonly tree: SpecTree | undefined,
    private readonly wrap: (n: SourceNode, t: SpecTree | undefined) => SourceNode,
  ) {
    this.name = inner.name;
    this.displayPath = inner.displayPath;
    this.kind = inner.kind;
    this.perm = meta?.mode !== undefined && inner.kind !== 'symlink' ? meta.mode : inner.perm;
    this.uid = meta?.uid ?? owner?.uid ?? inner.uid;
    this.gid = meta?.gid ?? owner?.gid ?? inner.gid;
    this.atime = meta?.time ?? inner.atime;
    this.mtime = meta?.time ?? inner.mtime;
    this.ctime = meta?.time ?? inner.ctime;
    this.crtime = inner.crtime;
    this.size = inner.size;
    this.allocatedBytes = inner.allocatedBytes;
    this.rdevMajor = inner.rdevMajor;
    this.rdevMinor = inner.rdevMinor;
    this.linkKey = inner.linkKey;
    this.dirKey = inner.dirKey;
  }

  xattrs(): XattrEntry[] {
    const own = this.inner.xattrs();
    return this.meta?.xattrs.length ? mergeXattrs(own, this.meta.xattrs) : own;
  }

  readLink(): Uint8Array {
    return this.inner.readLink();
  }

  openData() {
    return this.inner.openData();
  }

  children(skip?: (path: string, error: Error) => void): SourceNode[] {
    const t = this.tree;
    return this.inner.children(skip).map((c) => this.wrap(c, t?.children.get(nameKey(c.name))));
  }
}

/**
 * `source` with the spec's metadata laid over the nodes it names (and `owner`, when given, over every
 * node first). The spec is checked against the source now (see {@link checkSpec}); the wrapping is
 * lazy, node by node as the writer walks, and reads no file data. What a spec entry sets:
 * uid, gid, mode (not on symlinks), time (as mtime, atime and ctime) and attributes (added to the
 * node's own, replacing one of the same name).
 */
export function applySpec(source: TreeSource, spec: Spec | undefined, opts: SpecApplyOptions = {}): TreeSource {
  const tree: SpecTree = spec ? specTree(spec) : { children: new Map() };
  const byLink = spec ? resolve(source, spec, tree) : new Map<string, Meta>();
  const owner = opts.owner;
  const wrap = (node: SourceNode, t: SpecTree | undefined): SourceNode => {
    const entry = t?.entry && !t.entry.nochange ? t.entry : undefined;
    const meta = (node.linkKey !== undefined ? byLink.get(node.linkKey) : undefined) ?? (entry && metaOf(entry));
    // Nothing here or below changes: hand the node on as it is.
    if (!meta && !owner && !t?.children.size && !byLink.size) return node;
    return new SpecNode(node, meta, owner, t, wrap);
  };
  const root = wrap(source.root(), tree);
  return { root: () => root, onUnreadable: source.onUnreadable };
}

/** What a tree is laid over with before it is copied into an image: the owner, the spec, or neither. */
export interface SourceMetadata {
  /** Owner of every entry, the root included. */
  owner?: { uid: number; gid: number };
  /** Per-path metadata, over the owner; checked against the source here. */
  spec?: Spec;
}

/**
 * `source` as the image writer or copy-in is to see it: `owner` over every node, then the spec's
 * metadata over the nodes it names (see {@link applySpec}); the source itself when neither is given.
 */
export function sourceWithMetadata(source: TreeSource | undefined, meta: SourceMetadata): TreeSource | undefined {
  if (source !== undefined && typeof (source as Partial<TreeSource>).root !== 'function')
    throw new Ext4Error(
      'BAD_OPTION',
      'the source must be a tree source (an object with root()); tarTreeSource and containerTreeSource give one in .source',
    );
  if (meta.spec && !source)
    throw new Ext4Error('BAD_OPTION', `the spec ${meta.spec.file} describes a source tree, and there is none`);
  if (!source || (!meta.owner && !meta.spec)) return source;
  return applySpec(source, meta.spec, { owner: meta.owner });
}
