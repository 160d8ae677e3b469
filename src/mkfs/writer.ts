/**
 * The tree writer's block layer: lays out what populate.ts hands it (file data, symlink targets,
 * extent trees, directory blocks and htrees, attribute blocks) in a file system the formatter has just
 * planned. Data goes straight to its final blocks in large writes (memory does not grow with file
 * size); inode records go to their tables as they are final (inode-tables.ts).
 */
import { Ext4Error } from '../core/errors.js';
import { type Layout, takeRuns } from '../ext4/layout.js';
import { type Inode, type Timestamp, FL_EXTENTS, FL_INDEX, inodeCsumSeed } from '../ext4/inode.js';
import { buildExtentTree, extentTreeBlockCount, runsToExtents, type Extent } from '../ext4/extent.js';
import { packDirBlocks, direntSize, type DirEntry, FT_DIR, DIR_TAIL_SIZE } from '../ext4/dirent.js';
import { buildHtree } from '../ext4/htree.js';
import type { BlockDevice } from '../io/device.js';
import type { InodeTables } from './inode-tables.js';
import type { SourceNode } from '../core/types.js';
import {
  toDisk,
  xattrSpace,
  inodeXattrSpace,
  encodeXattrBlock,
  sealXattrBlock,
  type DiskXattr,
} from '../ext4/xattr.js';

/** Bytes read from a source file per write: large, block-aligned. */
const CHUNK = 8 * 1024 * 1024;
/** Small files are combined into writes of up to this many bytes. */
const PENDING = 1024 * 1024;

export interface Owner {
  uid: number;
  gid: number;
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
  inodes: InodeTables;
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
export function placeXattrs(ctx: WriterContext, inode: Inode, node: SourceNode): DiskXattr[] | undefined {
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
export function sealXattrBlocks(ctx: WriterContext): void {
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
export function writeFileData(
  ctx: WriterContext,
  ino: number,
  node: SourceNode,
): { iBlock: Uint8Array; blocks: number } {
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
