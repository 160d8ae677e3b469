/**
 * An open edit's changes, and the one undo log that lets a failed operation leave the earlier ones of
 * the batch intact. It owns:
 * - the changed metadata blocks (copies the edit modifies; they win over the device for every read,
 *   the reader's included: the transaction is the writable layer stacked on the block cache, layer.ts);
 * - pending new file data: whole blocks that were free before the edit, kept apart from the metadata
 *   because they are written first (and never journaled);
 * - the undo log of the operation under way (`begin` / `end` / `rollback`): the blocks' and data
 *   pieces' contents before it, and whatever else the edit keeps outside blocks (the volume's counters,
 *   its decoded descriptors, the allocators' lists), saved at its first change (`saveEntry`,
 *   `saveFields`, `saveLength`). Derived state (search hints, decoded copies) is refreshed by `onRollback` hooks.
 *
 * Nothing here writes to the device: the commit (commit.ts) takes the blocks and data and reports them
 * written (`written`, `dataWritten`).
 */
import { Ext4Error } from '../core/errors.js';
import type { BlockCache } from '../io/cache.js';
import type { BlockLayer } from '../io/layer.js';

/** A run of new file data: `data.length` is a whole number of blocks, starting at block `block`. */
export interface DataPiece {
  block: number;
  data: Uint8Array;
}

/** Slabs for small pieces of pending file data: their size, the largest piece they take, how many stay. */
const SLAB = 1 << 20;
const SLAB_PIECE_MAX = 64 << 10;
const SLAB_KEEP = 4;
/** Slabs no transaction holds: each one is either here or owned by exactly one transaction. */
const spareSlabs: Uint8Array[] = [];
/** An entry that did not exist before the operation (its undo deletes it). */
const ABSENT = Symbol('absent');

export class Transaction implements BlockLayer {
  /** The changed metadata blocks, by block number. */
  readonly blocks = new Map<number, Uint8Array>();
  /** Blocks this process changed: their checksums are its own to compute, not to verify. */
  private readonly trusted = new Set<number>();
  /** Pending file data, sorted by block, never overlapping. */
  private pieces: DataPiece[] = [];
  /** Bytes of pending file data. */
  pendingDataBytes = 0;
  private readonly bs: number;

  // The undo log of the operation under way (empty between operations; made once, cleared after each).
  private open = false;
  private readonly undo = new Map<number, Uint8Array | undefined>();
  /**
   * Parts of blocks the operation changed through `modifyRange` (an inode record in its table block):
   * their bytes before it, in the order saved. A block saved whole (`undo`) needs none.
   */
  private readonly undoRanges: { block: number; off: number; len: number; at: number }[] = [];
  /** The saved parts' bytes, one after the other (reused: a typed array per part costs a malloc). */
  private rangeBytes = new Uint8Array(16384);
  private rangeUsed = 0;
  private readonly undoPieces: DataPiece[] = [];
  /** Pending pieces the operation changed in place, with their data as it was. */
  private readonly undoChanged = new Map<DataPiece, Uint8Array>();
  /**
   * State outside blocks: per Map or Set, its entries before the operation; per list, its length; per
   * object, a copy of its fields.
   */
  private readonly undoState = new Map<object, Map<unknown, unknown> | object>();
  private readonly rollbackHooks: (() => void)[] = [];
  /** Spare block buffers for undo copies (an edit makes thousands; reusing them spares the GC). */
  private pool: Uint8Array[] = [];
  /**
   * Memory for small pieces of pending file data: carved out of slabs that are used again once the data
   * is written (`dataWritten`). Fresh memory costs a page fault per page on first touch; reused does not.
   */
  private slabs: Uint8Array[] = [];
  private slabAt = 0;
  private slabUsed = 0;

  constructor(readonly cache: BlockCache) {
    this.bs = cache.blockSize;
    cache.stack(this);
  }

  // ---- the layer the cache reads through ----

  block(n: number): Uint8Array | undefined {
    return this.blocks.get(n);
  }
  get active(): boolean {
    return this.blocks.size > 0 || this.pieces.length > 0;
  }
  trusts(n: number): boolean {
    return this.trusted.has(n);
  }
  get hasData(): boolean {
    return this.pieces.length > 0;
  }

  /** True when the edit holds any change (blocks or data). */
  get changed(): boolean {
    return this.active;
  }

  // ---- metadata blocks ----

  /** A block as it currently is (see BlockCache.read; must not be modified). */
  read(block: number, count = 1): Uint8Array {
    return this.cache.read(block, count);
  }

  /** True when the edit changed block `block`. */
  has(block: number): boolean {
    return this.blocks.has(block);
  }

  private noteUndo(block: number): void {
    if (!this.open || this.undo.has(block)) return;
    const o = this.blocks.get(block);
    if (!o) {
      this.undo.set(block, undefined);
      return;
    }
    const copy = this.pool.pop() ?? new Uint8Array(this.bs);
    copy.set(o);
    this.undo.set(block, copy);
  }

  /** A mutable copy of a block that becomes its current content (read first when not changed yet). */
  modify(block: number): Uint8Array {
    this.cache.checkRange(block, 1);
    const o = this.blocks.get(block);
    if (o) {
      this.noteUndo(block);
      return o;
    }
    const copy = this.cache.read(block).slice();
    this.noteUndo(block);
    this.blocks.set(block, copy);
    this.trusted.add(block);
    return copy;
  }

  /**
   * `modify` for a change confined to bytes [off, off + len) of the block (an inode record): an
   * operation that changes one record in a block an earlier one changed saves those bytes for its undo,
   * not the whole block (most operations change two or three inodes, in tables earlier ones changed).
   */
  modifyRange(block: number, off: number, len: number): Uint8Array {
    const o = this.open && !this.undo.has(block) ? this.blocks.get(block) : undefined;
    if (!o) return this.modify(block);
    if (this.rangeUsed + len > this.rangeBytes.length) {
      const grown = new Uint8Array(Math.max(2 * this.rangeBytes.length, this.rangeUsed + len));
      grown.set(this.rangeBytes.subarray(0, this.rangeUsed));
      this.rangeBytes = grown;
    }
    this.rangeBytes.set(o.subarray(off, off + len), this.rangeUsed);
    this.undoRanges.push({ block, off, len, at: this.rangeUsed });
    this.rangeUsed += len;
    return o;
  }

  /** Sets a block's whole new content (a newly allocated metadata block). `data` is kept, not copied. */
  put(block: number, data: Uint8Array): void {
    this.cache.checkRange(block, 1);
    if (data.length !== this.bs)
      throw new Ext4Error('CORRUPT', `block ${block}: ${data.length} bytes is not one block`);
    this.noteUndo(block);
    this.blocks.set(block, data);
    this.trusted.add(block);
  }

  /** Drops the edit's copy of a block freed by it (what it held is of no use any more); at commit only. */
  drop(block: number): void {
    this.blocks.delete(block);
  }

  // ---- pending file data ----

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

  /** Adds new file data for blocks that were free before the edit. */
  addData(block: number, data: Uint8Array): void {
    const bs = this.bs;
    if (data.length % bs) throw new Ext4Error('CORRUPT', 'file data piece is not whole blocks');
    this.cache.checkRange(block, data.length / bs);
    const piece = { block, data };
    const at = this.pieceAfter(block);
    this.pieces.splice(at, 0, piece);
    this.pendingDataBytes += data.length;
    if (this.open) this.undoPieces.push(piece);
  }

  /** File data blocks as they currently are (the device's, with the edit's blocks and data patched in). */
  readData(block: number, count: number): Uint8Array {
    return this.cache.readData(block, count);
  }

  /**
   * Block `block` of pending new data, to change in place (undefined when no pending piece holds it).
   * A piece an earlier operation added is copied first, so rolling this operation back restores it.
   */
  modifyPending(block: number): Uint8Array | undefined {
    const bs = this.bs;
    const p = this.pieces[this.pieceAfter(block) - 1];
    if (!p || block >= p.block + p.data.length / bs) return undefined;
    if (this.open && !this.undoChanged.has(p) && !this.undoPieces.includes(p)) {
      this.undoChanged.set(p, p.data);
      p.data = p.data.slice();
    }
    const at = (block - p.block) * bs;
    return p.data.subarray(at, at + bs);
  }

  /** Copies pending new data for blocks [block, block + count) into `out` (which holds those blocks). */
  patchData(block: number, count: number, out: Uint8Array): void {
    if (!this.pieces.length) return;
    const bs = this.bs;
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

  /** Hands out the pending data, sorted by block, and forgets it (and the cache's clean copy of those blocks). */
  takeData(): DataPiece[] {
    const out = this.pieces;
    for (const p of out) for (let k = 0; k < p.data.length / this.bs; k++) this.cache.forget(p.block + k);
    this.pieces = [];
    this.pendingDataBytes = 0;
    this.undoPieces.length = 0;
    // Written (or about to be): what they held before cannot come back any more.
    this.undoChanged.clear();
    return out;
  }

  /**
   * The pending data handed out by `takeData` has been written and is dropped: the slabs hold nothing
   * any more and go back to the process's spares, for this edit's next pieces or another transaction's.
   */
  dataWritten(): void {
    if (this.pieces.length) return;
    for (const slab of this.slabs) if (spareSlabs.length < SLAB_KEEP) spareSlabs.push(slab);
    this.slabs = [];
    this.slabAt = 0;
    this.slabUsed = 0;
  }

  /** The changed blocks have been written to the device: they become the cache's clean blocks. */
  blocksWritten(): void {
    for (const [block, data] of this.blocks) this.cache.written(block, data, this.trusted.has(block));
    // Written with the checksums this process computed: correct as they stand.
    for (const block of this.trusted) if (!this.blocks.has(block)) this.cache.written(block, undefined, true);
    this.blocks.clear();
    this.trusted.clear();
  }

  // ---- the undo log ----

  /** True while an operation is under way. */
  get inOp(): boolean {
    return this.open;
  }

  /** Starts recording what the next operation changes, so it can be rolled back. */
  begin(): void {
    this.end();
    this.open = true;
  }

  /** Saves entry `key` of `coll` before the operation first changes it (restored by a rollback). */
  saveEntry<K>(coll: Map<K, unknown> | Set<K>, key: K): void {
    if (!this.open) return;
    const state = this.undoState;
    let saved = state.get(coll) as Map<unknown, unknown> | undefined;
    if (!saved) state.set(coll, (saved = new Map()));
    if (saved.has(key)) return;
    saved.set(key, coll instanceof Map ? (coll.has(key) ? coll.get(key) : ABSENT) : coll.has(key) ? key : ABSENT);
  }

  /** Saves an object's own fields (counters) before the operation first changes them. */
  saveFields(obj: object): void {
    if (this.open && !this.undoState.has(obj)) this.undoState.set(obj, { ...obj });
  }

  /** Saves the length of a list the operation only appends to (a rollback cuts it back). */
  saveLength(list: unknown[]): void {
    if (this.open && !this.undoState.has(list)) this.undoState.set(list, { length: list.length });
  }

  /** Registers a refresh of derived state (hints, decoded copies) run after every rollback. */
  onRollback(hook: () => void): void {
    this.rollbackHooks.push(hook);
  }

  /** The operation succeeded: its changes stay. */
  end(): void {
    for (const copy of this.undo.values()) if (copy && this.pool.length < 64) this.pool.push(copy);
    this.undo.clear();
    this.undoRanges.length = 0;
    this.rangeUsed = 0;
    this.undoPieces.length = 0;
    this.undoChanged.clear();
    this.undoState.clear();
    this.open = false;
  }

  /** The operation failed: everything it changed is as it was before `begin`. */
  rollback(): void {
    if (this.open) {
      for (const [block, before] of this.undo) {
        if (before) this.blocks.set(block, before);
        else {
          this.blocks.delete(block);
          this.trusted.delete(block);
        }
      }
      // Saved parts last and newest first: a block saved whole after a part of it changed holds that
      // change, which the part's saved bytes then undo.
      for (let k = this.undoRanges.length - 1; k >= 0; k--) {
        const { block, off, len, at } = this.undoRanges[k]!;
        this.blocks.get(block)?.set(this.rangeBytes.subarray(at, at + len), off);
      }
      // The copies now serve as the edit's blocks: none goes back to the pool.
      this.undo.clear();
      for (const [p, before] of this.undoChanged) p.data = before;
      const added = new Set(this.undoPieces);
      if (added.size) {
        this.pieces = this.pieces.filter((p) => !added.has(p));
        this.pendingDataBytes = this.pieces.reduce((a, p) => a + p.data.length, 0);
      }
    }
    for (const [obj, saved] of this.undoState) restore(obj, saved);
    this.end();
    for (const hook of this.rollbackHooks) hook();
  }

  /** Drops every change (blocks and pending data): the device content is current again. */
  discard(): void {
    this.blocks.clear();
    this.trusted.clear();
    this.pieces = [];
    this.pendingDataBytes = 0;
    this.end();
    this.dataWritten();
  }
}

function restore(obj: object, saved: Map<unknown, unknown> | object): void {
  if (obj instanceof Map || obj instanceof Set) {
    for (const [key, before] of saved as Map<unknown, unknown>) {
      if (before === ABSENT) obj.delete(key);
      else if (obj instanceof Map) obj.set(key, before);
      else obj.add(key);
    }
  } else if (Array.isArray(obj)) obj.length = (saved as { length: number }).length;
  else Object.assign(obj, saved);
}
