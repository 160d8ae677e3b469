/**
 * A regular file's content written (kernel doc: ifork.rst, inlinedata.rst): new content taken piece by
 * piece from a source, all-zero blocks left as holes, data put into newly allocated blocks near the
 * inode and mapped (fs/blockmap.ts), small content stored inline (fs/inline.ts); and a file's size set,
 * blocks past the new end freed.
 */
import { Ext4Error } from '../core/errors.js';
import { isZero } from '../core/bytes.js';
import { FL_EXTENTS, FL_INLINE_DATA, I_BLOCK_SIZE, type Inode } from '../ext4/inode.js';
import { hasBlockMap, setFileBlocks, setSize } from './inodes.js';
import { buildMap, cutMap, freeMap, usesExtents, type MapRun } from './blockmap.js';
import { clearInline, inlineCapacity, inlineData, writeInline } from './inline.js';
import type { WritableVolume } from './writable.js';

/** Bytes read from a source per step; pending new data is written out early past this much. */
const CHUNK = 4 << 20;
const EARLY_WRITE = 64 << 20;

/** A run of zero bytes the caller knows about: left as a hole without being scanned. */
export interface Hole {
  hole: number;
}

/** Sequential access to new file content. */
export interface DataSource {
  /** Total bytes when known up front (used to check for space before anything is written). */
  size?: number;
  /** The next piece of content (any length; `{ hole: n }` is n zero bytes left unallocated), or undefined at the end. */
  next(): Uint8Array | Hole | undefined;
  /** Releases what the source holds (a host file); called once the content is written or has failed. */
  close?(): void;
}

/** A source over bytes in memory. */
export function bytesSource(b: Uint8Array): DataSource {
  let done = false;
  return {
    size: b.length,
    next: () => {
      if (done || !b.length) return undefined;
      done = true;
      return b;
    },
  };
}

// ---- writing content ----

/**
 * Replaces a regular file's content with what `src` yields: the old map (or inline data) is released,
 * all-zero blocks stay holes, data goes into newly allocated blocks near the inode (contiguous where
 * free space allows). Small content goes inline when the file system has inline_data.
 */
export function writeContent(
  v: WritableVolume,
  ino: number,
  inode: Inode,
  src: DataSource,
  opts: { inline?: boolean } = {},
): void {
  try {
    const w = new ContentWriter(v, ino, inode, { ...opts, size: src.size });
    for (let c = src.next(); c; c = src.next()) w.push(c);
    w.finish();
  } finally {
    src.close?.();
  }
}

/**
 * The content of one file as it arrives, piece by piece (`writeContent` pulls the pieces; a stream
 * pushes them). The inode's old content is released when the writer is made; `finish` maps the new.
 */
export class ContentWriter {
  private readonly bs: number;
  private readonly extents: boolean;
  /** Inline data is possible up to this many bytes (0: never); pieces wait in `head` until decided. */
  private inlineMax: number;
  private head: (Uint8Array | Hole)[] = [];
  private headBytes = 0;
  private readonly runs: MapRun[] = [];
  private goal: number;
  private size = 0;
  private buf: Uint8Array;
  private fill = 0;

  constructor(
    private readonly v: WritableVolume,
    private readonly ino: number,
    private readonly inode: Inode,
    opts: { inline?: boolean; size?: number } = {},
  ) {
    const bs = (this.bs = v.bs);
    if (opts.size !== undefined && Math.ceil(opts.size / bs) > v.freeBlocks)
      throw new Ext4Error(
        'NO_SPACE',
        `${v.name}: ${opts.size} bytes need up to ${Math.ceil(opts.size / bs)} blocks, ${v.freeBlocks} are free`,
      );
    // Release what the file holds now.
    if (inode.flags & FL_INLINE_DATA) clearInline(v, ino, inode);
    else if (hasBlockMap(inode)) freeMap(v, ino, inode);
    this.extents = usesExtents(v, inode);
    inode.block = new Uint8Array(I_BLOCK_SIZE);
    // Nothing mapped any more: i_blocks counts only an attribute block until the new content is in.
    setFileBlocks(v, inode, 0);
    if (this.extents) inode.flags |= FL_EXTENTS;
    this.inlineMax = opts.inline === false ? 0 : inlineCapacity(v, ino, inode);
    this.goal = v.inodeGoal(ino);
    this.buf = chunkBuffer(opts.size === undefined ? CHUNK : Math.min(CHUNK, Math.ceil(opts.size / bs) * bs || bs));
  }

  push(c: Uint8Array | Hole): void {
    if (!(c instanceof Uint8Array) && (!Number.isSafeInteger(c.hole) || c.hole < 0))
      throw new Ext4Error('BAD_OPTION', `hole of ${c.hole} bytes`);
    if (this.inlineMax) {
      // Small content may go inline: pieces wait until one byte more than fits has come.
      const n = c instanceof Uint8Array ? c.length : c.hole;
      // A copy: sources may hand out views of a buffer they reuse.
      this.head.push(c instanceof Uint8Array ? c.slice() : c);
      this.headBytes += n;
      if (this.headBytes <= this.inlineMax) return;
      this.inlineMax = 0;
      const head = this.head;
      this.head = [];
      for (const h of head) this.feed(h);
      return;
    }
    this.feed(c);
  }

  finish(): void {
    const { v, ino, inode } = this;
    if (this.inlineMax && this.headBytes > 0) {
      writeInline(v, ino, inode, concat(this.head, this.headBytes));
      return;
    }
    if (this.fill) this.emit(this.fill);
    const runs = this.runs;
    const mapBlocks = buildMap(v, ino, inode, runs, runs.length ? runs[0]!.pblk : v.inodeGoal(ino), this.extents);
    setSize(v, inode, this.size);
    setFileBlocks(v, inode, runs.reduce((a, r) => a + r.len, 0) + mapBlocks);
  }

  private feed(c: Uint8Array | Hole): void {
    if (c instanceof Uint8Array) this.take(c);
    else this.skip(c.hole);
    if (this.size > 2 ** 32 * this.bs)
      throw new Ext4Error('TOO_LARGE', `inode ${this.ino}: content larger than an ext4 file can be`);
  }

  /** Blocks [0, upto/bs) of the buffer, at logical block (size - fill) / bs: zero blocks become holes. */
  private emit(upto: number): void {
    const { v, bs, buf } = this;
    const base = (this.size - this.fill) / bs;
    const nb = Math.ceil(upto / bs);
    if (upto % bs) buf.fill(0, upto, nb * bs);
    let k = 0;
    while (k < nb) {
      if (isZero(buf, k * bs, bs)) {
        k++;
        continue;
      }
      let j = k + 1;
      while (j < nb && !isZero(buf, j * bs, bs)) j++;
      let off = k;
      for (const r of v.allocBlocks(this.goal, j - k)) {
        v.tx.addData(r.start, v.tx.keepData(buf.subarray(off * bs, (off + r.len) * bs)));
        this.runs.push({ lblk: base + off, pblk: r.start, len: r.len });
        off += r.len;
        this.goal = r.start + r.len;
      }
      k = j;
    }
    if (v.tx.pendingDataBytes >= EARLY_WRITE) v.writeDataEarly();
  }

  private take(c: Uint8Array): void {
    const buf = this.buf;
    let o = 0;
    while (o < c.length) {
      const n = Math.min(c.length - o, buf.length - this.fill);
      buf.set(c.subarray(o, o + n), this.fill);
      this.fill += n;
      this.size += n;
      o += n;
      if (this.fill === buf.length) {
        this.emit(this.fill);
        this.fill = 0;
      }
    }
  }

  /** Zeros up to a block boundary go through the buffer; whole blocks of hole are only counted. */
  private skip(n: number): void {
    const bs = this.bs;
    const pad = Math.min(n, (bs - (this.fill % bs)) % bs);
    if (pad) this.take(ZEROS.subarray(0, pad));
    n -= pad;
    if (n >= bs) {
      if (this.fill) this.emit(this.fill);
      this.fill = 0;
      const whole = Math.floor(n / bs) * bs;
      this.size += whole;
      n -= whole;
    }
    if (n) this.take(ZEROS.subarray(0, n));
  }
}

/** Zero bytes to pad with (never written to); as long as the largest block. */
const ZEROS = new Uint8Array(65536);

let shared: Uint8Array | undefined;
/**
 * The buffer content is cut into blocks in: one for every writer (writers never overlap, and every
 * block leaves it as a copy), grown to 4 MiB at most.
 */
function chunkBuffer(bytes: number): Uint8Array {
  const want = Math.min(CHUNK, Math.max(bytes, 65536));
  if (!shared || shared.length < want) shared = new Uint8Array(want);
  return shared;
}

function concat(parts: (Uint8Array | Hole)[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    if (p instanceof Uint8Array) out.set(p, o);
    o += p instanceof Uint8Array ? p.length : p.hole;
  }
  return out;
}

// ---- truncation ----

/** Zeros bytes [from, bs) of data block `pblk` (pending new data is patched where it waits). */
function zeroBlockTail(v: WritableVolume, pblk: number, from: number): void {
  const pending = v.tx.modifyPending(pblk);
  if (pending) {
    pending.fill(0, from);
    return;
  }
  const cur = v.tx.readData(pblk, 1);
  if (isZero(cur, from, v.bs - from)) return;
  // Changed in place as a metadata block would be: it is one block, and the journal can carry it.
  v.tx.modify(pblk).fill(0, from);
}

/**
 * Sets a file's size: blocks past the new end are freed, the tail of the new last block is zeroed
 * (so growing the file again reads zeros), and growing leaves a hole. Inline files stay inline while
 * they fit.
 */
export function truncateFile(v: WritableVolume, ino: number, inode: Inode, newSize: number, trim = false): void {
  const bs = v.bs;
  const oldSize = inode.size;
  // `trim`: also when the size stays, free what lies past it (an orphan's interrupted truncation).
  if (newSize === oldSize && !trim) return;
  if (newSize > 2 ** 32 * bs) throw new Ext4Error('TOO_LARGE', `size ${newSize} is more than an ext4 file can hold`);
  if (inode.flags & FL_INLINE_DATA) {
    const data = inlineData(v.r, ino, inode).subarray(0, oldSize);
    const next = new Uint8Array(Math.min(newSize, Math.max(bs, I_BLOCK_SIZE)));
    next.set(data.subarray(0, Math.min(data.length, newSize)));
    if (newSize <= inlineCapacity(v, ino, inode)) {
      writeInline(v, ino, inode, next.subarray(0, newSize));
      return;
    }
    // Too large for the inode: the content moves to a block, the rest of the file is a hole.
    clearInline(v, ino, inode);
    writeContent(v, ino, inode, bytesSource(next.subarray(0, Math.min(newSize, bs))));
    setSize(v, inode, newSize);
    return;
  }
  if (!hasBlockMap(inode)) {
    setSize(v, inode, newSize);
    return;
  }
  const { runs, mapBlocks } = cutMap(v, ino, inode, Math.ceil(newSize / bs));
  // Zero the partial last block's tail: past the new end when shrinking, past the old end when growing.
  const edge = Math.min(oldSize, newSize);
  if (edge % bs) {
    const lblk = Math.floor(edge / bs);
    const r = runs.find((x) => lblk >= x.lblk && lblk < x.lblk + x.len);
    if (r && !r.uninit) zeroBlockTail(v, r.pblk + (lblk - r.lblk), edge % bs);
  }
  setSize(v, inode, newSize);
  setFileBlocks(v, inode, runs.reduce((a, r) => a + r.len, 0) + mapBlocks);
}
