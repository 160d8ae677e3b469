/**
 * The blocks one grow step writes, in two kinds, by what the old file system makes of them:
 * - `home`: blocks the old file system reads (its superblock and backups, descriptor blocks, the old
 *   last group's bitmap, the resize inode and its reserved GDT blocks): they change through the journal,
 *   all in one transaction, so a crash leaves the old or the new file system;
 * - `fresh`: blocks the old file system never reads (the new region past its end, and the backup copies
 *   of reserved GDT blocks, whose content nothing checks): written and made durable before the commit,
 *   so by the time anything points at them they hold what it expects.
 */
import { blockBytes, type BlockData } from '../core/zero-tail.js';
import type { Ext4Reader } from '../fs/reader.js';

export class StepWrites {
  readonly home = new Map<number, BlockData>();
  readonly fresh = new Map<number, BlockData>();
  /** Inode table runs [start, count] to be written as zeros (no lazy init, bytes not known to be zero). */
  readonly zeroRuns: [number, number][] = [];

  constructor(
    private readonly r: Ext4Reader,
    /** The old file system's block count: blocks at or past it are new. */
    readonly oldEnd: number,
  ) {}

  /** A block the old file system reads, to change through the journal (its current content first). */
  modify(block: number): Uint8Array {
    const had = this.home.get(block);
    if (had instanceof Uint8Array) return had;
    const b = had ? blockBytes(had) : this.r.readBlocks(block).slice();
    this.home.set(block, b);
    return b;
  }

  /** Whole new content for `block`: fresh when past the old end or `unread` (nothing reads it), else home. */
  put(block: number, data: BlockData, unread = false): void {
    if (block >= this.oldEnd || unread) this.fresh.set(block, data);
    else this.home.set(block, data);
  }

  /** Bytes the step writes (fresh, home once, zeroed tables). */
  bytes(blockSize: number): number {
    return (this.fresh.size + this.home.size + this.zeroRuns.reduce((a, [, n]) => a + n, 0)) * blockSize;
  }
}
