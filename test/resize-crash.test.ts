/**
 * Crash safety of a grow (see helpers/crash.ts): `resize` killed after every write and fsync, with the
 * unsynced writes kept or lost, recovered by us, by e2fsck and by the kernel, is clean and holds the
 * old file system or the grown one (its size included), every file's content intact. One grow uses the
 * reserved GDT blocks (resize inode), one turns to meta_bg; a grow in two steps may also stop between
 * them, at a consistent file system of the intermediate size.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { editImage } from '../src/edit/editor.js';
import { recoverJournal } from '../src/edit/recover.js';
import { CLI, HAVE_E2FSPROGS, IS_ROOT, fsck, haveTool, oracleAvailable, run, scratchDir } from './helpers/oracle.js';
import { crashEveryEvent, fsBlocks, imageState, sizedImageState } from './helpers/crash.js';

const runIt = oracleAvailable('resize crash harness (e2fsprogs)', HAVE_E2FSPROGS);
const kernel = oracleAvailable('resize crash harness kernel recovery (root, mount)', IS_ROOT && haveTool('mount'));
const work = scratchDir('ext4wd-resize-crash');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const state = sizedImageState;

function base(dir: string, args: string[]): string {
  fs.mkdirSync(dir, { recursive: true });
  const img = path.join(dir, 'base.img');
  run('truncate', ['-s', '16M', img]);
  const mk = run('mkfs.ext4', ['-q', '-F', '-t', 'ext4', '-E', 'root_owner=0:0', ...args, img]);
  expect(mk.status, mk.stderr).toBe(0);
  editImage(
    img,
    (e) => {
      e.mkdir('/d');
      for (let k = 0; k < 60; k++) e.writeFile(`/d/file-with-a-long-name-${k}`, `content ${k}\n`.repeat(k + 1));
      e.writeFile('/big', new Uint8Array(200_000).fill(5));
      e.setXattr('/big', 'user.x', 'y');
    },
    { timestamp: 1700000000, sync: false },
  );
  return img;
}

const grow = (size: string) => (img: string, env: NodeJS.ProcessEnv) =>
  run(process.execPath, [CLI, 'resize', img, size], { env });

describe.runIf(runIt)('resize: crash at every write and fsync', () => {
  it('a grow through the reserved GDT blocks (resize inode)', () => {
    const dir = path.join(work, 'reserved');
    const img = base(dir, []);
    const r = crashEveryEvent(dir, { base: img, run: grow('160M'), state, kernelRecovery: kernel });
    expect(r.old + r.new).toBe(4 * r.events);
  }, 900_000);

  it('a grow that turns to meta_bg (no resize inode)', () => {
    const dir = path.join(work, 'meta');
    const img = base(dir, ['-O', '^resize_inode']);
    const r = crashEveryEvent(dir, { base: img, run: grow('160M'), state, kernelRecovery: kernel });
    expect(r.old + r.new).toBe(4 * r.events);
  }, 900_000);

  it('a grow in two steps (reserved GDT blocks, then meta_bg): old, between the steps, or new', () => {
    const dir = path.join(work, 'two-steps');
    // Reserved GDT blocks for 256 MiB: one, used by the first step; the second turns to meta_bg.
    const img = base(dir, ['-E', 'resize=262144']);
    const oldState = imageState(img);
    const full = path.join(dir, 'full.img');
    fs.copyFileSync(img, full);
    const done = grow('400M')(full, { EXT4_WORKDISK_COUNT_IO: '1' });
    expect(done.status, done.stderr).toBe(0);
    const events = Number(/io events: (\d+)/.exec(done.stderr)?.[1]);
    const sizes = new Set<number>();
    for (let n = 1; n <= events; n++)
      for (const lose of ['', 'all', `random:${n}`]) {
        const crashed = path.join(dir, 'crashed.img');
        fs.copyFileSync(img, crashed);
        const r = grow('400M')(crashed, { EXT4_WORKDISK_CRASH_AFTER: String(n), EXT4_WORKDISK_CRASH_LOSE: lose });
        expect(r.signal, `event ${n}: ${r.stderr}`).toBe('SIGKILL');
        recoverJournal(crashed, { sync: false });
        const f = fsck(crashed);
        expect(f.status, `recover after a crash at event ${n} (${lose}):\n${f.output}`).toBe(0);
        expect(imageState(crashed)).toBe(oldState);
        sizes.add(fsBlocks(crashed));
      }
    // The old size, the size after the first step (the 256 MiB the reserve covers), the new one.
    expect(sizes.has(16384) && sizes.has(409600)).toBe(true);
    expect(sizes.size).toBe(3);
  }, 900_000);
});
