/** File-level entry points: format an image file atomically, read its summary. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Ext4Error } from './ext4/errors.js';
import { randomBytes } from './ext4/bytes.js';
import { FileDevice, syncDirectory } from './io/device.js';
import { formatDevice, type FormatOptions, type FormatResult } from './ext4/format.js';
import { planLayout } from './ext4/layout.js';
import { checkDevice, problemSummary } from './check/check.js';

/**
 * Runs `fill` against a fresh temporary file beside `target`, then renames it over `target`. On any
 * failure the temporary file is removed, so `target` is either untouched or complete.
 */
export function writeAtomically<T>(
  target: string,
  fill: (dev: FileDevice) => T,
  opts: { sync?: boolean; verify?: boolean } = {},
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
    throw new Ext4Error('IO_ERROR', `${target} is not a regular file; this tool writes image files, not devices`, {
      path: target,
    });
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
  // Validate everything before a file is created.
  const layout = planLayout(opts);
  return writeAtomically(
    imagePath,
    (dev) => {
      dev.truncate(opts.sizeBytes);
      return formatDevice(dev, opts, layout);
    },
    { sync: opts.sync, verify: opts.verify },
  );
}
