/**
 * The lock files' primitives (the protocol is lock.ts's): reading a holder's record, creating a file
 * whole or not at all, the one takeover of a dead holder's file, and clearing what a process killed in
 * the middle of locking left. Everything is synchronous, so waiting is sleeping the thread.
 */
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { sleepSync } from '../core/sleep.js';
import { newHolder, holderState, parseHolder, type Holder } from './holder.js';

/** Removes a file that may be gone already (a takeover, a second release). */
export function unlinkQuiet(p: string): void {
  try {
    fs.unlinkSync(p);
  } catch {
    // Gone already (a takeover, a second release).
  }
}

export function readHolderFile(p: string): Holder | undefined {
  try {
    return parseHolder(fs.readFileSync(p, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * The writer's record; a lock file that is there but holds no record (damaged, or its maker had no
 * hard links and died before writing it) is shown as a foreign holder: never broken, named to a person.
 */
export function readWriter(base: string): Holder | undefined {
  let st: fs.Stats | undefined;
  for (let i = 0; i < 2; i++) {
    const h = readHolderFile(base);
    if (h) return h;
    st = fs.statSync(base, { throwIfNoEntry: false });
    if (!st) return undefined;
    if (i === 0) pause(); // a record being written where links are missing
  }
  return { pid: 0, host: '?', command: 'an unreadable lock file', since: st!.mtime.toISOString(), nonce: '' };
}

/** Everything is synchronous: the thread sleeps, with jitter so waiters do not retry in step. */
export const pause = () => sleepSync(10 + Math.random() * 40);

/** Creates `file` holding `h`, whole, unless it exists: true when created. */
export function createExclusive(file: string, h: Holder): boolean {
  const tmp = `${file.slice(0, file.lastIndexOf('.lock') + 5)}.tmp.${process.pid}.${randomBytes(6).toString('hex')}`;
  fs.writeFileSync(tmp, JSON.stringify(h) + '\n', { flag: 'wx', mode: 0o644 });
  try {
    return linkRecord(tmp, file, h);
  } finally {
    unlinkQuiet(tmp);
  }
}

/**
 * Gives the record `tmp` (written whole, holding `h`) the name `file` as well, unless `file` exists:
 * true when made. The caller removes `tmp` (a writer keeps it until then: it is what a takeover
 * renames over a dead holder's lock).
 */
export function linkRecord(tmp: string, file: string, h: Holder): boolean {
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw e;
    // No hard links here (some FUSE and FAT mounts): an exclusive create, its record written after.
    try {
      fs.writeFileSync(file, JSON.stringify(h) + '\n', { flag: 'wx', mode: 0o644 });
      return true;
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e2;
    }
  }
}

/**
 * Removes `file`, whose holder `dead` is gone, or renames `replacement` over it: true when this
 * process did it (only one can, for one dead holder).
 */
export function breakDead(file: string, dead: Holder, replacement?: string): boolean {
  const guard = `${file.replace(/\.break\..*$/, '')}.break.${dead.nonce}`;
  if (!createExclusive(guard, newHolder('taking over a dead lock'))) {
    const g = readHolderFile(guard);
    if (g && holderState(g) === 'dead') breakDead(guard, g);
    return false;
  }
  try {
    if (readHolderFile(file)?.nonce !== dead.nonce) return false;
    if (replacement) fs.renameSync(replacement, file);
    else unlinkQuiet(file);
    return true;
  } finally {
    unlinkQuiet(guard);
  }
}

/**
 * Removes what a process killed in the middle of locking left: a record it was writing, a takeover
 * guard whose lock is gone (one still guarding its lock is broken by the next takeover instead).
 */
export function collect(file: string, rest: string): void {
  if (rest.startsWith('tmp.')) {
    const pid = Number(rest.split('.')[1]);
    try {
      process.kill(pid, 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') unlinkQuiet(file);
    }
    return;
  }
  const g = readHolderFile(file);
  const base = file.slice(0, file.lastIndexOf('.break.'));
  if (g && holderState(g) === 'dead' && readHolderFile(base)?.nonce !== rest.slice(6)) unlinkQuiet(file);
}
