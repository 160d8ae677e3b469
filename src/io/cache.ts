/**
 * The block cache every image access goes through. It holds three things:
 * - clean blocks recently read from the device (evicted oldest first);
 * - the overlay: blocks whose current content is not the device's, either a replayed journal's blocks
 *   or the metadata blocks an open edit changed; the overlay always wins over the device;
 * - pending file data of an open edit: new data for blocks that were free, kept apart from the
 *   metadata because it is written first (and never journaled).
 *
 * An edit is made of operations; changes made during one can be rolled back (`beginOp` / `rollbackOp`)
 * so a failed operation leaves the earlier ones of the batch intact.
 */
import { Ext4Error } from '../ext4/errors.js';
import type { BlockDevice } from './device.js';

/** A run of new file data: `data.length` is a whole number of blocks, starting at block `block`. */
export interface DataPiece {
  block: number;
  data: Uint8Array;
}

const CLEAN_MAX = 256;
/** Slabs for small pieces of pending file data: their size, the largest piece they take, how many stay. */
const SLAB = 1 << 20;
const SLAB_PIECE_MAX = 64 << 10;
const SLAB_KEEP = 4;
/** Slabs no cache holds: each one is either here or owned by exactly one cache. */
const spareSlabs: Uint8Array[] = [];

export class BlockCache {
  /** Blocks whose current content differs from the device. */
  readonly overlay = new Map<number, Uint8Array>();
  private readonly clean = new Map<number, Uint8Array>();
  /** Pending file data, sorted by block, never overlapping. */
  private pieces: DataPiece[] = [];
  /** Bytes of pending file data. */
  pendingDataBytes = 0;
  private undo: Map<number, Uint8Array | undefined> | undefined;
  private undoPieces: DataPiece[] | undefined;
  /** Pending pieces an operation changed in place, with their data as it was (for rollback). */
  private undoChanged: Map<DataPiece, Uint8Array> | undefined;
  /** Spare block buffers for undo copies (an edit makes thousands; reusing them spares the GC). */
  private pool: Uint8Array[] = [];
  /** Blocks this process changed: their checksums are its own to compute, not to verify. */
  private readonly trusted = new Set<number>();
  /** Clean blocks whose checksums have been verified once. */
  private readonly verified = new Set<number>();
  /**
   * Memory for small pieces of pending file data: carved out of slabs that are used again once the data
   * is written (`dataWritten`). Fresh memory costs a page fault per page on first touch; reused does not.
   */
  private slabs: Uint8Array[] = [];
  private slabAt = 0;
  private slabUsed = 0;

  constructor(
    readonly dev: BlockDevice,
    readonly blockSize: number,
    /** Blocks in the file system; every access is checked against it. */
    public blocksCount: number,
  ) {}

  checkRange(block: number, count: number): void {
    if (!Number.isSafeInteger(block) || block < 0 || count < 0 || block + count > this.blocksCount)
      throw new Ext4Error(
        'CORRUPT',
        `block ${block} (+${count}) is outside the file system (${this.blocksCount} blocks)`,
        { block },
      );
  }

  /** True when the overlay or pending data hold anything. */
  get changed(): boolean {
    return this.overlay.size > 0 || this.pieces.length > 0;
  }

  /**
   * Whole blocks as they currently are (overlay first, then clean cache, then the device). One block may
   * be the cached buffer itself and must not be modified (use `modify`); a run of several is a new buffer.
   */
  read(block: number, count = 1): Uint8Array {
    this.checkRange(block, count);
    const bs = this.blockSize;
    if (count !== 1) {
      const out = this.dev.read(block * bs, count * bs);
      if (this.overlay.size)
        for (let k = 0; k < count; k++) {
          const o = this.overlay.get(block + k);
          if (o) out.set(o, k * bs);
        }
      return out;
    }
    const o = this.overlay.get(block);
    if (o) return o;
    const hit = this.clean.get(block);
    if (hit) {
      this.clean.delete(block);
      this.clean.set(block, hit);
      return hit;
    }
    const b = this.dev.read(block * bs, bs);
    this.remember(block, b);
    return b;
  }

  /** Reads `count` blocks from the device into the clean cache in one request (inode tables). */
  prefetch(block: number, count: number): void {
    this.checkRange(block, count);
    const bs = this.blockSize;
    const run = this.dev.read(block * bs, count * bs);
    for (let j = count - 1; j >= 0; j--) this.remember(block + j, run.subarray(j * bs, (j + 1) * bs));
  }

  /** True when block `block` is in the clean cache or the overlay (no device read needed). */
  has(block: number): boolean {
    return this.overlay.has(block) || this.clean.has(block);
  }

  private remember(block: number, b: Uint8Array): void {
    this.clean.delete(block);
    this.clean.set(block, b);
    if (this.clean.size > CLEAN_MAX) {
      const old = this.clean.keys().next().value!;
      this.clean.delete(old);
      this.verified.delete(old);
    }
  }

  /** True when a block's checksums need no checking: this process wrote it, or checked it already. */
  isTrusted(block: number): boolean {
    return this.trusted.has(block) || (this.verified.has(block) && !this.overlay.has(block));
  }

  /** Records that a clean block's checksums were verified (overlay blocks from a journal are not). */
  markVerified(block: number): void {
    if (!this.overlay.has(block)) this.verified.add(block);
  }

  /**
   * File data blocks into `out` (whole blocks, from `block` on) as they currently are: the device's
   * bytes with the overlay and pending new data patched in. Nothing is allocated or cached.
   */
  readDataInto(block: number, out: Uint8Array): void {
    const bs = this.blockSize;
    const count = out.length / bs;
    this.checkRange(block, count);
    if (!this.dev.readInto) {
      out.set(this.readData(block, count));
      return;
    }
    this.dev.readInto(block * bs, out);
    if (this.overlay.size)
      for (let k = 0; k < count; k++) {
        const o = this.overlay.get(block + k);
        if (o) out.set(o, k * bs);
      }
    this.patchPending(block, count, out);
  }

  /** File data blocks: like `read`, with pending new data patched in. */
  readData(block: number, count: number): Uint8Array {
    // read() of one block may hand back the cached buffer itself: copied before pending data is patched in.
    const out = count > 1 ? this.read(block, count) : this.pieces.length ? this.read(block).slice() : this.read(block);
    this.patchPending(block, count, out);
    return out;
  }

  /** Copies pending new data for blocks [block, block + count) into `out` (which holds those blocks). */
  private patchPending(block: number, count: number, out: Uint8Array): void {
    if (!this.pieces.length) return;
    const bs = this.blockSize;
    const end = block + count;
    let i = this.pieceAfter(block) - 1;
    if (i < 0) i = 0;
    for (; i < this.pieces.length; i++) {
      const p = this.pieces[i]!;
      const pEnd = p.block + p.data.length / bs;
      if (p.block >= end) break;
      if (pEnd <= block) continue;
      const s = Math.max(block, p.block);
      const e = Math.min(end, pEnd);
      out.set(p.data.subarray((s - p.block) * bs, (e - p.block) * bs), (s - block) * bs);
    }
  }

  /** Index of the first piece starting after `block`. */
  private pieceAfter(block: number): number {
    let lo = 0;
    let hi = this.pieces.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.pieces[mid]!.block <= block) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private noteUndo(block: number): void {
    if (!this.undo || this.undo.has(block)) return;
    const o = this.overlay.get(block);
    if (!o) {
      this.undo.set(block, undefined);
      return;
    }
    const copy = this.pool.pop() ?? new Uint8Array(this.blockSize);
    copy.set(o);
    this.undo.set(block, copy);
  }

  /** A mutable copy of a block that becomes its current content (read first when not in the overlay). */
  modify(block: number): Uint8Array {
    this.checkRange(block, 1);
    const o = this.overlay.get(block);
    if (o) {
      this.noteUndo(block);
      return o;
    }
    const copy = this.read(block).slice();
    this.noteUndo(block);
    this.overlay.set(block, copy);
    this.trusted.add(block);
    return copy;
  }

  /** Sets a block's whole new content (a newly allocated metadata block). `data` is kept, not copied. */
  put(block: number, data: Uint8Array): void {
    this.checkRange(block, 1);
    if (data.length !== this.blockSize)
      throw new Ext4Error('CORRUPT', `block ${block}: ${data.length} bytes is not one block`);
    this.noteUndo(block);
    this.overlay.set(block, data);
    this.trusted.add(block);
  }

  /**
   * A copy of `src` (whole blocks of new file data) that stays valid until the data is written: small
   * pieces go into the reused slabs, large ones into memory of their own.
   */
  keepData(src: Uint8Array): Uint8Array {
    const n = src.length;
    if (n > SLAB_PIECE_MAX) return src.slice();
    let slab = this.slabs[this.slabAt];
    if (slab && this.slabUsed + n > slab.length) {
      slab = this.slabs[++this.slabAt];
      this.slabUsed = 0;
    }
    if (!slab) this.slabs.push((slab = spareSlabs.pop() ?? new Uint8Array(SLAB)));
    const out = slab.subarray(this.slabUsed, this.slabUsed + n);
    out.set(src);
    this.slabUsed += n;
    return out;
  }

  /**
   * The pending data handed out by `takeData` has been written and is dropped: the slabs hold nothing
   * any more and go back to the process's spares, for this edit's next pieces or another cache's.
   */
  dataWritten(): void {
    if (this.pieces.length) return;
    for (const slab of this.slabs) if (spareSlabs.length < SLAB_KEEP) spareSlabs.push(slab);
    this.slabs = [];
    this.slabAt = 0;
    this.slabUsed = 0;
  }

  /** Adds new file data for blocks that were free before the edit. */
  addData(block: number, data: Uint8Array): void {
    const bs = this.blockSize;
    if (data.length % bs) throw new Ext4Error('CORRUPT', 'file data piece is not whole blocks');
    this.checkRange(block, data.length / bs);
    const piece = { block, data };
    const at = this.pieceAfter(block);
    this.pieces.splice(at, 0, piece);
    this.pendingDataBytes += data.length;
    this.undoPieces?.push(piece);
  }

  /**
   * Block `block` of pending new data, to change in place (undefined when no pending piece holds it).
   * A piece an earlier operation added is copied first, so rolling this operation back restores it.
   */
  modifyPending(block: number): Uint8Array | undefined {
    const bs = this.blockSize;
    const p = this.pieces[this.pieceAfter(block) - 1];
    if (!p || block >= p.block + p.data.length / bs) return undefined;
    if (this.undoChanged && !this.undoChanged.has(p) && !this.undoPieces?.includes(p)) {
      this.undoChanged.set(p, p.data);
      p.data = p.data.slice();
    }
    const at = (block - p.block) * bs;
    return p.data.subarray(at, at + bs);
  }

  /** Hands out the pending data, sorted by block, and forgets it (and any clean copy of those blocks). */
  takeData(): DataPiece[] {
    const out = this.pieces;
    for (const p of out) for (let k = 0; k < p.data.length / this.blockSize; k++) this.clean.delete(p.block + k);
    this.pieces = [];
    this.pendingDataBytes = 0;
    if (this.undoPieces) this.undoPieces = [];
    // Written (or about to be): what they held before cannot come back any more.
    this.undoChanged?.clear();
    return out;
  }

  /** Starts recording what the next operation changes, so it can be rolled back. */
  beginOp(): void {
    this.undo = new Map();
    this.undoPieces = [];
    this.undoChanged = new Map();
  }

  /** The operation succeeded: its changes stay. */
  endOp(): void {
    if (this.undo) for (const copy of this.undo.values()) if (copy && this.pool.length < 64) this.pool.push(copy);
    this.undo = undefined;
    this.undoPieces = undefined;
    this.undoChanged = undefined;
  }

  /** The operation failed: the overlay and pending data are as they were before `beginOp`. */
  rollbackOp(): void {
    if (!this.undo) return;
    for (const [block, before] of this.undo) {
      if (before) this.overlay.set(block, before);
      else {
        this.overlay.delete(block);
        this.trusted.delete(block);
      }
    }
    // The copies now serve as the overlay's blocks: none goes back to the pool.
    this.undo = undefined;
    if (this.undoChanged) for (const [p, before] of this.undoChanged) p.data = before;
    const added = new Set(this.undoPieces);
    if (added.size) {
      this.pieces = this.pieces.filter((p) => !added.has(p));
      this.pendingDataBytes = this.pieces.reduce((a, p) => a + p.data.length, 0);
    }
    this.endOp();
  }

  /** Drops every change (overlay and pending data): the device content is current again. */
  discard(): void {
    this.overlay.clear();
    this.trusted.clear();
    this.pieces = [];
    this.pendingDataBytes = 0;
    this.endOp();
    this.dataWritten();
  }

  /** The overlay has been written to the device: its blocks become clean. */
  overlayWritten(): void {
    for (const [block, data] of this.overlay) this.remember(block, data);
    // Written with the checksums this process computed: correct as they stand.
    for (const block of this.trusted) if (this.clean.has(block)) this.verified.add(block);
    this.overlay.clear();
    this.trusted.clear();
  }
}
