/**
 * The crash harness: a batch of mixed edits run through the CLI and killed (SIGKILL) right after its
 * N-th write or fsync, for every N, with the writes since the last fsync kept (the process died) or
 * lost (the power went). Each crashed image is brought back three ways, by our `recover`, by
 * `e2fsck -fy` and (as root) by a kernel mount; each must then be clean for `e2fsck -fn` and hold
 * either the file system before the batch or the one after it, the same one whichever way.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Ext4Reader } from '../../src/fs/reader.js';
import { FileDevice } from '../../src/io/device.js';
import { editImage } from '../../src/edit/editor.js';
import { recoverJournal } from '../../src/edit/recover.js';
import { S_IFMT, S_IFDIR, S_IFLNK, S_IFREG } from '../../src/ext4/inode.js';
import { CLI, HAVE_E2FSPROGS, IS_ROOT, fsck, haveTool, oracleAvailable, run, scratchDir } from './oracle.js';
import { mount, umount } from './model.js';
import { rng } from './rng.js';

const TIME = '1700000000';
/** Where a crashed image the three recoveries disagree on is kept for study (outside the scratch dirs). */
const KEEP = path.join(os.tmpdir(), 'ext4wd-crash-kept');
function keep(name: string): string {
  fs.mkdirSync(KEEP, { recursive: true });
  return path.join(KEEP, name);
}

/** Every entry of the image as the reader sees it: type and permissions, owner, links, size, content, xattrs. */
export function imageState(img: string): string {
  return entriesState(img);
}

/** The file system's size in blocks. */
export function fsBlocks(img: string): number {
  const dev = FileDevice.open(img);
  try {
    return Ext4Reader.open(dev).blocksCount;
  } finally {
    dev.close();
  }
}

/** imageState with the file system's size in blocks first: what a resize changes besides the entries. */
export const sizedImageState = (img: string): string => `${fsBlocks(img)} blocks\n${imageState(img)}`;
function entriesState(img: string): string {
  const dev = FileDevice.open(img);
  try {
    const r = Ext4Reader.open(dev);
    const out: string[] = [];
    const walk = (ino: number, at: string, depth: number) => {
      if (depth > 64) throw new Error(`directory loop at ${at}`);
      const i = r.inode(ino);
      const type = i.mode & S_IFMT;
      const xattrs = r
        .xattrs(ino)
        .map((x) => `${x.name}=${Buffer.from(x.value).toString('hex')}`)
        .sort();
      let body = '';
      if (type === S_IFREG) body = createHash('sha256').update(r.readFileBytes(ino)).digest('hex');
      else if (type === S_IFLNK) body = Buffer.from(r.readLink(ino, i)).toString('utf8');
      out.push(
        [
          at || '/',
          i.mode.toString(8),
          `${i.uid}:${i.gid}`,
          i.linksCount,
          type === S_IFDIR ? '' : i.size,
          body,
          ...xattrs,
        ].join(' '),
      );
      if (type !== S_IFDIR) return;
      for (const e of r.readDir(ino, i)) {
        const name = Buffer.from(e.name).toString('utf8');
        if (name === '.' || name === '..' || (ino === 2 && name === 'lost+found')) continue;
        walk(e.inode, `${at}/${name}`, depth + 1);
      }
    };
    walk(2, '', 0);
    return out.sort().join('\n');
  } finally {
    dev.close();
  }
}

export interface CrashConfig {
  blockSize: number;
  /** Mount the image and use it before the batch (the journal then has the kernel's features and sequence). */
  kernelUsed: boolean;
  /** Also bring each crashed image back through a kernel mount. */
  kernelRecovery: boolean;
}

/** Makes the image the batch starts from: mkfs.ext4, optionally used by the kernel, then populated. */
function baseImage(work: string, cfg: CrashConfig): string {
  const img = path.join(work, 'base.img');
  run('truncate', ['-s', cfg.blockSize === 1024 ? '16M' : '48M', img]);
  const mk = run('mkfs.ext4', ['-q', '-F', '-b', String(cfg.blockSize), '-E', 'root_owner=0:0', img]);
  expect(mk.status, mk.stderr).toBe(0);
  if (cfg.kernelUsed) {
    const mnt = path.join(work, 'mnt-base');
    fs.mkdirSync(mnt);
    mount(img, mnt, false);
    try {
      for (let k = 0; k < 200; k++) fs.writeFileSync(path.join(mnt, `k${k}`), Buffer.alloc(k * 50, k));
      for (let k = 0; k < 200; k += 2) fs.rmSync(path.join(mnt, `k${k}`));
      run('sync', ['-f', mnt]);
    } finally {
      umount(mnt);
    }
  }
  const rand = rng(cfg.blockSize);
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
  editImage(
    img,
    (e) => {
      // An indexed directory: long names past one block's worth of entries.
      e.mkdir('/h');
      const count = cfg.blockSize === 1024 ? 150 : 400;
      for (let k = 0; k < count; k++) e.writeFile(`/h/${hname(k)}`, `entry ${k}\n`);
      // A big file in several extents (holes between its pieces).
      const pieces: (Uint8Array | { hole: number })[] = [];
      for (let k = 0; k < 12; k++) pieces.push(bytes(40_000), { hole: 3 * cfg.blockSize });
      e.writeFile('/big', pieces);
      e.writeFile('/over', bytes(20_000));
      e.writeFile('/x', 'with attributes\n');
      e.setXattr('/x', 'user.a', 'first');
      e.setXattr('/x', 'user.old', 'to be removed');
    },
    { timestamp: Number(TIME), sync: false },
  );
  const f = fsck(img);
  expect(f.status, f.output).toBe(0);
  expect(run('dumpe2fs', ['-h', img]).stdout).toMatch(/Directory Hash Seed/);
  return img;
}

const hname = (k: number) => `a-rather-long-file-name-in-an-indexed-directory-${String(k).padStart(4, '0')}`;

/** The batch: new files, overwrites, a big file deleted, mkdir/rename in an htree directory, xattrs. */
function script(work: string): string {
  const rand = rng(7);
  const host = (name: string, n: number) => {
    const p = path.join(work, name);
    fs.writeFileSync(
      p,
      Uint8Array.from({ length: n }, () => Math.floor(rand() * 256)),
    );
    return p;
  };
  const lines = [
    'write /new-small --data hello',
    `write /new-big --from ${host('new-big', 100_000)}`,
    `write /over --from ${host('over', 30_000)}`,
    'rm /big',
    'mkdir /h/sub --mode 750',
    `mv /h/${hname(10)} /h/sub/moved`,
    `mv /h/${hname(11)} /h/renamed-11`,
    `rm /h/${hname(20)}`,
    ...Array.from({ length: 8 }, (_, k) => `write /h/added-${k} --data ${k}`),
    'setfattr -n user.new -v value /x',
    'setfattr -x user.old /x',
    `setfattr -n user.large -v 0x${'ab'.repeat(700)} /h/sub`,
    'ln -s /over /h/link',
    'chmod 600 /new-small',
  ];
  const p = path.join(work, 'batch.txt');
  fs.writeFileSync(p, lines.join('\n') + '\n');
  return p;
}

function runBatch(img: string, batch: string, env: NodeJS.ProcessEnv) {
  return run(process.execPath, [CLI, 'edit', img, '--script', batch, '--timestamp', TIME], {
    env,
  });
}

function expectClean(img: string, how: string, n: number): void {
  const f = fsck(img);
  expect(f.status, `${how} after a crash at event ${n}:\n${f.output}`).toBe(0);
}

/** Runs the whole harness for one configuration; returns how many crash points it tried. */
export function crashHarness(work: string, cfg: CrashConfig): { events: number; old: number; new: number } {
  const base = baseImage(work, cfg);
  const batch = script(work);
  return crashEveryEvent(work, {
    base,
    run: (img, env) => runBatch(img, batch, env),
    kernelRecovery: cfg.kernelRecovery,
  });
}

/** A command run on a copy of `base`, crashed at each of its writes and fsyncs in turn. */
export interface CrashRun {
  base: string;
  run: (img: string, env: NodeJS.ProcessEnv) => ReturnType<typeof run>;
  /** What must be the old or the new one after recovery (default: every entry, imageState). */
  state?: (img: string) => string;
  /** Also bring each crashed image back through a kernel mount. */
  kernelRecovery: boolean;
}

/**
 * Crashes `c.run` after every write and fsync, in each loss mode; each crashed image, recovered by
 * us, by e2fsck -fy and (optionally) by the kernel, must be clean and in the old or the new state.
 */
export function crashEveryEvent(work: string, c: CrashRun): { events: number; old: number; new: number } {
  const { base } = c;
  const imageState = c.state ?? entriesState;
  const runBatch = (img: string, _batch: string, env: NodeJS.ProcessEnv) => c.run(img, env);
  const batch = '';
  const cfg = { kernelRecovery: c.kernelRecovery };
  const oldState = imageState(base);

  // The batch run to its end: the new state and how many writes and fsyncs it makes.
  const full = path.join(work, 'full.img');
  fs.copyFileSync(base, full);
  const done = runBatch(full, batch, { EXT4_WORKDISK_COUNT_IO: '1' });
  expect(done.status, done.stderr).toBe(0);
  const events = Number(/io events: (\d+)/.exec(done.stderr)?.[1]);
  expect(events).toBeGreaterThan(8);
  expectClean(full, 'the uncrashed batch', 0);
  const newState = imageState(full);
  expect(newState).not.toBe(oldState);

  const seen = { old: 0, new: 0 };
  const mnt = path.join(work, 'mnt');
  fs.mkdirSync(mnt, { recursive: true });
  for (let n = 1; n <= events; n++)
    for (const lose of ['', 'all', 'older', `random:${n}`]) {
      const crashed = path.join(work, 'crashed.img');
      fs.copyFileSync(base, crashed);
      const env: NodeJS.ProcessEnv = { EXT4_WORKDISK_CRASH_AFTER: String(n) };
      if (lose) env.EXT4_WORKDISK_CRASH_LOSE = lose;
      const r = runBatch(crashed, batch, env);
      expect(r.signal, `event ${n}: ${r.stderr}`).toBe('SIGKILL');
      const what = `crash at event ${n}/${events}${lose ? ` (unsynced writes lost: ${lose})` : ''}`;

      // 1. Our recover.
      const ours = path.join(work, 'ours.img');
      fs.copyFileSync(crashed, ours);
      recoverJournal(ours, { sync: false });
      expectClean(ours, `recover, ${what}`, n);
      const state = imageState(ours);
      expect([oldState, newState], what).toContain(state);
      if (state === oldState) seen.old++;
      else seen.new++;

      // 2. e2fsck -fy: the same state.
      const fy = path.join(work, 'fy.img');
      fs.copyFileSync(crashed, fy);
      const y = run('e2fsck', ['-fy', fy]);
      expect(y.status! & ~1, `e2fsck -fy, ${what}: ${y.stdout}`).toBe(0);
      expectClean(fy, `e2fsck -fy, ${what}`, n);
      const ys = imageState(fy);
      if (ys !== state) fs.copyFileSync(crashed, keep(`e2fsck-disagrees-${n}-${lose.replace(':', '')}.img`));
      expect(ys, `e2fsck -fy, ${what} (crashed image kept in ${KEEP})`).toBe(state);

      // 3. The kernel: mount (it replays), unmount: the same state.
      if (cfg.kernelRecovery) {
        // A new file each time: the loop device of the previous mount is torn down asynchronously, and
        // mount -o loop reuses a loop device still attached to the same file, page cache and all.
        const k = path.join(work, `kernel-${n}-${lose.replace(':', '')}.img`);
        fs.copyFileSync(crashed, k);
        mount(k, mnt, false);
        umount(mnt);
        expectClean(k, `a kernel mount, ${what}`, n);
        const ks = imageState(k);
        if (ks !== state) fs.copyFileSync(crashed, keep(`kernel-disagrees-${n}-${lose.replace(':', '')}.img`));
        expect(ks, `a kernel mount, ${what} (crashed image kept in ${KEEP})`).toBe(state);
        fs.rmSync(k);
      }
    }
  // Both outcomes happen: crashes before the commit point keep the old state, after it the new one.
  expect(seen.old).toBeGreaterThan(0);
  expect(seen.new).toBeGreaterThan(0);
  return { events, ...seen };
}

/**
 * The suite for one block size (one test file each, so vitest runs them side by side): on a fresh
 * mkfs.ext4 journal and on one the kernel has used.
 */
export function crashSuite(blockSize: number): void {
  const runIt = oracleAvailable('crash harness (e2fsprogs)', HAVE_E2FSPROGS);
  const kernel = oracleAvailable('crash harness kernel recovery (root, mount)', IS_ROOT && haveTool('mount'));
  const work = scratchDir(`ext4wd-crash-${blockSize}`);
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
  describe.runIf(runIt)(`crash at every write and fsync, ${blockSize}-byte blocks`, () => {
    for (const kernelUsed of [false, true])
      it.runIf(!kernelUsed || kernel)(
        kernelUsed ? 'a journal the kernel has used' : 'a fresh mkfs.ext4 journal',
        () => {
          const dir = path.join(work, kernelUsed ? 'used' : 'fresh');
          fs.mkdirSync(dir);
          const r = crashHarness(dir, { blockSize, kernelUsed, kernelRecovery: kernel });
          // Four ways to lose unsynced writes at each crash point.
          expect(r.old + r.new).toBe(4 * r.events);
        },
        600_000,
      );
  });
}
