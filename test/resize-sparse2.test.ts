/**
 * sparse_super2 (two backup superblocks, in groups s_backup_bgs[0] and [1]) across a resize: a grow
 * moves the second backup to the new last group (and gives a one-group file system its first backup
 * in group 1), freeing the old backup's blocks, as resize2fs does; a shrink drops a backup whose group
 * goes and moves the one in the old last group to the new last group (what lay in its room moved
 * first: file data, the group's own tables). dumpe2fs -h of ours and of resize2fs's result agree
 * ("Backup block groups", counts), e2fsck -fn and our check clean, content as before, the kernel
 * mounts the shrunk image and sees the same tree. The rule itself (backupGroupsFor) checked on its
 * own, both directions.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resizeImage } from '../src/resize/image.js';
import { editImage } from '../src/edit/editor.js';
import { backupGroupsFor } from '../src/ext4/geometry.js';
import {
  HAVE_E2FSPROGS,
  IS_ROOT,
  fsck,
  haveTool,
  oracleAvailable,
  run,
  scratchDir,
  mkfsImage,
} from './helpers/oracle.js';
import { mount, umount, view, xattrView } from './helpers/model.js';
import { imageState } from './helpers/crash.js';

const runIt = oracleAvailable('sparse_super2 resize oracle (e2fsprogs)', HAVE_E2FSPROGS);
const kernel = oracleAvailable('sparse_super2 shrink, the kernel (root, mount)', IS_ROOT && haveTool('mount'));
const work = scratchDir('ext4wd-sparse2');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const M = 2 ** 20;
const G = 2 ** 30;

const mkfs = (size: number, args: string[]): string => mkfsImage(work, size, ['-O', 'sparse_super2', ...args]);

function populate(img: string): void {
  editImage(
    img,
    (e) => {
      for (let k = 0; k < 20; k++) e.writeFile(`/f${k}`, new Uint8Array(3000 * k + 1).fill(k));
      e.mkdir('/d/e', { parents: true });
      e.writeFile('/d/e/x', 'x\n');
      e.setXattr('/d/e/x', 'user.a', 'b');
    },
    { timestamp: 1700000000, sync: false },
  );
}

const fields =
  /^(Block count|Inode count|Free inodes|Free blocks|Reserved GDT blocks|Filesystem features|Backup block groups):.*$/gm;
const head = (img: string) => run('dumpe2fs', ['-h', img]).stdout.match(fields)!.join('\n');

function expectClean(img: string, what: string): void {
  const f = fsck(img);
  expect(f.status, `${what}:\n${f.output}`).toBe(0);
}

describe('sparse_super2: where the backups go when the group count changes', () => {
  const geo = (groups: number, a: number, b: number) => ({
    superPolicy: 'sparse2' as const,
    backupGroups: [a, b] as [number, number],
    groupCount: groups,
  });
  it('grow: the second backup follows the last group; a one-group file system gains both', () => {
    expect(backupGroupsFor(geo(8, 1, 7), 384)).toEqual([1, 383]);
    expect(backupGroupsFor(geo(1, 0, 0), 32)).toEqual([1, 31]);
    expect(backupGroupsFor(geo(1, 0, 0), 2)).toEqual([1, 0]);
    expect(backupGroupsFor(geo(2, 1, 0), 3)).toEqual([1, 2]);
    // No second backup by choice (mkfs -E num_backup_sb=1) on a file system of 3 groups or more: none.
    expect(backupGroupsFor(geo(5, 1, 0), 9)).toEqual([1, 0]);
  });
  it('shrink: a backup whose group goes is dropped; one in the last group stays in the last group', () => {
    expect(backupGroupsFor(geo(384, 1, 383), 100)).toEqual([1, 99]);
    expect(backupGroupsFor(geo(384, 1, 200), 100)).toEqual([1, 0]);
    expect(backupGroupsFor(geo(384, 1, 50), 100)).toEqual([1, 50]);
    expect(backupGroupsFor(geo(8, 1, 7), 2)).toEqual([1, 0]);
    expect(backupGroupsFor(geo(8, 5, 7), 1)).toEqual([0, 0]);
  });
  it('other policies keep what they have', () => {
    expect(backupGroupsFor({ ...geo(8, 0, 0), superPolicy: 'sparse' }, 100)).toEqual([0, 0]);
  });
});

describe.runIf(runIt)('resize: sparse_super2 grow, as resize2fs', () => {
  // Without flex_bg resize2fs 1.47.0 frees the old backup group's block bitmap with its backup area
  // (e2fsck: "Block bitmap differences: +N"): there its free count is one above ours, the rest equal.
  const cases: [string, number, number, string[]][] = [
    ['1 KiB blocks, eight groups', 64 * M, 3 * G, []],
    ['1 KiB blocks, one group', M, 64 * M, ['-b', '1024']],
    ['4 KiB blocks, one group', 64 * M, 4 * G, ['-b', '4096']],
    ['4 KiB blocks, two groups', 160 * M, 2 * G, ['-b', '4096']],
    ['no flex_bg', 64 * M, 2 * G, ['-O', '^flex_bg']],
    ['gdt_csum', 64 * M, 2 * G, ['-O', '^metadata_csum,uninit_bg']],
    ['32-byte descriptors', 64 * M, 2 * G, ['-O', '^64bit']],
  ];
  for (const [name, size, to, args] of cases)
    it(`${name}: ${size / M} MiB to ${to / M} MiB`, () => {
      const ours = mkfs(size, args);
      if (size >= 16 * M) populate(ours);
      const theirs = `${ours}.resize2fs`;
      fs.copyFileSync(ours, theirs);
      const before = imageState(ours);
      resizeImage(ours, to, { sync: false });
      expectClean(ours, `${name} grown`);
      expect(imageState(ours)).toBe(before);
      fs.truncateSync(theirs, to);
      const r2 = run('resize2fs', [theirs]);
      expect(r2.status, r2.stderr).toBe(0);
      const noFree = (h: string) => (args.includes('^flex_bg') ? h.replace(/^Free blocks:.*$/m, '') : h);
      expect(noFree(head(ours)), name).toBe(noFree(head(theirs)));
      fs.rmSync(ours);
      fs.rmSync(theirs);
    }, 120_000);

  it('in steps (the reserved GDT blocks a few at a time): the backup follows the last group each step', () => {
    // Two groups: mkfs gives the second backup (group 1) and no first.
    const img = mkfs(16 * M, []);
    populate(img);
    const theirs = `${img}.resize2fs`;
    fs.copyFileSync(img, theirs);
    const before = imageState(img);
    const r = resizeImage(img, 4 * G, { sync: false, maxReservedPerStep: 4 });
    expect(r.steps).toBeGreaterThan(2);
    expectClean(img, 'grown in steps');
    expect(imageState(img)).toBe(before);
    fs.truncateSync(theirs, 4 * G);
    expect(run('resize2fs', [theirs]).status).toBe(0);
    const backups = (i: string) => /^Backup block groups:.*$/m.exec(run('dumpe2fs', ['-h', i]).stdout)![0];
    expect(backups(img)).toMatch(new RegExp(`\\b${r.newGroups - 1}\\b`));
    expect(backups(img)).toBe(backups(theirs));
  });
  it('meta_bg: the backup leaves a group holding a meta_bg descriptor block, which moves up into its place', () => {
    // 48 groups (the last one, 47, holds its meta group's last descriptor copy), 49 (group 48 the primary).
    for (const mid of [384 * M, 392 * M]) {
      const img = mkfs(30 * M, ['-O', '^resize_inode']);
      populate(img);
      const before = imageState(img);
      resizeImage(img, mid, { sync: false });
      expectClean(img, `grown to ${mid / M} MiB (meta_bg)`);
      const r = resizeImage(img, 900 * M, { sync: false });
      expectClean(img, `grown from ${mid / M} MiB to 900 MiB`);
      expect(imageState(img)).toBe(before);
      expect(head(img)).toMatch(new RegExp(`^Backup block groups:\\s+1 ${r.newGroups - 1}\\s*$`, 'm'));
      fs.rmSync(img);
    }
  });
});

describe.runIf(runIt)('resize: sparse_super2 shrink, as resize2fs', () => {
  // Counts but free blocks: the two move data differently (extent trees may end up a block apart).
  const counts = (img: string) => head(img).replace(/^Free blocks:.*$/m, '');
  const cases: [string, number, number, string[]][] = [
    ['1 KiB blocks: the backup follows the last group (data in its room moved)', 64 * M, 40 * M, []],
    [
      'no flex_bg: the tables of the new last group move out of the room of the backup',
      64 * M,
      40 * M,
      ['-O', '^flex_bg'],
    ],
    ['gdt_csum', 64 * M, 40 * M, ['-O', '^metadata_csum,uninit_bg']],
    ['4 KiB blocks: the second backup dropped (new last group 1)', 512 * M, 200 * M, ['-b', '4096']],
    ['4 KiB blocks: the backup follows to group 2', 512 * M, 300 * M, ['-b', '4096']],
  ];
  for (const [name, size, to, args] of cases)
    it(`${name}: ${size / M} MiB to ${to / M} MiB`, () => {
      const ours = mkfs(size, args);
      populate(ours);
      // Data in the new last group's first blocks, where the backup goes.
      editImage(ours, (e) => e.writeFile('/big', new Uint8Array(Math.floor(to * 0.6)).fill(3)), {
        timestamp: 1700000000,
        sync: false,
      });
      const theirs = `${ours}.resize2fs`;
      fs.copyFileSync(ours, theirs);
      const before = imageState(ours);
      resizeImage(ours, to, { sync: false });
      expectClean(ours, `${name} shrunk`);
      expect(imageState(ours)).toBe(before);
      // -f: resize2fs's own minimum estimate for these images lies above the size (ours holds the data).
      const r2 = run('resize2fs', ['-f', theirs, `${to / 1024}K`]);
      expect(r2.status, r2.stderr).toBe(0);
      expect(counts(ours), name).toBe(counts(theirs));
      // And back, by our grow (the backup follows the last group out again). Not by resize2fs 1.47.0:
      // moving this backup it also frees the block after the backup's area (e2fsck: "Block bitmap
      // differences: +N"), in use here; it does the same to a mkfs.ext4 -O sparse_super2,^flex_bg image.
      resizeImage(ours, size, { sync: false });
      expectClean(ours, `${name} grown again`);
      expect(imageState(ours)).toBe(before);
      fs.rmSync(ours);
      fs.rmSync(theirs);
    }, 120_000);

  it('to its minimum: clean, the second backup in the last group', () => {
    const img = mkfs(64 * M, []);
    populate(img);
    const before = imageState(img);
    const r = resizeImage(img, 'min', { sync: false });
    expectClean(img, 'sparse_super2 to its minimum');
    expect(imageState(img)).toBe(before);
    // Two groups left: the second backup would be group 1, the first's: none (as resize2fs leaves it).
    const want = r.newGroups > 2 ? `1 ${r.newGroups - 1}` : '1';
    expect(head(img)).toMatch(new RegExp(`^Backup block groups:\\s+${want}\\s*$`, 'm'));
  });
});

describe.runIf(runIt && kernel)('resize: sparse_super2 shrink, the kernel', () => {
  it('mounts the shrunk image, sees the same tree, writes to it', () => {
    const mnt = path.join(work, 'mnt');
    fs.mkdirSync(mnt, { recursive: true });
    const img = mkfs(64 * M, ['-O', '^flex_bg']);
    populate(img);
    mount(img, mnt, true);
    const before = [view(mnt, new Map()), xattrView(mnt)];
    umount(mnt);
    resizeImage(img, 40 * M, { sync: false });
    expectClean(img, 'shrunk');
    mount(img, mnt, false);
    try {
      expect([view(mnt, new Map()), xattrView(mnt)]).toEqual(before);
      fs.writeFileSync(path.join(mnt, 'after-mount'), Buffer.alloc(100_000, 1));
    } finally {
      umount(mnt);
    }
    expectClean(img, 'shrunk, mounted and written');
  });
});
