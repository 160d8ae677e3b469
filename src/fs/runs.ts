/**
 * A file's block map as both kinds of map (fs/extents.ts, fs/indirect.ts) read and build it: sorted runs
 * of logical blocks at physical blocks, plus the blocks of the map itself.
 */

/** A mapped run of a file: logical blocks [lblk, lblk+len) at physical pblk; uninit reads as zeros. */
export interface BlockRun {
  lblk: number;
  pblk: number;
  len: number;
  uninit: boolean;
}

/** A run to map (building a map): `uninit` may be left out. */
export interface MapRun {
  lblk: number;
  pblk: number;
  len: number;
  uninit?: boolean;
}

/** Everything a file's block map holds: its data runs and the blocks of the map itself. */
export interface FileMapping {
  runs: BlockRun[];
  /** Extent tree blocks (index and leaf nodes) or indirect blocks. */
  metaBlocks: number[];
}

/** The physical block of logical block `lblk` of a file (undefined in a hole). */
export function physicalBlock(runs: readonly MapRun[], lblk: number): number | undefined {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = runs[mid]!;
    if (lblk < r.lblk) hi = mid - 1;
    else if (lblk >= r.lblk + r.len) lo = mid + 1;
    else return r.pblk + (lblk - r.lblk);
  }
  return undefined;
}
