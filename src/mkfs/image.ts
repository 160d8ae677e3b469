/** File-level entry points: format an image file atomically, read its summary. */
import { Ext4Error } from '../core/errors.js';
import type { FileDevice } from '../io/device.js';
import { formatDevice, treeFits, type FormatOptions, type FormatResult } from './format.js';
import { parseSize, planLayout } from '../ext4/layout.js';
import { estimateTree, type TreeEstimate } from './estimate.js';
import { sourceWithMetadata } from '../tree/sources/overlay.js';
import { checkDevice, problemSummary } from '../check/check.js';
import { writeAtomically as writeChecked } from '../host/atomic.js';

export { sameFile } from '../host/atomic.js';

/**
 * Runs `fill` against a fresh temporary file beside `target`, then renames it over `target` (see
 * host/atomic.ts); with `verify`, an image that `check` finds problems in is refused first.
 */
export function writeAtomically<T>(
  target: string,
  fill: (dev: FileDevice) => T,
  opts: { sync?: boolean; verify?: boolean; notAFileHint?: string } = {},
): T {
  return writeChecked(target, fill, { ...opts, verify: opts.verify ? (dev) => verifyImage(dev, target) : undefined });
}

export interface FormatImageOptions extends FormatOptions {
  /** fsync the image before it is renamed into place (default true). */
  sync?: boolean;
  /**
   * Check the new image (`check`, what e2fsck -fn tells) before it is renamed into place: one with
   * problems is refused with CORRUPT and nothing is left at the target.
   */
  verify?: boolean;
}

/** Refuses a freshly written image that `check` finds problems in. */
function verifyImage(dev: FileDevice, target: string): void {
  const res = checkDevice(dev);
  if (res.clean) return;
  throw new Ext4Error(
    'CORRUPT',
    `${target}: the new image fails its check (${problemSummary(res)}); nothing was written`,
    {
      path: target,
    },
  );
}

/**
 * Creates (or replaces) the sparse image file `imagePath` of exactly `opts.sizeBytes` bytes holding an
 * empty ext4 file system with mkfs.ext4's features and geometry.
 */
export function formatImage(imagePath: string, opts: FormatImageOptions): FormatResult {
  // Validate everything before a file is created: the options, and a spec against its source.
  const layout = planLayout(opts);
  const source = sourceWithMetadata(opts.source, opts);
  return writeAtomically(
    imagePath,
    (dev) => {
      dev.truncate(opts.sizeBytes);
      return formatDevice(dev, opts, layout, source);
    },
    { sync: opts.sync, verify: opts.verify },
  );
}

/** How much room `--size auto` leaves beyond the smallest size the tree fits: a share or a byte count. */
export type SizeSlack = { percent: number } | { bytes: number };

/** Parses `--size-slack`: `N%` of the smallest fitting size, or a size (`64M`, `0`). */
export function parseSizeSlack(s: string): SizeSlack {
  const m = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(s);
  if (m) return { percent: Number(m[1]) };
  try {
    return { bytes: parseSize(s) };
  } catch {
    throw new Ext4Error('BAD_OPTION', `--size-slack must be a percentage (10%) or a size (64M), got "${s}"`);
  }
}

const MiB = 1 << 20;

/**
 * The size `--size auto` picks: the smallest whole number of MiB whose file system (mkfs geometry for
 * that size, journal included) holds the tree by the writer's own estimate, plus `slack` (default 10%),
 * rounded up to a MiB. Where the tree has a symlink target longer than that geometry's block (1 KiB
 * below 512 MiB), the block size becomes 4 KiB unless one is given. Reads only metadata; computed
 * before anything is written. Pass both results to formatImage.
 */
export function autoSize(
  opts: Omit<FormatOptions, 'sizeBytes'>,
  slack: SizeSlack = { percent: 10 },
): { sizeBytes: number; blockSize?: number } {
  // The tree as it will be written: a spec's attributes take room too.
  const source = sourceWithMetadata(opts.source, opts);
  if (!source) return { sizeBytes: 16 * MiB, blockSize: opts.blockSize };
  // By block size and inode size (mkfs's geometry picks both by the file system's size).
  const estimates = new Map<string, TreeEstimate>();
  let blockSize = opts.blockSize;
  const estimate = (bs: number, isz = 256): TreeEstimate => {
    let est = estimates.get(`${bs}/${isz}`);
    if (!est) estimates.set(`${bs}/${isz}`, (est = estimateTree(source, bs, isz)));
    return est;
  };
  if (blockSize === undefined && estimate(1024).longestSymlink >= 1024) blockSize = 4096;
  const fits = (mib: number): boolean => {
    try {
      const l = planLayout({ ...opts, blockSize, sizeBytes: mib * MiB });
      return treeFits(l, estimate(l.blockSize, l.inodeSize), true).fits;
    } catch (e) {
      if (e instanceof Ext4Error && e.code === 'TOO_SMALL') return false;
      throw e;
    }
  };
  // Grow an upper bound, then bisect down to the smallest fitting MiB count.
  let lo = 1;
  let hi = 2;
  while (!fits(hi)) {
    lo = hi;
    hi *= 2;
    if (hi * MiB > 2 ** 50) throw new Ext4Error('TOO_LARGE', 'the tree does not fit any supported size');
  }
  while (lo + 1 < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) hi = mid;
    else lo = mid;
  }
  const extra = 'percent' in slack ? (hi * MiB * slack.percent) / 100 : slack.bytes;
  let mib = Math.ceil((hi * MiB + extra) / MiB);
  // Geometry changes between size classes: make sure the padded size still holds the tree.
  while (!fits(mib)) mib++;
  return { sizeBytes: mib * MiB, blockSize };
}
