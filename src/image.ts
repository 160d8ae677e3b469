/** File-level entry points: format an image file atomically, read its summary. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Ext4Error } from './ext4/errors.js';
import { randomBytes } from './ext4/bytes.js';
import { FileDevice, syncDirectory } from './io/device.js';
import { formatDevice, sourceWithMetadata, treeFits, type FormatOptions, type FormatResult } from './ext4/format.js';
import { parseSize, planLayout } from './ext4/layout.js';
import { estimateTree, type TreeEstimate } from './ext4/writer.js';
import { checkDevice, problemSummary } from './check/check.js';

/**
 * Runs `fill` against a fresh temporary file beside `target`, then renames it over `target`. On any
 * failure the temporary file is removed, so `target` is either untouched or complete.
 */
export function writeAtomically<T>(
  target: string,
  fill: (dev: FileDevice) => T,
  opts: {
    sync?: boolean;
    verify?: boolean;
    /** What to say to a target that exists but is no regular file (a device, a FIFO). */
    notAFileHint?: string;
  } = {},
): T {
  const dir = path.dirname(path.resolve(target));
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(target);
  } catch {
    st = undefined;
  }
  if (st?.isDirectory()) throw new Ext4Error('IO_ERROR', `${target} is a directory`, { path: target });
  // Devices are refused: the formatter relies on a fresh sparse file reading as zeros (lazy inode
  // tables, uninitialized bitmaps, the journal), which a used device does not.
  if (st && !st.isFile())
    throw new Ext4Error(
      'IO_ERROR',
      `${target} is not a regular file; ${opts.notAFileHint ?? 'this tool writes image files, not devices'}`,
      { path: target },
    );
  const tmp = path.join(
    dir,
    `.${path.basename(target)}.${process.pid}.${Buffer.from(randomBytes(4)).toString('hex')}.tmp`,
  );
  const dev = FileDevice.create(tmp, 0o644, target);
  dev.earlyFlush = opts.sync !== false;
  try {
    const out = fill(dev);
    if (opts.verify) verifyImage(dev, target);
    if (opts.sync !== false) dev.sync();
    dev.close();
    fs.renameSync(tmp, target);
    // The new name is durable only once the directory is: without this a power cut can leave the old
    // file (or none) although the command reported success.
    if (opts.sync !== false) syncDirectory(dir);
    return out;
  } catch (e) {
    dev.close();
    try {
      fs.unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    if (e instanceof Ext4Error) throw e;
    throw new Ext4Error('IO_ERROR', `cannot write ${target}: ${(e as Error).message}`, { path: target, cause: e });
  }
}

/** True when `a` and `b` name the same file: one path, or two names (links) of one file. */
export function sameFile(a: string, b: string): boolean {
  if (path.resolve(a) === path.resolve(b)) return true;
  const sa = fs.statSync(a, { throwIfNoEntry: false });
  const sb = fs.statSync(b, { throwIfNoEntry: false });
  return !!sa && !!sb && sa.dev === sb.dev && sa.ino === sb.ino;
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
  const source = sourceWithMetadata(opts);
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
  const source = sourceWithMetadata(opts);
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
