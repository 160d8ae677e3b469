/**
 * The block cache every image access goes through: clean blocks recently read from the device (evicted
 * oldest first), and which of them have had their checksums verified. Blocks whose current content is
 * not the device's come from the one layer that may be stacked on it (see layer.ts: a journal replayed
 * in memory, or an open edit's transaction); the layer always wins over the device. The cache itself
 * never changes a block.
 */
import { Ext4Error } from '../core/errors.js';
import type { BlockDevice } from './device.js';
import type { BlockLayer } from './layer.js';

const CLEAN_MAX = 256;

export class BlockCache {
  private readonly clean = new Map<number, Uint8Array>();
  /** Clean blocks whose checksums have been verified once. */
  private readonly verified = new Set<number>();
  /** The layer stacked on the device, if any (set by whoever owns it; see layer.ts). */
  private top: BlockLayer | undefined;

  constructor(
    readonly dev: BlockDevice,
    readonly blockSize: number,
    /** Blocks in the file system; every access is checked against it. */
    public blocksCount: number,
  ) {}

  /** The stacked layer. */
  get layer(): BlockLayer | undefined {
    return this.top;
  }

  /** Stacks `layer` on the device; only one may be (an edit over a replayed journal is refused before). */
  stack(layer: BlockLayer): void {
    if (this.top && this.top !== layer)
      throw new Ext4Error('INVALID_ARGUMENT', 'the block cache already has a layer (a replayed journal or an edit)');
    this.top = layer;
  }

  checkRange(block: number, count: number): void {
    if (!Number.isSafeInteger(block) || block < 0 || count < 0 || block + count > this.blocksCount)
      throw new Ext4Error(
        'CORRUPT',
        `block ${block} (+${count}) is outside the file system (${this.blocksCount} blocks)`,
        { block },
      );
  }

  /** True when the layer holds anything (blocks or pending data). */
  get changed(): boolean {
    return this.top !== undefined && this.top.active;
  }

  /** True when block `block`'s current content comes from the layer. */
  overlaid(block: number): boolean {
    return this.top !== undefined && this.top.block(block) !== undefined;
  }

  /**
   * Whole blocks as they currently are (layer first, then clean cache, then the device). One block may
   * be the cached buffer itself and must not be modified; a run of several is a new buffer.
   */
  read(block: number, count = 1): Uint8Array {
    this.checkRange(block, count);
    const bs = this.blockSize;
    const top = this.top;
    if (count !== 1) {
      const out = this.dev.read(block * bs, count * bs);
      if (top?.active)
        for (let k = 0; k < count; k++) {
          const o = top.block(block + k);
          if (o) out.set(o, k * bs);
        }
      return out;
    }
    if (top) {
      const o = top.block(block);
      if (o) return o;
    }
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

  /** True when block `block` is in the clean cache or the layer (no device read needed). */
  has(block: number): boolean {
    return this.clean.has(block) || this.overlaid(block);
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
    const top = this.top;
    if (top) {
      if (top.trusts(block)) return true;
      if (top.block(block)) return false;
    }
    return this.verified.has(block);
  }

  /** Records that a clean block's checksums were verified (layer blocks from a journal are not). */
  markVerified(block: number): void {
    if (!this.overlaid(block)) this.verified.add(block);
  }

  /**
   * File data blocks into `out` (whole blocks, from `block` on) as they currently are: the device's
   * bytes with the layer's blocks and pending new data patched in. Nothing is allocated or cached.
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
    const top = this.top;
    if (!top?.active) return;
    for (let k = 0; k < count; k++) {
      const o = top.block(block + k);
      if (o) out.set(o, k * bs);
    }
    if (top.hasData) top.patchData(block, count, out);
  }

  /** File data blocks: like `read`, with the layer's pending new data patched in. */
  readData(block: number, count: number): Uint8Array {
    const top = this.top;
    const data = top !== undefined && top.hasData;
    // read() of one block may hand back the cached buffer itself: copied before pending data is patched in.
    const out = count > 1 ? this.read(block, count) : data ? this.read(block).slice() : this.read(block);
    if (data) top.patchData(block, count, out);
    return out;
  }

  /** Forgets the clean copy of a block the device's content of which is about to change (new data). */
  forget(block: number): void {
    this.clean.delete(block);
  }

  /**
   * A layer's block has been written to the device: `data` (when given) becomes its clean copy, and a
   * clean copy whose checksums this process computed counts as verified.
   */
  written(block: number, data: Uint8Array | undefined, trusted: boolean): void {
    if (data) this.remember(block, data);
    if (trusted && this.clean.has(block)) this.verified.add(block);
  }
}
