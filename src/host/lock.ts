/**
 * Image locks between our own processes: one writer at a time, readers never beside a writer. This
 * module owns the protocol; the file primitives it stands on are in lock-files.ts.
 *
 * Node has no flock/fcntl, so the locks are files beside the image (the image's real path, links
 * resolved), each holding a {@link Holder} record, each created whole or not at all (written under a
 * temporary name, then hard-linked to its name: link fails if the name exists, so no one ever reads a
 * half-written record):
 * - `IMAGE.lock`: the writer's exclusive lock, held from before the metadata is read until the last
 *   write is durable (open to close).
 * - `IMAGE.lock.r.PID.NONCE`: one per reader (a shared lock). Writer-preferring: a writer first makes
 *   `IMAGE.lock`, then waits for the readers there to drain; a reader makes its file, then looks for
 *   `IMAGE.lock` and, finding a live one, removes its own file and waits (bounded). Both sides write
 *   first and look second, so at least one of them sees the other.
 * - `IMAGE.lock.break.NONCE`: the guard of the one takeover of the dead holder whose nonce it names.
 *   Two processes finding the same dead holder both try to make it; the one that does re-reads
 *   `IMAGE.lock`, finds the same nonce (only its holder, who is dead, or the guard's maker can remove
 *   it) and renames its own record over it, so the lock passes straight from the dead to the new
 *   writer; the other retries and finds a live lock. A guard left by a breaker that died is itself
 *   broken the same way, under a guard named after its own nonce.
 * - `IMAGE.lock.tmp.PID.NONCE`: a record being written (linked to one of the names above, then removed).
 *
 * A holder is taken over only when it is provably gone from this host (see holder.ts); a lock from
 * another host is never broken (multiple-mount protection, where the image has it, is what guards
 * against other hosts). Locks of this process nest (an editor's open recovers the journal through
 * another editor); a process exit removes what it holds; a SIGKILL leaves the files, found dead later.
 * Where the image's directory cannot take a file (read-only), readers go unlocked (no writer can lock
 * there either) and writers are refused. Block and character devices are not locked here.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Ext4Error } from '../core/errors.js';
import { newHolder, defaultCommand, holderState, describeHolder, type Holder } from './holder.js';
import {
  unlinkQuiet,
  readHolderFile,
  readWriter,
  pause,
  createExclusive,
  linkRecord,
  breakDead,
  collect,
} from './lock-files.js';

export interface LockOptions {
  /**
   * Seconds to wait for another process's lock before failing with IN_USE: 0 fails at once, Infinity
   * waits without limit. Default: writers 0, readers {@link READER_WAIT} (readers wait for a writer).
   */
  wait?: number;
  /** What the lock record says this process runs (default: the script and its first argument). */
  command?: string;
}

/** A held lock; `release` is idempotent. */
export interface ImageLock {
  release(): void;
  /** The writer whose lock was taken over because it had died (its journal may need recovery). */
  readonly tookOverFrom?: Holder;
}

/** Readers wait this long (seconds) for a writer by default: edits are short, a lock held longer is news. */
export const READER_WAIT = 60;
/** A writer waits at least this long (seconds) for readers to drain before failing: reads are short. */
export const READER_DRAIN = 30;

let defaults: LockOptions = {};

/** Sets the lock options used where a caller passes none (the CLI's --wait and command name). */
export function setLockDefaults(o: LockOptions): void {
  defaults = { ...o };
}

/** `--wait[=SECONDS]`: no value waits without limit. */
export function parseWait(value: string | undefined): number {
  if (value === undefined || value === '') return Infinity;
  if (!/^\d+(\.\d+)?$/.test(value)) throw new Ext4Error('BAD_OPTION', `--wait=${value}: expected seconds`);
  return Number(value);
}

interface Held {
  writer: number;
  readers: number;
  /** This process's files for the image, removed at release and at exit. */
  writerFile?: { file: string; nonce: string };
  readerFile?: string;
}
/** Locks this process holds, by lock base path (nesting counts). */
const held = new Map<string, Held>();
let exitHook = false;

/** Where an image's lock files go (undefined: not locked, see the module comment). */
function lockBase(image: string): string | undefined {
  let real: string;
  try {
    real = fs.realpathSync.native(image);
    if (!fs.statSync(real).isFile()) return undefined;
  } catch {
    return undefined; // the open that follows reports the missing image itself
  }
  return `${real}.lock`;
}

function deadline(wait: number): number {
  return wait === Infinity ? Infinity : Date.now() + wait * 1000;
}

function inUse(image: string, h: Holder, base: string, what = 'in use by'): Ext4Error {
  const foreign = holderState(h) === 'foreign';
  return new Ext4Error(
    'IN_USE',
    `${image}: ${what} ${describeHolder(h)}; wait for it with --wait` +
      (foreign
        ? ` (a lock from another host or boot is never taken over: if that process is gone, remove ${base})`
        : ''),
    { path: image },
  );
}

/** A lock file that cannot be made: IO_ERROR (an Ext4Error passes through). */
function noLockFile(image: string, base: string, e: unknown): Ext4Error {
  if (e instanceof Ext4Error) return e;
  const code = (e as NodeJS.ErrnoException).code;
  return new Ext4Error(
    'IO_ERROR',
    `${image}: cannot create the lock file ${base} (${code ?? (e as Error).message})` +
      (unwritableDir(e) ? "; editing needs write access to the image's directory" : ''),
    { path: image, cause: e },
  );
}

const unwritableDir = (e: unknown) => ['EACCES', 'EPERM', 'EROFS'].includes((e as NodeJS.ErrnoException).code ?? '');

function entry(base: string): Held {
  let h = held.get(base);
  if (!h) {
    h = { writer: 0, readers: 0 };
    held.set(base, h);
  }
  if (!exitHook) {
    exitHook = true;
    process.once('exit', releaseAll);
  }
  return h;
}

function releaser(base: string, kind: 'writer' | 'readers'): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    const h = held.get(base);
    if (!h || --h[kind] > 0) return;
    if (kind === 'writer' && h.writerFile) {
      if (readHolderFile(h.writerFile.file)?.nonce === h.writerFile.nonce) unlinkQuiet(h.writerFile.file);
      h.writerFile = undefined;
    }
    if (kind === 'readers' && h.readerFile) {
      unlinkQuiet(h.readerFile);
      h.readerFile = undefined;
    }
    if (!h.writer && !h.readers) held.delete(base);
  };
}

function releaseAll(): void {
  for (const h of held.values()) {
    if (h.writerFile && readHolderFile(h.writerFile.file)?.nonce === h.writerFile.nonce) unlinkQuiet(h.writerFile.file);
    if (h.readerFile) unlinkQuiet(h.readerFile);
  }
  held.clear();
}

/** The readers' files of other processes still there (dead readers' files are removed on the way). */
function liveReaders(base: string): Holder[] {
  const dir = path.dirname(base);
  const name0 = path.basename(base);
  const out: Holder[] = [];
  for (const name of fs.readdirSync(dir)) {
    if (!name.startsWith(name0 + '.')) continue;
    const file = path.join(dir, name);
    const rest = name.slice(name0.length + 1);
    if (rest.startsWith('tmp.') || rest.startsWith('break.')) {
      collect(file, rest);
      continue;
    }
    if (!rest.startsWith('r.')) continue;
    const h = readHolderFile(file);
    if (!h) continue;
    if (h.pid === process.pid && holderState(h) === 'alive') continue;
    if (holderState(h) === 'dead') unlinkQuiet(file);
    else out.push(h);
  }
  return out;
}

/**
 * Takes the exclusive lock on an image for writing: refused with IN_USE while another live process
 * holds it (or waits, `wait` seconds), then waits for readers to drain. A dead holder's lock is taken
 * over (`tookOverFrom` names it: its journal may need recovery).
 */
export function lockForWrite(image: string, opts: LockOptions = {}): ImageLock {
  const base = lockBase(image);
  if (!base) return { release() {} };
  const mine = held.get(base);
  if (mine?.writer) {
    mine.writer++;
    return { release: releaser(base, 'writer') };
  }
  const o = { ...defaults, ...opts };
  const until = deadline(o.wait ?? 0);
  const me = newHolder(o.command ?? defaultCommand());
  const tmp = `${base}.tmp.${process.pid}.${me.nonce}`;
  let tookOverFrom: Holder | undefined;
  try {
    fs.writeFileSync(tmp, JSON.stringify(me) + '\n', { flag: 'wx', mode: 0o644 });
  } catch (e) {
    throw noLockFile(image, base, e);
  }
  try {
    for (;;) {
      // The record just written becomes the lock itself (one file made, not two).
      if (linkRecord(tmp, base, me)) break;
      const h = readWriter(base);
      if (!h) continue; // released in between
      if (holderState(h) === 'dead') {
        if (breakDead(base, h, tmp)) {
          tookOverFrom = h;
          break;
        }
        continue;
      }
      if (Date.now() >= until) throw inUse(image, h, base);
      pause();
    }
  } catch (e) {
    throw noLockFile(image, base, e);
  } finally {
    unlinkQuiet(tmp);
  }
  const e = entry(base);
  e.writer = 1;
  e.writerFile = { file: base, nonce: me.nonce };
  const release = releaser(base, 'writer');
  // Readers that came first finish; new ones see the lock and wait.
  const drainUntil = Math.max(until, Date.now() + READER_DRAIN * 1000);
  for (;;) {
    const readers = liveReaders(base);
    if (!readers.length) break;
    if (Date.now() >= drainUntil) {
      release();
      throw inUse(image, readers[0]!, base, 'being read by');
    }
    pause();
  }
  return { release, tookOverFrom };
}

/**
 * Takes a shared lock on an image for reading: waits (`wait` seconds, default {@link READER_WAIT})
 * while another live process holds the writer's lock, then fails with IN_USE. A dead writer's lock
 * does not stop a reader (the next writer takes it over); neither does this process's own.
 */
export function lockForRead(image: string, opts: LockOptions = {}): ImageLock {
  const base = lockBase(image);
  if (!base) return { release() {} };
  const mine = held.get(base);
  if (mine?.writer || mine?.readers) {
    const kind = mine.writer ? 'writer' : 'readers';
    mine[kind]++;
    return { release: releaser(base, kind) };
  }
  const o = { ...defaults, ...opts };
  const until = deadline(o.wait ?? READER_WAIT);
  const me = newHolder(o.command ?? defaultCommand());
  const file = `${base}.r.${process.pid}.${me.nonce}`;
  for (;;) {
    try {
      createExclusive(file, me);
    } catch (e) {
      // Nobody can take the writer's lock in a directory nobody can write.
      if (unwritableDir(e)) return { release() {} };
      throw noLockFile(image, file, e);
    }
    const h = readWriter(base);
    if (!h || holderState(h) === 'dead') break;
    unlinkQuiet(file);
    if (Date.now() >= until) throw inUse(image, h, base);
    pause();
  }
  const e = entry(base);
  e.readers = 1;
  e.readerFile = file;
  return { release: releaser(base, 'readers') };
}

/** Runs `fn` under a reader's lock on `image`. */
export function underReadLock<T>(image: string, opts: LockOptions | undefined, fn: () => T): T {
  const lock = lockForRead(image, opts);
  try {
    return fn();
  } finally {
    lock.release();
  }
}
