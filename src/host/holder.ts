/**
 * Who holds a lock file, and whether that holder still runs: the record each lock file carries (process
 * id, host, boot id, pid namespace, process start time, command, since, a nonce naming this one
 * acquisition) and the liveness test that lets a dead holder's lock be taken over and never a live one's.
 *
 * A pid alone does not name a process: pids are reused, a host reboots, a container has its own pid
 * numbers. So a holder is dead only when it is provably gone from this host: it ran in an earlier boot
 * (another boot id), or in this boot its pid no longer runs, runs as a zombie, or runs a process that
 * started at another time (/proc/PID/stat field 22). A holder from another host name, or from another
 * pid namespace of this boot, is "foreign": nothing here can tell whether it runs, so its lock is
 * never broken automatically.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

/** The content of a lock file (JSON). */
export interface Holder {
  pid: number;
  host: string;
  /** /proc/sys/kernel/random/boot_id: a reboot makes every pid of the old boot dead. */
  bootId?: string;
  /** The pid namespace (/proc/self/ns/pid link): pids from another namespace mean nothing here. */
  pidns?: string;
  /** Process start time in clock ticks since boot (/proc/PID/stat field 22): tells a reused pid. */
  start?: number;
  /** What the holder runs (for the refusal message). */
  command: string;
  /** When the lock was taken (ISO 8601, seconds). */
  since: string;
  /** Unique per acquisition: the key of the one takeover of this lock, once its holder is dead. */
  nonce: string;
}

/** alive: runs (or cannot be shown not to); dead: gone from this host; foreign: another host or namespace. */
export type HolderState = 'alive' | 'dead' | 'foreign';

function readText(p: string): string | undefined {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return undefined;
  }
}

let self: Omit<Holder, 'command' | 'since' | 'nonce'> | undefined;

/** This process's identity (computed once). */
function selfIdentity(): Omit<Holder, 'command' | 'since' | 'nonce'> {
  if (self) return self;
  let pidns: string | undefined;
  try {
    pidns = fs.readlinkSync('/proc/self/ns/pid');
  } catch {
    pidns = undefined;
  }
  self = {
    pid: process.pid,
    host: os.hostname(),
    bootId: readText('/proc/sys/kernel/random/boot_id'),
    pidns,
    start: procStat(process.pid)?.start,
  };
  return self;
}

/** A new record for this process: `command` is what a refused process is told the holder runs. */
export function newHolder(command: string): Holder {
  return {
    ...selfIdentity(),
    command,
    since: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    nonce: randomBytes(8).toString('hex'),
  };
}

/** The default command name: the script and its first argument (`ext4-workdisk cp-in`, `vitest run`). */
export function defaultCommand(): string {
  const script = process.argv[1] ? path.basename(process.argv[1]).replace(/\.(c|m)?js$/, '') : 'node';
  return [script === 'cli' ? 'ext4-workdisk' : script, process.argv[2]].filter(Boolean).join(' ');
}

/** State (field 3) and start time (field 22) from /proc/PID/stat; undefined where there is no /proc. */
function procStat(pid: number): { state: string; start: number } | undefined {
  const s = readText(`/proc/${pid}/stat`);
  if (!s) return undefined;
  // The command name (field 2) is in parentheses and may itself hold spaces and parentheses.
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  const start = Number(f[19]);
  return f[0] && Number.isFinite(start) ? { state: f[0], start } : undefined;
}

/** Whether a holder still runs (see the module comment for what "dead" requires). */
export function holderState(h: Holder): HolderState {
  const me = selfIdentity();
  if (h.host !== me.host) return 'foreign';
  // Another boot of this host: every process of that boot is gone (a power cut or crash mid-edit is
  // exactly when a lock is left behind, and the journal it may have left is recovered on takeover).
  // Only two machines sharing one host name and one image file could fool this; that is documented.
  if (h.bootId !== undefined && me.bootId !== undefined && h.bootId !== me.bootId) return 'dead';
  if (h.pidns !== undefined && me.pidns !== undefined && h.pidns !== me.pidns) return 'foreign';
  if (!Number.isInteger(h.pid) || h.pid <= 0) return 'alive';
  try {
    process.kill(h.pid, 0);
  } catch (e) {
    // EPERM: it runs, as another user.
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return 'dead';
  }
  const st = procStat(h.pid);
  if (!st) return 'alive';
  // A killed process its parent has not reaped yet still answers kill(pid, 0).
  if (st.state === 'Z' || st.state === 'X') return 'dead';
  if (h.start !== undefined && st.start !== h.start) return 'dead';
  return 'alive';
}

/** Parses a lock file's content; undefined for anything that is not a holder record. */
export function parseHolder(text: string): Holder | undefined {
  try {
    const h = JSON.parse(text) as Partial<Holder>;
    if (typeof h.pid !== 'number' || typeof h.host !== 'string' || typeof h.nonce !== 'string') return undefined;
    return { command: '?', since: '?', ...h } as Holder;
  } catch {
    return undefined;
  }
}

/** One line naming a holder: `process 1234 on host h (ext4-workdisk cp-in, since 2026-12-07T05:01:02Z)`. */
export function describeHolder(h: Holder): string {
  return `process ${h.pid} on host ${h.host} (${h.command}, since ${h.since})`;
}
