/**
 * Crash safety of a shrink (see helpers/crash.ts): `resize --min` killed after every write and fsync,
 * with the unsynced writes kept or lost, recovered by us, by e2fsck and by the kernel, is clean and
 * holds the old file system or the shrunk one (its size included), every file's content intact. The
 * shrink moves the journal (mkfs.ext4 puts it mid-disk) and a file lying past the new end, then drops
 * the groups: a crash between those steps leaves the old size with the same content. A second image
 * has inodes in the groups the shrink removes: they move first, each in one operation. A third ends
 * inside a kept flex group's table area (-G 32): that group's inode table and bitmaps move first. A
 * fourth has sparse_super2: its second backup follows the last group, what lay in its room (the new last
 * group's own tables, file data) moved first. A fifth needs fewer descriptor blocks after the shrink:
 * the reserved GDT room is given up by the switch and taken back by a second transaction.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { editImage } from '../src/edit/editor.js';
import { CLI, HAVE_E2FSPROGS, IS_ROOT, haveTool, oracleAvailable, run, scratchDir } from './helpers/oracle.js';
import { crashEveryEvent, sizedImageState } from './helpers/crash.js';

const runIt = oracleAvailable('shrink crash harness (e2fsprogs)', HAVE_E2FSPROGS);
const kernel = oracleAvailable('shrink crash harness kernel recovery (root, mount)', IS_ROOT && haveTool('mount'));
const work = scratchDir('ext4wd-shrink-crash');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const state = sizedImageState;

function base(dir: string, args: string[]): string {
  fs.mkdirSync(dir, { recursive: true });
  const img = path.join(dir, 'base.img');
  run('truncate', ['-s', '24M', img]);
  const mk = run('mkfs.ext4', ['-q', '-F', '-t', 'ext4', '-E', 'root_owner=0:0', ...args, img]);
  expect(mk.status, mk.stderr).toBe(0);
  editImage(
    img,
    (e) => {
      for (let k = 0; k < 30; k++) e.writeFile(`/file-with-a-long-name-${k}`, `content ${k}\n`.repeat(k + 1));
      e.writeFile('/filler', new Uint8Array(9 * 2 ** 20).fill(1));
      e.writeFile('/big', new Uint8Array(600_000).fill(5));
      e.setXattr('/big', 'user.x', 'y');
    },
    { timestamp: 1700000000, sync: false },
  );
  editImage(img, (e) => e.rm('/filler'), { timestamp: 1700000000, sync: false });
  return img;
}

const shrink = (img: string, env: NodeJS.ProcessEnv) => run(process.execPath, [CLI, 'resize', img, '--min'], { env });

/**
 * Without flex_bg the top-level directories spread over every group: a shrink moves their inodes (and
 * what they hold, hard links among them) out of the groups it removes.
 */
function spreadBase(dir: string): string {
  const img = base(dir, ['-O', '^flex_bg']);
  editImage(
    img,
    (e) => {
      for (let k = 0; k < 6; k++) {
        e.mkdir(`/d${k}/sub`, { parents: true });
        e.writeFile(`/d${k}/sub/f`, `in d${k}\n`.repeat(50 * k + 1));
        for (let n = 0; n < 40; n++) e.writeFile(`/d${k}/entry-with-a-long-name-${n}`, `${k}.${n}\n`);
      }
      e.link('/d5/sub/f', '/hard-in-root');
      e.link('/d4/sub/f', '/d5/linked');
    },
    { timestamp: 1700000000, sync: false },
  );
  return img;
}

/**
 * 64 groups of 512 blocks, 32 to a flex group: group 32 holds the bitmaps of 32 groups, then its own
 * inode table (at +64, 32 blocks). Returns the image and a size ending inside that table (32-byte
 * descriptors, ^64bit: two descriptor blocks, both kept).
 */
function tablesBase(dir: string): { img: string; size: number } {
  fs.mkdirSync(dir, { recursive: true });
  const img = path.join(dir, 'base.img');
  run('truncate', ['-s', '32M', img]);
  const mk = run('mkfs.ext4', [
    '-q',
    '-F',
    '-t',
    'ext4',
    '-E',
    'root_owner=0:0',
    '-b',
    '1024',
    '-g',
    '512',
    '-G',
    '32',
    '-O',
    '^64bit',
    img,
  ]);
  expect(mk.status, mk.stderr).toBe(0);
  editImage(
    img,
    (e) => {
      // The editor spreads directories over the flex groups: some inodes land in group 32.
      for (let k = 0; k < 6; k++) {
        e.mkdir(`/d${k}`);
        e.writeFile(`/d${k}/f`, `in d${k}\n`.repeat(300 * k + 1));
      }
    },
    { timestamp: 1700000000, sync: false },
  );
  return { img, size: (1 + 32 * 512 + 90) * 1024 };
}

describe.runIf(runIt)('resize: shrink, crash at every write and fsync', () => {
  it('a shrink moving the journal and a file (resize inode kept)', () => {
    const dir = path.join(work, 'reserved');
    const img = base(dir, []);
    const r = crashEveryEvent(dir, { base: img, run: shrink, state, kernelRecovery: kernel });
    expect(r.old + r.new).toBe(4 * r.events);
  }, 1_800_000);

  it('a shrink that turns a descriptor block back into a reserved GDT block (resize_inode)', () => {
    // 48 groups of 512 blocks, 32-byte descriptors: two descriptor blocks, one after the shrink. The
    // kernel, mounting with the old superblock, still counts 48 groups after it replays the switch.
    const dir = path.join(work, 'retired');
    const img = base(dir, ['-b', '1024', '-g', '512', '-O', '^64bit']);
    const copy = path.join(dir, 'copy.img');
    fs.copyFileSync(img, copy);
    const done = run(process.execPath, [CLI, 'resize', copy, '--min', '--json']);
    expect(done.status, done.stderr).toBe(0);
    const j = JSON.parse(done.stdout) as { oldGroups: number; newGroups: number };
    expect(Math.ceil(j.newGroups / 32)).toBeLessThan(Math.ceil(j.oldGroups / 32));
    fs.rmSync(copy);
    const r = crashEveryEvent(dir, { base: img, run: shrink, state, kernelRecovery: kernel });
    expect(r.old + r.new).toBe(4 * r.events);
  }, 1_800_000);

  it('a shrink moving inodes out of the removed groups', () => {
    const dir = path.join(work, 'inodes');
    const img = spreadBase(dir);
    // Uncrashed, the shrink does move inodes.
    const copy = path.join(dir, 'copy.img');
    fs.copyFileSync(img, copy);
    const done = run(process.execPath, [CLI, 'resize', copy, '--min', '--json']);
    expect(done.status, done.stderr).toBe(0);
    expect((JSON.parse(done.stdout) as { inodesMoved: number }).inodesMoved).toBeGreaterThan(0);
    fs.rmSync(copy);
    const r = crashEveryEvent(dir, { base: img, run: shrink, state, kernelRecovery: kernel });
    expect(r.old + r.new).toBe(4 * r.events);
  }, 1_800_000);

  it('a shrink moving the inode table and bitmaps of a kept group from past the new end', () => {
    const dir = path.join(work, 'tables');
    const { img, size } = tablesBase(dir);
    // Uncrashed, the shrink does move a table.
    const copy = path.join(dir, 'copy.img');
    fs.copyFileSync(img, copy);
    const done = run(process.execPath, [CLI, 'resize', copy, String(size), '--json']);
    expect(done.status, done.stderr).toBe(0);
    expect((JSON.parse(done.stdout) as { tablesMoved: number }).tablesMoved).toBeGreaterThan(0);
    fs.rmSync(copy);
    const to = (i: string, env: NodeJS.ProcessEnv) => run(process.execPath, [CLI, 'resize', i, String(size)], { env });
    const r = crashEveryEvent(dir, { base: img, run: to, state, kernelRecovery: kernel });
    expect(r.old + r.new).toBe(4 * r.events);
  }, 1_800_000);

  it('a sparse_super2 shrink moving the second backup into the new last group', () => {
    const dir = path.join(work, 'sparse2');
    fs.mkdirSync(dir, { recursive: true });
    const img = path.join(dir, 'base.img');
    run('truncate', ['-s', '16M', img]);
    // 16 groups of 1 MiB, backups in groups 1 and 15; group 9's own tables at its start.
    const mk = run(
      'mkfs.ext4',
      ['-q', '-F', '-t', 'ext4', '-E', 'root_owner=0:0', '-b', '1024', '-g', '1024'].concat([
        '-O',
        'sparse_super2,^flex_bg',
        img,
      ]),
    );
    expect(mk.status, mk.stderr).toBe(0);
    editImage(
      img,
      (e) => {
        for (let k = 0; k < 10; k++) e.writeFile(`/f${k}`, new Uint8Array(40_000 + k).fill(k + 1));
        e.setXattr('/f3', 'user.x', 'y');
        // The fillers go: /big lies in group 9 just past its tables, where the backup's room will be.
        e.writeFile('/filler', new Uint8Array(4_250_000).fill(1));
        e.writeFile('/filler2', new Uint8Array(900_000).fill(1));
        e.writeFile('/mid', new Uint8Array(400_000).fill(5));
        e.writeFile('/big', new Uint8Array(900_000).fill(7));
      },
      { timestamp: 1700000000, sync: false },
    );
    editImage(
      img,
      (e) => {
        e.rm('/filler');
        e.rm('/filler2');
      },
      { timestamp: 1700000000, sync: false },
    );
    const size = String(10 * 1024 * 1024);
    const to = (i: string, env: NodeJS.ProcessEnv) => run(process.execPath, [CLI, 'resize', i, size], { env });
    const r = crashEveryEvent(dir, { base: img, run: to, state, kernelRecovery: kernel });
    expect(r.old + r.new).toBe(4 * r.events);
  }, 1_800_000);
});
