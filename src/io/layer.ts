/**
 * What may be stacked on the block cache: blocks whose current content is not the device's. Two kinds
 * exist, never both on one cache:
 * - a journal replayed in memory (`FixedLayer`, read-only): the reader stacks it when asked to read a
 *   dirty file system as the kernel would after mounting it; nothing of it is ever written;
 * - an open edit (`Transaction` in src/edit/transaction.ts, writable): changed metadata blocks and new
 *   file data, with their undo. An edit is never opened over a replayed journal (the editor refuses
 *   needs_recovery; `recover` writes the replay home before it edits).
 * The cache asks the layer first on every read, so its methods are hot: no allocation in them.
 */

export interface BlockLayer {
  /** The block's current content when the layer holds it (the caller must not modify it). */
  block(n: number): Uint8Array | undefined;
  /** True when the layer holds any block or data (reads must consult it; no read-ahead past it). */
  readonly active: boolean;
  /** True when this process computed the block's checksums: they are its own, not to verify. */
  trusts(n: number): boolean;
  /** True when `patchData` may have anything to copy. */
  readonly hasData: boolean;
  /** Copies the layer's pending file data for blocks [block, block + count) into `out`. */
  patchData(block: number, count: number, out: Uint8Array): void;
}

/** Fixed blocks, read-only: a journal replayed in memory. Its blocks' checksums are verified as read. */
export class FixedLayer implements BlockLayer {
  readonly hasData = false;
  constructor(private readonly blocks: ReadonlyMap<number, Uint8Array>) {}
  block(n: number): Uint8Array | undefined {
    return this.blocks.get(n);
  }
  get active(): boolean {
    return this.blocks.size > 0;
  }
  trusts(): boolean {
    return false;
  }
  patchData(): void {}
}
