/**
 * Probing the host for mounts (Linux /sys and /proc/self/mountinfo): an image file a mounted loop
 * device is backed by must not be edited or recovered behind the kernel's back.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The block device numbers ("major:minor") /proc/self/mountinfo shows mounted (field 3). */
function mountedDevnos(): Set<string> | undefined {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const devno = line.split(' ', 3)[2];
    if (devno) out.add(devno);
  }
  return out;
}

/** Loop devices' major number (Documentation/admin-guide/devices.txt). */
const LOOP_MAJOR = '7';

/**
 * The loop device a host file is attached to while that device is mounted, else undefined. Asked from
 * the mounts' side: the mounted loop devices (usually none) are looked up by number under /sys/dev/block,
 * so an edit pays one read of mountinfo, not a look at every attached loop device.
 */
export function mountedLoop(imagePath: string): string | undefined {
  const mounted = mountedDevnos();
  if (!mounted) return undefined;
  let real: string | undefined;
  let st: fs.Stats | undefined;
  for (const devno of mounted) {
    if (devno.split(':')[0] !== LOOP_MAJOR) continue;
    const dir = path.join('/sys/dev/block', devno);
    let backing: string;
    try {
      backing = fs.readFileSync(path.join(dir, 'loop', 'backing_file'), 'utf8').trim();
    } catch {
      continue; // not a loop device with a file behind it (a partition, a detached device)
    }
    if (!st) {
      try {
        // The native call resolves in one system call; the JS one walks the path an lstat at a time.
        real = fs.realpathSync.native(imagePath);
        st = fs.statSync(real);
      } catch {
        return undefined;
      }
    }
    let same = backing === real;
    if (!same) {
      // A device whose file was deleted names a path that is gone: asked without an exception.
      try {
        const b = fs.statSync(backing, { throwIfNoEntry: false });
        same = b !== undefined && b.ino === st.ino && b.dev === st.dev;
      } catch {
        same = false;
      }
    }
    if (!same) continue;
    try {
      return `/dev/${path.basename(fs.realpathSync.native(dir))}`;
    } catch {
      return `/dev/block/${devno}`;
    }
  }
  return undefined;
}
