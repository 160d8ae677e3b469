/**
 * The tree writer: lays out a tree source into a file system the formatter has just planned. Data goes
 * straight to its final blocks in large writes (memory does not grow with file size); inodes and
 * directory entries are kept in memory and written by the formatter at the end.
 */
import { Ext4Error } from '../core/errors.js';
import { MODE_OF_TYPE, DIRENT_TYPE_OF } from '../ext4/filetype.js';
import { type Layout, takeRuns } from '../ext4/layout.js';
import {
  type Inode,
  type Timestamp,
  emptyInode,
  S_IFDIR,
  FL_EXTENTS,
  I_BLOCK_SIZE,
  FL_INDEX,
  encodeDeviceNumbers,
  inodeCsumSeed,
  EXTRA_ISIZE,
  GOOD_OLD_INODE_SIZE,
  ROOT_INO,
  LINK_MAX,
} from '../ext4/inode.js';
import {
  buildExtentTree,
  extentTreeBlockCount,
  runsToExtents,
  MAX_INIT_EXTENT_LEN,
  type Extent,
} from '../ext4/extent.js';
import { packDirBlocks, direntSize, type DirEntry, FT_DIR, MAX_NAME_LEN, DIR_TAIL_SIZE } from '../ext4/dirent.js';
import { buildHtree } from '../ext4/htree.js';
import type { BlockDevice } from '../io/device.js';
import type { SourceNode, TreeSource } from '../core/types.js';
import {
  toDisk,
  xattrSpace,
  inodeXattrSpace,
  encodeXattrBlock,
  sealXattrBlock,
  type DiskXattr,
} from '../ext4/xattr.js';

export const FIRST_INO = 11;
export { ROOT_INO };
export const LOST_FOUND_INO = 11;
/** Directories with more subdirectories than this get link count 1 (dir_nlink). */
/** Bytes read from a source file per write: large, block-aligned. */
const CHUNK = 8 * 1024 * 1024;
/** Small files are combined into writes of up to this many bytes. */
const PENDING = 1024 * 1024;

export interface Owner {
  uid: number;
  gid: number;
}

export interface InodeRecord {
  inode: Inode;
  isDir: boolean;
  /** Attributes stored inside the inode. */
  xattrs?: DiskXattr[];
}

/** Inode numbers and their in-memory records, handed out in order like mkfs does (group 0 first). */
export class InodeStore {
  readonly records = new Map<number, InodeRecord>();
  next = FIRST_INO + 1;
  constructor(readonly inodesCount: number) {}
  alloc(): number {
    if (this.next > this.inodesCount) throw new Ext4Error('NO_SPACE', `out of inodes (${this.inodesCount})`);
    return this.next++;
  }
  set(ino: number, inode: Inode, isDir: boolean, xattrs?: DiskXattr[]): void {
    this.records.set(ino, { inode, isDir, xattrs });
  }
}

export interface WriterContext {
  l: Layout;
  dev: BlockDevice;
  csumSeed: number;
  hashSeed: Uint8Array;
  extraIsize: number;
  now: Timestamp;
  /** Owner of the directories made without a source node (the root without a source, lost+found). */
  owner?: Owner;
  inodes: InodeStore;
  /** Queues a metadata write (whole blocks). */
  put(block: number, data: Uint8Array): void;
  /** Where the next data allocation starts looking. */
  cursor: number;
  /** Bytes of file data written. */
  dataBytes: number;
  /** Start the host's write-back after every this many bytes of file data (0: never). */
  flushEvery?: number;
  /** File data bytes handed to the device so far, and that count when write-back was last started. */
  written?: number;
  flushedAt?: number;
  /** One read buffer for every file (CHUNK bytes). */
  readBuffer: Buffer;
  /** Data waiting to be written: consecutive small files land in adjacent blocks and go out as one write. */
  pending: { pos: number; len: number; buf: Buffer };
  /** Attribute blocks by content: inodes with the same attribute set share one block. */
  xattrBlocks: Map<string, { block: number; data: Uint8Array; refs: number }>;
}

/** Creates the per-run buffers of a writer context. */
export function writerBuffers(
  withData: boolean,
  est?: { dataBytes: number; largestFile: number },
): Pick<WriterContext, 'readBuffer' | 'pending' | 'xattrBlocks'> {
  // Sized to the tree: reads need the largest file (up to CHUNK), combining small files needs at most
  // the data (up to PENDING). A dotfile tree then takes KiB, not MiB, of buffers. Whole 64 KiB units
  // keep reads block-aligned for every block size.
  const unit = 65536;
  const fit = (bytes: number, cap: number) =>
    withData ? Math.min(cap, Math.max(unit, Math.ceil(bytes / unit) * unit)) : 0;
  return {
    readBuffer: Buffer.allocUnsafe(fit(est?.largestFile ?? CHUNK, CHUNK)),
    pending: { pos: 0, len: 0, buf: Buffer.allocUnsafe(fit(est?.dataBytes ?? PENDING, PENDING)) },
    xattrBlocks: new Map(),
  };
}

/**
 * Places a node's extended attributes: inside the inode when they fit, else in an attribute block
 * (shared with every other inode that has the same set). Returns the in-inode set.
 */
function placeXattrs(ctx: WriterContext, inode: Inode, node: SourceNode): DiskXattr[] | undefined {
  const list = node.xattrs();
  if (!list.length) return undefined;
  const xs = list.map(toDisk);
  if (xattrSpace(xs) <= inodeXattrSpace(ctx.l.inodeSize, ctx.extraIsize)) return xs;
  const bs = ctx.l.blockSize;
  if (xattrSpace(xs) > bs - 32)
    throw new Ext4Error(
      'NO_SPACE',
      `extended attributes of ${node.displayPath} need ${xattrSpace(xs)} bytes; one ${bs}-byte block holds ${bs - 32} (ea_inode is not enabled)`,
      { path: node.displayPath },
    );
  const data = encodeXattrBlock(bs, xs);
  const key = Buffer.from(data.buffer, data.byteOffset, data.length).toString('latin1');
  let shared = ctx.xattrBlocks.get(key);
  if (!shared) {
    shared = { block: allocData(ctx, 1)[0]!.start, data, refs: 0 };
    ctx.xattrBlocks.set(key, shared);
  }
  shared.refs++;
  inode.fileAcl = shared.block;
  inode.blocks += bs / 512;
  return undefined;
}

/** Writes the attribute blocks with their final reference counts. */
function sealXattrBlocks(ctx: WriterContext): void {
  for (const x of ctx.xattrBlocks.values()) {
    sealXattrBlock(x.data, x.block, x.refs, ctx.csumSeed);
    ctx.put(x.block, x.data);
  }
}

/** Queues file data at byte `pos`; adjacent pieces are combined, large ones go straight out. */
function writeData(ctx: WriterContext, pos: number, data: Uint8Array): void {
  ctx.written = (ctx.written ?? 0) + data.length;
  const p = ctx.pending;
  if (p.len && (p.pos + p.len !== pos || p.len + data.length > p.buf.length)) flushData(ctx);
  if (data.length >= p.buf.length / 2) {
    flushData(ctx);
    ctx.dev.write(pos, data);
    startWriteBack(ctx);
    return;
  }
  if (!p.len) p.pos = pos;
  p.buf.set(data, p.len);
  p.len += data.length;
}

/** Writes out combined file data. */
export function flushData(ctx: WriterContext): void {
  const p = ctx.pending;
  if (p.len) ctx.dev.write(p.pos, p.buf.subarray(0, p.len));
  p.len = 0;
  startWriteBack(ctx);
}

/**
 * Large trees: every so often, let the host disk start writing what is in its page cache, so the
 * final fsync does not find hundreds of MiB still to write (copying and flushing then overlap).
 */
function startWriteBack(ctx: WriterContext): void {
  const written = ctx.written ?? 0;
  if (!ctx.flushEvery || written - (ctx.flushedAt ?? 0) < ctx.flushEvery) return;
  ctx.flushedAt = written;
  ctx.dev.startFlush?.();
}

/** Allocates `n` blocks from the data cursor, in as few runs as the free space allows. */
export function allocData(ctx: WriterContext, n: number): { start: number; len: number }[] {
  const runs = takeRuns(ctx.l, ctx.cursor, n, true);
  const last = runs[runs.length - 1];
  if (last) ctx.cursor = last.start + last.len;
  return runs;
}

/** Builds the extent tree for `extents`, allocating and queueing its blocks; returns i_block and tree block count. */
export function mapExtents(
  ctx: WriterContext,
  ino: number,
  extents: Extent[],
): { iBlock: Uint8Array; treeBlocks: number } {
  const bs = ctx.l.blockSize;
  const count = extentTreeBlockCount(extents.length, bs);
  const tree: number[] = [];
  for (const r of count ? allocData(ctx, count) : []) for (let i = 0; i < r.len; i++) tree.push(r.start + i);
  const built = buildExtentTree(extents, bs, tree, inodeCsumSeed(ctx.csumSeed, ino, 0));
  for (const b of built.blocks) ctx.put(b.block, b.data);
  return { iBlock: built.iBlock, treeBlocks: count };
}

/** One block of zeros (blocks are at most 64 KiB), to find blocks that stay holes. */
const ZERO = new Uint8Array(65536);

/** Streams a regular file to its blocks; all-zero blocks stay holes. */
function writeFileData(ctx: WriterContext, ino: number, node: SourceNode): { iBlock: Uint8Array; blocks: number } {
  const bs = ctx.l.blockSize;
  if (node.size === 0) return { ...mapExtents(ctx, ino, []), blocks: 0 };
  const maxBlocks = 2 ** 32;
  if (Math.ceil(node.size / bs) > maxBlocks)
    throw new Ext4Error('TOO_LARGE', `${node.displayPath} is larger than an ext4 file can be with ${bs}-byte blocks`);
  const data = node.openData();
  const buf = ctx.readBuffer;
  const runs: { lblk: number; pblk: number; len: number }[] = [];
  let pos = 0;
  let used = 0;
  try {
    while (pos < node.size) {
      const want = Math.min(buf.length, node.size - pos);
      let n = 0;
      while (n < want) {
        const got = data.read(buf.subarray(n), want - n, pos + n);
        if (got === 0) break;
        n += got;
      }
      if (n === 0) break;
      const nb = Math.ceil(n / bs);
      if (n % bs) buf.fill(0, n, nb * bs);
      const base = pos / bs;
      let i = 0;
      while (i < nb) {
        if (buf.compare(ZERO, 0, bs, i * bs, (i + 1) * bs) === 0) {
          i++;
          continue;
        }
        let j = i + 1;
        while (j < nb && buf.compare(ZERO, 0, bs, j * bs, (j + 1) * bs) !== 0) j++;
        let off = i;
        for (const r of allocData(ctx, j - i)) {
          writeData(ctx, r.start * bs, buf.subarray(off * bs, (off + r.len) * bs));
          runs.push({ lblk: base + off, pblk: r.start, len: r.len });
          off += r.len;
          used += r.len;
        }
        i = j;
      }
      pos += n;
      if (n < want) break;
    }
    data.verifyUnchanged(pos);
  } finally {
    data.close();
  }
  ctx.dataBytes += used * bs;
  const m = mapExtents(ctx, ino, runsToExtents(runs));
  return { iBlock: m.iBlock, blocks: used + m.treeBlocks };
}

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
    // FormatOptions.owner reaches source nodes through the source wrapper (applySpec), so a spec can
    // still give a path another owner.
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

/**
 * Writes a directory's entries into blocks: one linear block when they fit, else an htree (dir_index)
 * whose first block is the dx_root. `fixedBlocks` are blocks already allocated for it (the formatter's
 * root and lost+found blocks), used first.
 */
export function writeDirectory(
  ctx: WriterContext,
  ino: number,
  parent: number,
  entries: DirEntry[],
  fixedBlocks: number[] = [],
): { iBlock: Uint8Array; blocks: number; size: number; flags: number } {
  const bs = ctx.l.blockSize;
  const seed = inodeCsumSeed(ctx.csumSeed, ino, 0);
  const enc = new TextEncoder();
  const dot: DirEntry = { inode: ino, name: enc.encode('.'), fileType: FT_DIR };
  const dotdot: DirEntry = { inode: parent, name: enc.encode('..'), fileType: FT_DIR };
  const usable = bs - DIR_TAIL_SIZE;
  let bytes = direntSize(1) + direntSize(2);
  for (const e of entries) bytes += direntSize(e.name.length);
  let blocks: Uint8Array[];
  let flags = FL_EXTENTS;
  if (bytes <= usable) {
    blocks = packDirBlocks([dot, dotdot, ...entries], bs, seed);
  } else {
    blocks = buildHtree({
      dirIno: ino,
      parentIno: parent,
      entries,
      blockSize: bs,
      inodeSeed: seed,
      hashSeed: ctx.hashSeed,
    });
    flags |= FL_INDEX;
  }
  // Keep preallocated blocks (lost+found's) even when fewer are needed.
  while (blocks.length < fixedBlocks.length) blocks.push(packDirBlocks([], bs, seed)[0]!);
  const phys: number[] = [...fixedBlocks];
  if (blocks.length > phys.length)
    for (const r of allocData(ctx, blocks.length - phys.length)) for (let i = 0; i < r.len; i++) phys.push(r.start + i);
  blocks.forEach((b, i) => ctx.put(phys[i]!, b));
  const runs = phys.map((p, i) => ({ lblk: i, pblk: p, len: 1 }));
  const m = mapExtents(ctx, ino, runsToExtents(runs));
  return { iBlock: m.iBlock, blocks: blocks.length + m.treeBlocks, size: blocks.length * bs, flags };
}

interface DirResult {
  entries: DirEntry[];
  subdirs: number;
}

/** Where hard-linked inodes already written live, by the source's link key. */
type LinkMap = Map<string, number>;

/** A source entry's name must be one ext4 can store: 1 to 255 bytes, no '/' or NUL. */
export function checkName(node: SourceNode): void {
  if (node.name.length > MAX_NAME_LEN)
    throw new Ext4Error(
      'NAME_TOO_LONG',
      `name of ${node.displayPath} is ${node.name.length} bytes; ext4 allows ${MAX_NAME_LEN}`,
      { path: node.displayPath },
    );
  if (node.name.length === 0 || node.name.includes(0x2f) || node.name.includes(0))
    throw new Ext4Error('SOURCE_ERROR', `invalid entry name in ${node.displayPath}`, { path: node.displayPath });
}

/** Writes one non-directory node (or links it), returning its inode number. */
function writeLeaf(ctx: WriterContext, node: SourceNode, links: LinkMap): number {
  if (node.linkKey !== undefined) {
    const existing = links.get(node.linkKey);
    if (existing !== undefined) {
      ctx.inodes.records.get(existing)!.inode.linksCount++;
      return existing;
    }
  }
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
  if (node.linkKey !== undefined) links.set(node.linkKey, ino);
  return ino;
}

/** Depth-first: a directory's children, then the directory's own blocks. */
function writeChildren(
  ctx: WriterContext,
  dir: SourceNode,
  dirIno: number,
  links: LinkMap,
  depth: number,
  skip?: (n: SourceNode) => boolean,
): DirResult {
  if (depth > 4096) throw new Ext4Error('SOURCE_ERROR', `${dir.displayPath}: directory tree deeper than 4096 levels`);
  const entries: DirEntry[] = [];
  let subdirs = 0;
  const names = new Set<string>();
  for (const child of dir.children()) {
    checkName(child);
    const key = Buffer.from(child.name).toString('latin1');
    if (names.has(key))
      throw new Ext4Error(
        'SOURCE_ERROR',
        `${dir.displayPath} lists the name ${JSON.stringify(Buffer.from(child.name).toString('utf8'))} twice`,
        { path: dir.displayPath },
      );
    names.add(key);
    if (skip?.(child)) continue;
    if (child.kind === 'dir') {
      const ino = writeDir(ctx, child, dirIno, links, depth + 1);
      subdirs++;
      entries.push({ inode: ino, name: child.name, fileType: FT_DIR });
    } else {
      entries.push({ inode: writeLeaf(ctx, child, links), name: child.name, fileType: DIRENT_TYPE_OF[child.kind] });
    }
  }
  return { entries, subdirs };
}

function dirLinks(subdirs: number): number {
  const n = 2 + subdirs;
  return n > LINK_MAX ? 1 : n;
}

function writeDir(ctx: WriterContext, node: SourceNode, parent: number, links: LinkMap, depth: number): number {
  const ino = ctx.inodes.alloc();
  const inode = baseInode(ctx, node);
  ctx.inodes.set(ino, inode, true, placeXattrs(ctx, inode, node));
  const r = writeChildren(ctx, node, ino, links, depth);
  const d = writeDirectory(ctx, ino, parent, r.entries);
  Object.assign(inode, {
    size: d.size,
    flags: d.flags,
    block: d.iBlock,
    blocks: inode.blocks + (d.blocks * ctx.l.blockSize) / 512,
    linksCount: dirLinks(r.subdirs),
  });
  return ino;
}

const LOST_FOUND = new TextEncoder().encode('lost+found');
const isLostFound = (n: SourceNode) =>
  n.name.length === LOST_FOUND.length && n.name.every((c, i) => c === LOST_FOUND[i]);

export interface RootResult {
  root: Inode;
  lostFound: Inode;
  rootXattrs?: DiskXattr[];
  lostFoundXattrs?: DiskXattr[];
}

/**
 * Writes `source` under the root directory. The root inode takes the source root's mode, owner and
 * times (like mkfs.ext4 -d); a `lost+found` directory in the source becomes the file system's own.
 */
export function populate(
  ctx: WriterContext,
  source: TreeSource | undefined,
  rootBlock: number,
  lpfBlocks: number[],
): RootResult {
  const links: LinkMap = new Map();
  const src = source?.root();
  if (src && src.kind !== 'dir') throw new Ext4Error('SOURCE_ERROR', `${src.displayPath} is not a directory`);
  const rootInode: Inode = src
    ? { ...baseInode(ctx, src), mode: S_IFDIR | (src.perm & 0o7777) }
    : newDirInode(ctx, 0o755);
  let lpfNode: SourceNode | undefined;
  const rootChildren = src
    ? writeChildren(ctx, src, ROOT_INO, links, 0, (n) => {
        if (!isLostFound(n)) return false;
        if (n.kind !== 'dir')
          throw new Ext4Error('SOURCE_ERROR', `${n.displayPath} must be a directory: ext4 keeps lost+found for fsck`);
        lpfNode = n;
        return true;
      })
    : { entries: [], subdirs: 0 };

  const lpfInode: Inode = lpfNode ? baseInode(ctx, lpfNode) : newDirInode(ctx, 0o700);
  const rootXattrs = src ? placeXattrs(ctx, rootInode, src) : undefined;
  const lostFoundXattrs = lpfNode ? placeXattrs(ctx, lpfInode, lpfNode) : undefined;
  const lpfChildren = lpfNode ? writeChildren(ctx, lpfNode, LOST_FOUND_INO, links, 1) : { entries: [], subdirs: 0 };
  const lpf = writeDirectory(ctx, LOST_FOUND_INO, ROOT_INO, lpfChildren.entries, lpfBlocks);
  Object.assign(lpfInode, {
    size: lpf.size,
    flags: lpf.flags,
    block: lpf.iBlock,
    blocks: lpfInode.blocks + (lpf.blocks * ctx.l.blockSize) / 512,
    linksCount: dirLinks(lpfChildren.subdirs),
  });

  const rootEntries: DirEntry[] = [
    { inode: LOST_FOUND_INO, name: LOST_FOUND, fileType: FT_DIR },
    ...rootChildren.entries,
  ];
  const root = writeDirectory(ctx, ROOT_INO, ROOT_INO, rootEntries, [rootBlock]);
  Object.assign(rootInode, {
    size: root.size,
    flags: root.flags,
    block: root.iBlock,
    blocks: rootInode.blocks + (root.blocks * ctx.l.blockSize) / 512,
    linksCount: dirLinks(rootChildren.subdirs + 1),
  });
  flushData(ctx);
  sealXattrBlocks(ctx);
  return { root: rootInode, lostFound: lpfInode, rootXattrs, lostFoundXattrs };
}

export interface TreeEstimate {
  inodes: number;
  blocks: number;
  files: number;
  dataBytes: number;
  /** The largest regular file, in bytes. */
  largestFile: number;
  /** The longest symlink target, in bytes (it must fit one block). */
  longestSymlink: number;
}

/**
 * An upper estimate of what `source` needs, from metadata alone (no file is read): inodes, and blocks
 * for data (sparse files by what the source really stores), directories, extent trees and attribute
 * blocks (one per distinct set that does not fit inside `inodeSize`-byte inodes, shared as the writer
 * shares them).
 */
export function estimateTree(source: TreeSource, blockSize: number, inodeSize = 256): TreeEstimate {
  const est: TreeEstimate = { inodes: 0, blocks: 0, files: 0, dataBytes: 0, largestFile: 0, longestSymlink: 0 };
  const seen = new Set<string>();
  const inInode = inodeXattrSpace(inodeSize, inodeSize > GOOD_OLD_INODE_SIZE ? EXTRA_ISIZE : 0);
  const xattrBlocks = new Set<string>();
  const countXattrs = (n: SourceNode) => {
    const list = n.xattrs();
    if (!list.length) return;
    const xs = list.map(toDisk);
    // Too big for a block: placeXattrs refuses it when the node is written.
    if (xattrSpace(xs) <= inInode || xattrSpace(xs) > blockSize - 32) return;
    const data = encodeXattrBlock(blockSize, xs);
    const key = Buffer.from(data.buffer, data.byteOffset, data.length).toString('latin1');
    if (!xattrBlocks.has(key)) {
      xattrBlocks.add(key);
      est.blocks++;
    }
  };
  const dirBlocks = (entryBytes: number) => {
    const leaves = Math.ceil(entryBytes / (blockSize - DIR_TAIL_SIZE));
    return leaves <= 1 ? 1 : leaves + 1 + Math.ceil(leaves / ((blockSize - 8) / 8 - 1)) + Math.ceil(leaves / 2);
  };
  const walk = (dir: SourceNode, depth: number) => {
    if (depth > 4096) throw new Ext4Error('SOURCE_ERROR', `${dir.displayPath}: directory tree deeper than 4096 levels`);
    let bytes = direntSize(1) + direntSize(2) + direntSize(10);
    for (const c of dir.children()) {
      checkName(c);
      bytes += direntSize(c.name.length);
      if (c.linkKey !== undefined) {
        if (seen.has(c.linkKey)) continue;
        seen.add(c.linkKey);
      }
      est.inodes++;
      countXattrs(c);
      if (c.kind === 'dir') walk(c, depth + 1);
      else if (c.kind === 'file') {
        est.files++;
        if (c.size > est.largestFile) est.largestFile = c.size;
        const full = Math.ceil(c.size / blockSize);
        const stored =
          c.allocatedBytes === undefined || c.allocatedBytes >= c.size
            ? full
            : Math.min(full, Math.ceil(c.allocatedBytes / blockSize) + 1);
        est.dataBytes += stored * blockSize;
        // Extents hold at most 32768 blocks; holes split them further, at worst one per stored block run.
        const extents = Math.ceil(full / MAX_INIT_EXTENT_LEN) + (stored < full ? stored : 0);
        est.blocks += stored + extentTreeBlockCount(extents, blockSize);
      } else if (c.kind === 'symlink') {
        if (c.size >= I_BLOCK_SIZE) est.blocks += 1;
        if (c.size > est.longestSymlink) est.longestSymlink = c.size;
      }
    }
    est.blocks += dirBlocks(bytes);
  };
  const root = source.root();
  countXattrs(root);
  walk(root, 0);
  return est;
}
