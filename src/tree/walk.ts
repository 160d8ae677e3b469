/**
 * The one walk over a tree source, shared by every sink that consumes a tree (extract to a directory,
 * the tar export, the new image's writer and its size estimate, the editor's copy-in, the work-disk
 * job's count): depth limit, directory-loop check, hard-link keys and unreadable entries are decided
 * here, once. A sink only makes what it is handed, in order: a directory before its entries (and, if
 * it likes, again after them), a further name of a hard-linked inode as a link to what the first name
 * made.
 */
import { Ext4Error } from '../core/errors.js';
import type { SourceNode, TreeSource } from '../core/types.js';

/** Errors that concern one entry of a source (it can be left out), not the source or the sink as a whole. */
export const ENTRY_ERRORS: ReadonlySet<string> = new Set(['UNSUPPORTED_FEATURE', 'CORRUPT', 'BAD_CHECKSUM']);

/** Deeper trees are refused (the kernel's own path walk stops far sooner; this bounds the recursion). */
export const MAX_DEPTH = 4096;

/**
 * What a walk makes. `H` is the sink's handle of a directory made (where its entries go), `L` what
 * later names of a hard-linked inode link to. A sink that cannot take an entry it was handed reports
 * it with {@link TreeWalk.unreadable} before making anything of it.
 */
export interface TreeSink<H, L> {
  /** Makes directory `node` in `parent`; returns its handle, or undefined to leave its entries out. */
  dir(node: SourceNode, parent: H): H | undefined;
  /** After a directory's entries (metadata that must come last). */
  leave?(node: SourceNode, handle: H): void;
  /** Makes a non-directory; returns what further names of it link to (undefined: nothing was made). */
  leaf(node: SourceNode, parent: H): L | undefined;
  /** A further name of a hard-linked inode whose first name made `first`. */
  link(node: SourceNode, parent: H, first: L): void;
}

export interface WalkOptions {
  /**
   * Entries that cannot be read (encrypted, compressed, damaged) are reported here and left out, the
   * rest walked. Without it the first such entry fails the walk, with an error naming its path.
   */
  onUnreadable?: (path: string, error: Ext4Error) => void;
}

/** The walk options of a sink that leaves unreadable entries to the source's own choice (mkfs, copy-in). */
export const sourcePolicy = (source: TreeSource | undefined): WalkOptions => ({ onUnreadable: source?.onUnreadable });

export class TreeWalk<H, L> {
  /** What the first name of each hard-linked inode made, by link key. */
  private readonly links = new Map<string, L>();
  /** Keys of the directories on the path being walked. */
  private readonly onPath = new Set<string>();
  private readonly skip = (path: string, error: Error): void => this.unreadable(path, error);

  constructor(
    private readonly sink: TreeSink<H, L>,
    private readonly opts: WalkOptions = {},
  ) {}

  /**
   * An entry and, for a directory, everything below it. `open` gives its node; an entry error it
   * throws makes the entry an unreadable one at `path`.
   */
  entry(parent: H, path: string, open: () => SourceNode): void {
    let node: SourceNode;
    try {
      node = open();
    } catch (e) {
      this.unreadable(path, e);
      return;
    }
    this.visit(node, parent, 0);
  }

  /**
   * The entries of directory `dir`, made already as `handle`, at `depth` below the walk's top. `above`:
   * the directories on the path to `dir`, for the loop check, when they are not being walked now.
   */
  entries(dir: SourceNode, handle: H, depth = 1, above: readonly SourceNode[] = []): void {
    const keys = above.map((d) => d.dirKey).filter((k): k is string => k !== undefined && !this.onPath.has(k));
    for (const k of keys) this.onPath.add(k);
    try {
      this.walk(dir, handle, depth, false);
    } finally {
      for (const k of keys) this.onPath.delete(k);
    }
  }

  /** Reports an entry that cannot be read, or fails the walk with it; anything but an entry error is rethrown. */
  unreadable(path: string, e: unknown): void {
    if (!(e instanceof Ext4Error) || !ENTRY_ERRORS.has(e.code)) throw e;
    if (!this.opts.onUnreadable) throw new Ext4Error(e.code, `${path}: ${e.message}`, { ...e.context, path });
    this.opts.onUnreadable(path, e);
  }

  private visit(node: SourceNode, parent: H, depth: number): void {
    if (node.kind !== 'dir') return this.leaf(node, parent);
    const h = this.enter(node, parent, depth);
    if (h !== undefined) this.walk(node, h, depth + 1, true);
  }

  /** A directory at `depth`: refused when too deep or on its own path, else made by the sink. */
  private enter(node: SourceNode, parent: H, depth: number): H | undefined {
    if (depth > MAX_DEPTH)
      return void this.unreadable(
        node.displayPath,
        new Ext4Error('CORRUPT', `directory tree deeper than ${MAX_DEPTH} levels`),
      );
    // A directory that is its own ancestor would loop forever; a well-formed tree never does this.
    if (node.dirKey !== undefined && this.onPath.has(node.dirKey))
      return void this.unreadable(node.displayPath, new Ext4Error('CORRUPT', `directory loop through ${node.dirKey}`));
    return this.sink.dir(node, parent);
  }

  private leaf(node: SourceNode, parent: H): void {
    const key = node.linkKey;
    const first = key === undefined ? undefined : this.links.get(key);
    if (first !== undefined) return this.sink.link(node, parent, first);
    const made = this.sink.leaf(node, parent);
    if (made !== undefined && key !== undefined) this.links.set(key, made);
  }

  /**
   * Everything below `dir` (made as `handle`; its entries at `depth`), depth first with a stack of its
   * own: thousands of levels would overflow the call stack.
   */
  private walk(dir: SourceNode, handle: H, depth: number, leave: boolean): void {
    const frames: { dir: SourceNode; handle: H; depth: number; list: SourceNode[]; i: number; leave: boolean }[] = [];
    const push = (d: SourceNode, h: H, at: number, lv: boolean) => {
      const list = d.children(this.skip);
      if (d.dirKey !== undefined) this.onPath.add(d.dirKey);
      frames.push({ dir: d, handle: h, depth: at, list, i: 0, leave: lv });
    };
    try {
      push(dir, handle, depth, leave);
      while (frames.length) {
        const f = frames[frames.length - 1]!;
        if (f.i === f.list.length) {
          frames.pop();
          if (f.dir.dirKey !== undefined) this.onPath.delete(f.dir.dirKey);
          if (f.leave) this.sink.leave?.(f.dir, f.handle);
          continue;
        }
        const n = f.list[f.i++]!;
        if (n.kind !== 'dir') {
          this.leaf(n, f.handle);
          continue;
        }
        const h = this.enter(n, f.handle, f.depth);
        if (h !== undefined) push(n, h, f.depth + 1, true);
      }
    } finally {
      // Left by an error: the walk can go on elsewhere (a sink may catch and continue).
      for (const f of frames) if (f.dir.dirKey !== undefined) this.onPath.delete(f.dir.dirKey);
    }
  }
}
