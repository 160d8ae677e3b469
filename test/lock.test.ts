/**
 * The image lock module (src/host/lock.ts): exclusive writers, shared readers, a dead holder taken over
 * (by exactly one of the processes that find it), a live holder and another host's lock never, nesting
 * in one process, release at exit, and a read-only directory. Other processes are node children that
 * take a lock through the built module (dist/host/lock.js).
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { lockForRead, lockForWrite } from '../src/host/lock.js';
import { holderState, newHolder, type Holder } from '../src/host/holder.js';
import { checkImage } from '../src/check/check.js';
import { formatImage } from '../src/mkfs/image.js';
import { Ext4Editor } from '../src/edit/editor.js';
import { IS_ROOT, run, scratchDir } from './helpers/oracle.js';

const LOCK_JS = path.resolve(__dirname, '../dist/host/lock.js');
const work = scratchDir('ext4wd-lock');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
let n = 0;
function image(): string {
  const img = path.join(work, `l${n++}.img`);
  formatImage(img, { sizeBytes: 8 * 2 ** 20, sync: false });
  return img;
}
const lockFiles = (img: string) =>
  fs.readdirSync(path.dirname(img)).filter((f) => f.startsWith(path.basename(img) + '.lock'));

/** A child that takes a lock, says so on stdout (one JSON line), holds it `holdMs` (-1: until killed). */
const CHILD = `
const { lockForWrite, lockForRead } = await import(process.env.LOCK_JS);
const img = process.env.LOCK_IMG, hold = Number(process.env.LOCK_HOLD);
const start = Number(process.env.LOCK_START ?? 0);
const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
while (Date.now() < start) sleep(1);
let l;
try {
  l = process.env.LOCK_MODE === 'w' ? lockForWrite(img, { wait: Number(process.env.LOCK_WAIT ?? 10) })
    : lockForRead(img, { wait: Number(process.env.LOCK_WAIT ?? 10) });
} catch (e) {
  console.log(JSON.stringify({ error: e.code }));
  process.exit(0);
}
if (process.env.LOCK_INSIDE) {
  // Mutual exclusion: nobody else may be inside while this process is.
  const fs = await import('node:fs');
  try { fs.writeFileSync(process.env.LOCK_INSIDE, String(process.pid), { flag: 'wx' }); }
  catch { console.log(JSON.stringify({ violation: true })); process.exit(0); }
  sleep(20);
  fs.unlinkSync(process.env.LOCK_INSIDE);
}
console.log(JSON.stringify({ held: true, tookOver: l.tookOverFrom?.nonce ?? null }));
if (hold < 0) for (;;) sleep(1000);
sleep(hold);
if (process.env.LOCK_KEEP !== '1') l.release();
`;

interface Child {
  proc: ChildProcess;
  first: Promise<Record<string, unknown>>;
  done: Promise<number | null>;
}
function child(img: string, mode: 'w' | 'r', holdMs: number, env: Record<string, string> = {}): Child {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
    env: { ...process.env, LOCK_JS, LOCK_IMG: img, LOCK_MODE: mode, LOCK_HOLD: String(holdMs), ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  const first = new Promise<Record<string, unknown>>((resolve, reject) => {
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)) as Record<string, unknown>);
    });
    proc.on('exit', () => reject(new Error(`child exited before answering: ${out}`)));
  });
  const done = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, first, done };
}

/** A pid that ran on this host and is gone (reaped). */
function deadPid(): number {
  const r = spawnSync('true');
  return r.pid;
}
function holderFile(img: string, h: Partial<Holder>): Holder {
  const rec: Holder = { ...newHolder('test holder'), ...h };
  fs.writeFileSync(`${img}.lock`, JSON.stringify(rec));
  return rec;
}
const inUse: unknown = expect.objectContaining({ code: 'IN_USE' });

describe('the writer lock', () => {
  it('is exclusive between processes: IN_USE at once naming the holder, or after --wait', async () => {
    const img = image();
    const c = child(img, 'w', -1);
    expect((await c.first).held).toBe(true);
    let msg = '';
    try {
      lockForWrite(img, { command: 'test' });
    } catch (e) {
      expect(e).toEqual(inUse);
      msg = (e as Error).message;
    }
    expect(msg).toContain(`process ${c.proc.pid} on host ${os.hostname()}`);
    expect(msg).toMatch(/since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/);
    const t0 = Date.now();
    expect(() => lockForWrite(img, { wait: 0.3 })).toThrowError(inUse);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    // A reader waits for it too, and gives up at its bound.
    expect(() => lockForRead(img, { wait: 0.1 })).toThrowError(inUse);
    // Killed (SIGKILL leaves the file): found dead, taken over.
    c.proc.kill('SIGKILL');
    await c.done;
    expect(lockFiles(img)).toContain(path.basename(img) + '.lock');
    const l = lockForWrite(img);
    expect(l.tookOverFrom?.pid).toBe(c.proc.pid);
    l.release();
    expect(lockFiles(img)).toEqual([]);
  });

  it('a writer that waits gets the lock once the holder releases it', async () => {
    const img = image();
    const c = child(img, 'w', 400);
    await c.first;
    const t0 = Date.now();
    const l = lockForWrite(img, { wait: 10 });
    expect(Date.now() - t0).toBeGreaterThan(100);
    expect(l.tookOverFrom).toBeUndefined();
    l.release();
    await c.done;
  });

  it('nests in one process; a process exit releases what it holds', async () => {
    const img = image();
    const a = lockForWrite(img);
    const b = lockForWrite(img);
    const r = lockForRead(img); // this process's own writer does not stop its reads
    r.release();
    a.release();
    expect(lockFiles(img)).toEqual([path.basename(img) + '.lock']);
    b.release();
    b.release();
    expect(lockFiles(img)).toEqual([]);
    const c = child(img, 'w', 0, { LOCK_KEEP: '1' });
    await c.first;
    expect(await c.done).toBe(0);
    expect(lockFiles(img)).toEqual([]);
  });
});

describe('stale and foreign holders', () => {
  it('a dead pid, or a live pid that started at another time, is taken over', () => {
    const img = image();
    const dead = holderFile(img, { pid: deadPid() });
    expect(holderState(dead)).toBe('dead');
    const l = lockForWrite(img);
    expect(l.tookOverFrom?.nonce).toBe(dead.nonce);
    l.release();
    // The pid reused by another process: our parent runs, but did not start when the record says.
    const reused = holderFile(img, { pid: process.ppid, start: 1 });
    expect(holderState(reused)).toBe('dead');
    const l2 = lockForWrite(img);
    expect(l2.tookOverFrom?.nonce).toBe(reused.nonce);
    l2.release();
  });

  it('a live holder is never taken over', async () => {
    const img = image();
    const sleeper = spawn('sleep', ['30']);
    await new Promise((r) => setTimeout(r, 50));
    const stat = fs.readFileSync(`/proc/${sleeper.pid}/stat`, 'utf8');
    const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const live = holderFile(img, { pid: sleeper.pid!, start, command: 'sleep' });
    expect(holderState(live)).toBe('alive');
    expect(() => lockForWrite(img, { wait: 0.2 })).toThrowError(inUse);
    expect(() => Ext4Editor.open(img)).toThrowError(inUse);
    expect((JSON.parse(fs.readFileSync(`${img}.lock`, 'utf8')) as Holder).nonce).toBe(live.nonce);
    sleeper.kill('SIGKILL');
    await new Promise((r) => sleeper.on('exit', r));
    const l = lockForWrite(img);
    expect(l.tookOverFrom?.nonce).toBe(live.nonce);
    l.release();
  });

  it('a lock left by an earlier boot of this host (a power cut mid-edit) is taken over, even with a live pid', () => {
    const img = image();
    const rec = holderFile(img, { pid: process.pid, bootId: '00000000-0000-0000-0000-000000000000' });
    expect(holderState(rec)).toBe('dead');
    const l = lockForWrite(img);
    expect(l.tookOverFrom?.nonce).toBe(rec.nonce);
    l.release();
    expect(fs.existsSync(`${img}.lock`)).toBe(false);
  });

  it("another host's, another pid namespace's or an unreadable lock is never broken, and the refusal says what to remove", () => {
    const img = image();
    for (const h of [{ host: 'elsewhere.example' }, { pid: process.pid, pidns: 'pid:[1]' }]) {
      const rec = holderFile(img, { pid: deadPid(), ...h });
      expect(holderState(rec)).toBe('foreign');
      expect(() => lockForWrite(img)).toThrowError(inUse);
      let msg = '';
      try {
        lockForRead(img, { wait: 0 });
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).toContain(`remove ${fs.realpathSync(img)}.lock`);
      expect((JSON.parse(fs.readFileSync(`${img}.lock`, 'utf8')) as Holder).nonce).toBe(rec.nonce);
    }
    fs.writeFileSync(`${img}.lock`, 'not a record');
    expect(() => lockForWrite(img)).toThrowError(inUse);
    fs.unlinkSync(`${img}.lock`);
  });

  it('the break race: of many processes that find one dead holder, one takes over, all get in one by one', async () => {
    for (let round = 0; round < 2; round++) {
      const img = image();
      const dead = holderFile(img, { pid: deadPid() });
      // A guard left by a breaker that died is no obstacle either.
      if (round === 1)
        fs.writeFileSync(
          `${img}.lock.break.${dead.nonce}`,
          JSON.stringify({ ...newHolder('dead breaker'), pid: deadPid() }),
        );
      const inside = path.join(work, `inside-${round}`);
      const start = String(Date.now() + 600);
      const kids = Array.from({ length: 6 }, () =>
        child(img, 'w', 0, { LOCK_START: start, LOCK_INSIDE: inside, LOCK_WAIT: '20' }),
      );
      const answers = await Promise.all(kids.map((k) => k.first));
      await Promise.all(kids.map((k) => k.done));
      expect(answers.filter((a) => a.violation)).toEqual([]);
      expect(answers.every((a) => a.held)).toBe(true);
      expect(answers.filter((a) => a.tookOver === dead.nonce)).toHaveLength(1);
      expect(lockFiles(img)).toEqual([]);
    }
  });
});

describe('readers', () => {
  it('share the lock; a writer waits for them to drain, a reader waits for a writer', async () => {
    const img = image();
    const r1 = child(img, 'r', 500);
    await r1.first;
    const mine = lockForRead(img, { wait: 0 }); // shared: no wait
    mine.release();
    const t0 = Date.now();
    const w = lockForWrite(img);
    expect(Date.now() - t0).toBeGreaterThan(150); // drained first
    w.release();
    await r1.done;

    const w1 = child(img, 'w', 500);
    await w1.first;
    expect(() => lockForRead(img, { wait: 0 })).toThrowError(inUse);
    const t1 = Date.now();
    const r = lockForRead(img, { wait: 10 });
    expect(Date.now() - t1).toBeGreaterThan(150);
    r.release();
    await w1.done;
  });

  it("a dead reader's file does not hold a writer", () => {
    const img = image();
    const file = `${fs.realpathSync(img)}.lock.r.1.x`;
    fs.writeFileSync(file, JSON.stringify({ ...newHolder('dead reader'), pid: deadPid() }));
    const t0 = Date.now();
    lockForWrite(img).release();
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(lockFiles(img)).toEqual([]);
  });

  it('in a read-only directory: readers go unlocked, writers are refused', () => {
    const dir = path.join(work, 'ro');
    fs.mkdirSync(dir);
    let mounted = false;
    if (IS_ROOT) {
      // Root ignores directory modes: a read-only mount it is.
      if (run('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', dir]).status !== 0) return;
      mounted = true;
    }
    try {
      const img = path.join(dir, 'ro.img');
      formatImage(img, { sizeBytes: 8 * 2 ** 20, sync: false });
      if (mounted) expect(run('mount', ['-o', 'remount,ro', dir]).status).toBe(0);
      else fs.chmodSync(dir, 0o555);
      expect(checkImage(img).clean).toBe(true);
      lockForRead(img).release();
      expect(() => lockForWrite(img)).toThrowError(expect.objectContaining({ code: 'IO_ERROR' }));
    } finally {
      if (mounted) run('umount', [dir]);
      else fs.chmodSync(dir, 0o755);
    }
  });
});
