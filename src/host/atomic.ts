/**
 * Writing a whole file atomically on the host: a temporary file beside the target, filled, checked,
 * synced, then renamed over it (the image formatter and the tar export both write this way).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Ext4Error } from '../core/errors.js';
import { randomBytes } from '../core/bytes.js';
import { FileDevice, syncDirectory } from '../io/device.js';

/**
 * Runs `fill` against a fresh temporary file beside `target`, then renames it over `target`. On any
 * failure the temporary file is removed, so `target` is either untouched or complete.
 */
export function writeAtomically<T>(
  target: string,
  fill: (dev: FileDevice) => T,
  opts: {
    sync?: boolean;
    /** Checks the filled file before it is renamed into place; what it throws leaves nothing at `target`. */
    verify?: (dev: FileDevice) => void;
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
    opts.verify?.(dev);
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
