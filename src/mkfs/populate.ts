/**
 * Populating a new image (mkfs --from): the sink of the tree walk (tree/walk.ts) that turns each entry
 * into an inode and a directory entry, laid out by the writer (writer.ts). Inode numbers go in walk
 * order, a directory's before its entries; its blocks are written after them, when the entries are
 * known. The root and lost+found are the formatter's own inodes: a source `lost+found` becomes the file
 * system's, its entries written after the rest of the tree.
 */
import { Ext4Error } from '../core/errors.js';
import { MODE_OF_TYPE, DIRENT_TYPE_OF } from '../ext4/filetype.js';
import {
  type Inode,
  emptyInode,
  S_IFDIR,
  FL_EXTENTS,
  I_BLOCK_SIZE,
  encodeDeviceNumbers,
  ROOT_INO,
  LOST_FOUND_INO,
  LINK_MAX,
} from '../ext4/inode.js';
import { type DirEntry, FT_DIR } from '../ext4/dirent.js';
import type { DiskXattr } from '../ext4/xattr.js';
import type { SourceNode, TreeSource } from '../core/types.js';
import { TreeWalk, sourcePolicy, type TreeSink } from '../tree/walk.js';
import { checkName } from './estimate.js';
import {
  type WriterContext,
  allocData,
  flushData,
  mapExtents,
  placeXattrs,
  sealXattrBlocks,
  writeDirectory,
  writeFileData,
} from './writer.js';

/** i_block of inodes that keep nothing there (FIFOs, sockets, empty files before mapping); never mutated. */
const NO_BLOCKS = new Uint8Array(I_BLOCK_SIZE);

/** A directory made without a source (the root, lost+found): now, owned by `owner` or root. */
function newDirInode(ctx: WriterContext, perm: number): Inode {
  const t = ctx.now;
  return {
    ...emptyInode(),
    mode: S_IFDIR | perm,
    atime: t,
    mtime: t,
    ctime: t,
    crtime: t,
    extraIsize: ctx.extraIsize,
    uid: ctx.owner?.uid ?? 0,
    gid: ctx.owner?.gid ?? 0,
  };
}

function baseInode(ctx: WriterContext, node: SourceNode): Inode {
  return {
    mode: MODE_OF_TYPE[node.kind] | (node.perm & 0o7777),
    // FormatOptions.owner reaches source nodes through the source's overlay (tree/sources/overlay.ts),
    // so a spec can still give a path another owner.
    uid: node.uid,
    gid: node.gid,
    size: 0,
    atime: node.atime,
    mtime: node.mtime,
    ctime: node.ctime,
    crtime: node.crtime ?? ctx.now,
    dtime: 0,
    linksCount: 1,
    blocks: 0,
    flags: 0,
    version: 0,
    block: NO_BLOCKS,
    generation: 0,
    fileAcl: 0,
    extraIsize: ctx.extraIsize,
    projid: 0,
  };
}

/** Writes one non-directory node's content and inode; returns its inode number. */
function writeLeaf(ctx: WriterContext, node: SourceNode): number {
  const ino = ctx.inodes.alloc();
  const inode = baseInode(ctx, node);
  if (node.kind === 'file') {
    const d = writeFileData(ctx, ino, node);
    inode.size = node.size;
    inode.flags = FL_EXTENTS;
    inode.block = d.iBlock;
    inode.blocks = (d.blocks * ctx.l.blockSize) / 512;
  } else if (node.kind === 'symlink') {
    const target = node.readLink();
    // The target and its terminating NUL must fit one block (kernel: ext4_symlink).
    const max = Math.min(4095, ctx.l.blockSize - 1);
    if (target.length === 0 || target.length > max)
      throw new Ext4Error(
        'NAME_TOO_LONG',
        `symlink ${node.displayPath} has a ${target.length}-byte target; with ${ctx.l.blockSize}-byte blocks at most ${max} bytes fit`,
        { path: node.displayPath },
      );
    inode.size = target.length;
    if (target.length < I_BLOCK_SIZE) {
      // Fast symlink: the target lives in i_block itself.
      inode.block = new Uint8Array(I_BLOCK_SIZE);
      inode.block.set(target);
    } else {
      const blk = new Uint8Array(ctx.l.blockSize);
      blk.set(target);
      const [r] = allocData(ctx, 1);
      ctx.put(r!.start, blk);
      const m = mapExtents(ctx, ino, [{ lblk: 0, pblk: r!.start, len: 1 }]);
      inode.flags = FL_EXTENTS;
      inode.block = m.iBlock;
      inode.blocks = ((1 + m.treeBlocks) * ctx.l.blockSize) / 512;
    }
  } else if (node.kind === 'chardev' || node.kind === 'blockdev') {
    inode.block = encodeDeviceNumbers(node.rdevMajor ?? 0, node.rdevMinor ?? 0);
  }
  ctx.inodes.set(ino, inode, false, placeXattrs(ctx, inode, node));
  return ino;
}

/** A directory being written: its inode, and its entries as the walk hands them over. */
interface Dir {
  /** The directory's path, for messages. */
  path: string;
  ino: number;
  parent: number;
  inode: Inode;
  entries: DirEntry[];
  subdirs: number;
  /** Names seen so far (latin1 of the bytes): a source listing one twice is refused. */
  names: Set<string>;
  /** The root, where a `lost+found` is the file system's own. */
  top: boolean;
  /** Its attributes stored inside the inode. */
  xattrs?: DiskXattr[];
}

const newDir = (path: string, ino: number, parent: number, inode: Inode, top = false): Dir => ({
  path,
  ino,
  parent,
  inode,
  entries: [],
  subdirs: 0,
  names: new Set(),
  top,
});

function dirLinks(subdirs: number): number {
  const n = 2 + subdirs;
  return n > LINK_MAX ? 1 : n;
}

/** Writes a directory's blocks from its entries, and completes its inode. */
function closeDir(ctx: WriterContext, d: Dir, fixedBlocks?: number[]): void {
  const w = writeDirectory(ctx, d.ino, d.parent, d.entries, fixedBlocks);
  Object.assign(d.inode, {
    size: w.size,
    flags: w.flags,
    block: w.iBlock,
    blocks: d.inode.blocks + (w.blocks * ctx.l.blockSize) / 512,
    linksCount: dirLinks(d.subdirs),
  });
}

const LOST_FOUND = new TextEncoder().encode('lost+found');
const isLostFound = (n: SourceNode) =>
  n.name.length === LOST_FOUND.length && n.name.every((c, i) => c === LOST_FOUND[i]);

/** The walk's sink; `lostFound` is the source's own lost+found, met at the root and left for later. */
class PopulateSink implements TreeSink<Dir, number> {
  lostFound?: SourceNode;

  constructor(private readonly ctx: WriterContext) {}

  /**
   * An entry named in `parent`: a name ext4 can store, listed once. Returns false for the root's
   * lost+found directory, which is not an ordinary entry.
   */
  private admit(n: SourceNode, parent: Dir): boolean {
    checkName(n);
    const key = Buffer.from(n.name).toString('latin1');
    if (parent.names.has(key))
      throw new Ext4Error(
        'SOURCE_ERROR',
        `${parent.path} lists the name ${JSON.stringify(Buffer.from(n.name).toString('utf8'))} twice`,
        { path: parent.path },
      );
    parent.names.add(key);
    if (!parent.top || !isLostFound(n)) return true;
    if (n.kind !== 'dir')
      throw new Ext4Error('SOURCE_ERROR', `${n.displayPath} must be a directory: ext4 keeps lost+found for fsck`);
    this.lostFound = n;
    return false;
  }

  dir(n: SourceNode, parent: Dir): Dir | undefined {
    if (!this.admit(n, parent)) return undefined;
    const ctx = this.ctx;
    const ino = ctx.inodes.alloc();
    const inode = baseInode(ctx, n);
    const d = newDir(n.displayPath, ino, parent.ino, inode);
    d.xattrs = placeXattrs(ctx, inode, n);
    parent.entries.push({ inode: ino, name: n.name, fileType: FT_DIR });
    parent.subdirs++;
    return d;
  }

  /** A directory's record is complete (size, blocks, links) once its entries are written. */
  leave(_n: SourceNode, d: Dir): void {
    closeDir(this.ctx, d);
    this.ctx.inodes.set(d.ino, d.inode, true, d.xattrs);
  }

  leaf(n: SourceNode, parent: Dir): number {
    this.admit(n, parent);
    const ino = writeLeaf(this.ctx, n);
    parent.entries.push({ inode: ino, name: n.name, fileType: DIRENT_TYPE_OF[n.kind] });
    return ino;
  }

  link(n: SourceNode, parent: Dir, ino: number): void {
    this.admit(n, parent);
    this.ctx.inodes.addLink(ino);
    parent.entries.push({ inode: ino, name: n.name, fileType: DIRENT_TYPE_OF[n.kind] });
  }
}

export interface RootResult {
  root: Inode;
  lostFound: Inode;
  rootXattrs?: DiskXattr[];
  lostFoundXattrs?: DiskXattr[];
}

/**
 * Writes `source` under the root directory. The root inode takes the source root's mode, owner and
 * times (like mkfs.ext4 -d); a `lost+found` directory in the source becomes the file system's own.
 * `rootBlock` and `lpfBlocks` are the blocks the formatter gave the two.
 */
export function populate(
  ctx: WriterContext,
  source: TreeSource | undefined,
  rootBlock: number,
  lpfBlocks: number[],
): RootResult {
  const src = source?.root();
  if (src && src.kind !== 'dir') throw new Ext4Error('SOURCE_ERROR', `${src.displayPath} is not a directory`);
  const rootInode: Inode = src
    ? { ...baseInode(ctx, src), mode: S_IFDIR | (src.perm & 0o7777) }
    : newDirInode(ctx, 0o755);
  const root = newDir(src?.displayPath ?? '/', ROOT_INO, ROOT_INO, rootInode, true);
  root.entries.push({ inode: LOST_FOUND_INO, name: LOST_FOUND, fileType: FT_DIR });
  root.subdirs++;
  const sink = new PopulateSink(ctx);
  const walk = new TreeWalk(sink, sourcePolicy(source));
  if (src) walk.entries(src, root);

  const lpfNode = sink.lostFound;
  const lpfInode: Inode = lpfNode ? baseInode(ctx, lpfNode) : newDirInode(ctx, 0o700);
  const rootXattrs = src ? placeXattrs(ctx, rootInode, src) : undefined;
  const lostFoundXattrs = lpfNode ? placeXattrs(ctx, lpfInode, lpfNode) : undefined;
  const lpf = newDir(lpfNode?.displayPath ?? '/lost+found', LOST_FOUND_INO, ROOT_INO, lpfInode);
  // Below the root, which is on its path (for the loop check) though its walk is over.
  if (lpfNode) walk.entries(lpfNode, lpf, 2, [src!]);
  closeDir(ctx, lpf, lpfBlocks);
  closeDir(ctx, root, [rootBlock]);
  flushData(ctx);
  sealXattrBlocks(ctx);
  return { root: rootInode, lostFound: lpfInode, rootXattrs, lostFoundXattrs };
}
