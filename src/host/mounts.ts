/**
 * Probing the host for mounts (Linux /sys and /proc/self/mountinfo): an image file a mounted loop
 * device is backed by must not be edited or recovered behind the kernel's back.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The loop device a host file is attached to while that device is mounted, else undefined. */
export function mountedLoop(imagePath: string): string | undefined {
  let real: string;
  let st: fs.Stats;
  try {
    real = fs.realpathSync(imagePath);
    st = fs.statSync(real);
  } catch {
    return undefined;
  }
  let loops: string[];
  try {
    loops = fs.readdirSync('/sys/block').filter((n) => n.startsWith('loop'));
  } catch {
    return undefined;
  }
  let mountinfo: string | undefined;
  for (const loop of loops) {
    // Detached loop devices have no backing_file: asked without an exception, which costs more.
    const backingFile = path.join('/sys/block', loop, 'loop', 'backing_file');
    if (!fs.existsSync(backingFile)) continue;
    let backing: string;
    try {
      backing = fs.readFileSync(backingFile, 'utf8').trim();
    } catch {
      continue;
    }
    let same = backing === real;
    if (!same) {
      try {
        const b = fs.statSync(backing);
        same = b.ino === st.ino && b.dev === st.dev;
      } catch {
        same = false;
      }
    }
    if (!same) continue;
    let devno = '';
    try {
      devno = fs.readFileSync(path.join('/sys/block', loop, 'dev'), 'utf8').trim();
    } catch {
      continue;
    }
    if (mountinfo === undefined) {
      try {
        mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8');
      } catch {
        return undefined;
      }
    }
    if (mountinfo.split('\n').some((l) => l.split(' ')[2] === devno)) return `/dev/${loop}`;
  }
  return undefined;
}
