/**
 * `tuneImage` against tune2fs: for each change, `dumpe2fs -h` of our result equals tune2fs's result on
 * a copy of the same image, field for field, apart from what differs between any two writers (the
 * times and lifetime writes, the superblock checksum over them, and the journal's own state, which our
 * first commit brings to the kernel's format); with a full checksum rewrite the whole `dumpe2fs` (every
 * group's descriptor and bitmap checksums) matches too. Every result is clean for e2fsck -fn and our
 * check, and reads back the same tree. Also: the UUID words, the refusals, gdt_csum and ext2 images.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tuneImage, type TuneChanges } from '../src/edit/tune.js';
import { resizeImage } from '../src/resize/image.js';
import { editImage } from '../src/edit/editor.js';
import { formatImage } from '../src/mkfs/image.js';
import { hostDirectorySource } from '../src/tree/sources/host.js';
import { parseInterval, planTune, timeUuid, uuidBytes, maxMountValue } from '../src/edit/tune-values.js';
import { emptySuperblock } from '../src/ext4/superblock.js';
import { formatUuid } from '../src/core/bytes.js';
import { crc32c } from '../src/core/crc32c.js';
import { HAVE_E2FSPROGS, fsck, oracleAvailable, run, scratchDir } from './helpers/oracle.js';
import { imageState } from './helpers/crash.js';

const runIt = oracleAvailable('tune suite (e2fsprogs, tune2fs)', HAVE_E2FSPROGS);
const work = scratchDir('ext4wd-tune');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** Lines any two writers of the same change differ in. */
const VOLATILE =
  /^(Last write time|Last mount time|Lifetime writes|Checksum|Journal features|Journal sequence|Journal checksum type|Journal checksum):/;
function header(img: string): string {
  const r = run('dumpe2fs', ['-h', img]);
  expect(r.status, r.stderr).toBe(0);
  return r.stdout
    .split('\n')
    .filter((l) => !VOLATILE.test(l))
    .join('\n');
}
function groups(img: string): string {
  const out = run('dumpe2fs', [img]).stdout;
  return out.slice(out.indexOf('\nGroup 0:'));
}
/** The file system as a backup superblock (and its descriptors) describe it. */
function backupView(img: string, sbBlock: number, blockSize: number): string {
  // dumpe2fs may stop at the bitmaps of groups the backup marks uninitialized: its output to there counts.
  const r = run('dumpe2fs', ['-o', `superblock=${sbBlock}`, '-o', `blocksize=${blockSize}`, img]);
  return `${r.status}\n${r.stdout}${r.stderr}`
    .replaceAll(img, 'IMG')
    .split('\n')
    .filter((l) => !VOLATILE.test(l))
    .join('\n');
}
function field(img: string, name: string): string {
  return new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(run('dumpe2fs', ['-h', img]).stdout)?.[1] ?? '';
}
function expectClean(img: string, what: string): void {
  const f = fsck(img);
  expect(f.status, `${what}:\n${f.output}`).toBe(0);
}

let n = 0;
function copy(src: string): string {
  const p = path.join(work, `t${n++}.img`);
  fs.copyFileSync(src, p);
  return p;
}

/** A metadata_csum image with an htree directory, attribute blocks, a depth-1 extent tree, a symlink. */
function richImage(blockSize: 1024 | 4096): string {
  const dir = path.join(work, `tree-${blockSize}`);
  fs.mkdirSync(path.join(dir, 'h'), { recursive: true });
  for (let k = 0; k < 300; k++)
    fs.writeFileSync(path.join(dir, 'h', `a-long-name-for-an-indexed-directory-${k}`), `${k}\n`);
  fs.mkdirSync(path.join(dir, 'etc/deep/er'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'etc/deep/er/file'), 'deep\n');
  fs.symlinkSync('/etc/deep/er/file', path.join(dir, 'link'));
  const img = path.join(work, `rich-${blockSize}.img`);
  if (blockSize === 1024) formatImage(img, { sizeBytes: 48 << 20, source: hostDirectorySource(dir), sync: false });
  else {
    run('truncate', ['-s', '300M', img]);
    const mk = run('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', dir, img]);
    expect(mk.status, mk.stderr).toBe(0);
  }
  editImage(
    img,
    (e) => {
      const pieces: (Uint8Array | { hole: number })[] = [];
      for (let k = 0; k < 10; k++) pieces.push(new Uint8Array(3 * blockSize).fill(k + 1), { hole: 2 * blockSize });
      e.writeFile('/fragmented', pieces);
      e.setXattr('/etc/deep/er/file', 'user.big', 'x'.repeat(blockSize / 2));
      e.setXattr('/h', 'user.small', 'y');
      // mkfs.ext4 -d leaves directories linear: the editor indexes one as it grows past a block.
      e.mkdir('/h2');
      for (let k = 0; k < 300; k++) e.writeFile(`/h2/another-long-name-for-an-indexed-directory-${k}`, '');
    },
    { sync: false },
  );
  expect(run('debugfs', ['-R', 'stat /fragmented', img]).stdout).toMatch(/\(ETB0\)/);
  const ht = run('debugfs', ['-R', `htree ${blockSize === 1024 ? '/h' : '/h2'}`, img]);
  expect(ht.stdout, ht.stderr).toMatch(/Root node dump/);
  expectClean(img, 'the rich image');
  return img;
}

const U = '11111111-2222-3333-4444-555555555555';

/** Our change and tune2fs's on copies of `base`: same header; clean; same tree. */
function parity(
  base: string,
  changes: TuneChanges,
  tune2fsArgs: string[],
  full = false,
  backup?: [number, number],
): string {
  const ours = copy(base);
  const theirs = copy(base);
  tuneImage(ours, changes, { sync: false });
  const t = run('tune2fs', [...tune2fsArgs, theirs]);
  expect(t.status, t.stderr).toBe(0);
  expect(header(ours)).toBe(header(theirs));
  if (full) expect(groups(ours)).toBe(groups(theirs));
  if (backup) expect(backupView(ours, ...backup)).toBe(backupView(theirs, ...backup));
  expectClean(ours, `tune ${JSON.stringify(changes)}`);
  expect(imageState(ours)).toBe(imageState(base));
  return ours;
}

describe('values', () => {
  it('UUID words: random is version 4, time version 1 of now, clear all zero, text parsed', () => {
    const r = uuidBytes('random');
    expect(r[6]! >> 4).toBe(4);
    expect(r[8]! >> 6).toBe(2);
    const t = timeUuid(Date.UTC(2026, 0, 1));
    expect(t[6]! >> 4).toBe(1);
    expect(t[8]! >> 6).toBe(2);
    expect(t[10]! & 1).toBe(1);
    // The 60-bit time: 100-ns intervals since 1582-10-15.
    const ts =
      (BigInt((t[6]! & 0x0f) * 256 + t[7]!) << 48n) |
      (BigInt(t[4]! * 256 + t[5]!) << 32n) |
      BigInt(Buffer.from(t.subarray(0, 4)).readUInt32BE());
    expect(ts).toBe(BigInt(Date.UTC(2026, 0, 1)) * 10000n + 0x01b21dd213814000n);
    expect(formatUuid(uuidBytes('clear'))).toBe('00000000-0000-0000-0000-000000000000');
    expect(formatUuid(uuidBytes(U.toUpperCase()))).toBe(U);
    expect(() => uuidBytes('1234')).toThrowError(expect.objectContaining({ code: 'BAD_UUID' }));
  });
  it('intervals, mount counts and limits as tune2fs takes them', () => {
    expect(parseInterval('5')).toBe(5 * 86400);
    expect(parseInterval('2w')).toBe(14 * 86400);
    expect(parseInterval('3m')).toBe(90 * 86400);
    expect(parseInterval('10s')).toBe(10);
    expect(parseInterval('49710d')).toBe(4294944000);
    expect(() => parseInterval('49711d')).toThrowError(expect.objectContaining({ code: 'BAD_OPTION' }));
    expect(() => parseInterval('1h')).toThrowError(expect.objectContaining({ code: 'BAD_OPTION' }));
    expect(maxMountValue(0)).toBe(0xffff);
    expect(maxMountValue(-2)).toBe(0xfffe);
    const r = maxMountValue('random');
    expect(r).toBeGreaterThanOrEqual(20);
    expect(r).toBeLessThanOrEqual(40);
    expect(() => maxMountValue(16001)).toThrowError(expect.objectContaining({ code: 'BAD_OPTION' }));
    const sb = emptySuperblock();
    sb.s_blocks_count_lo = 65536;
    sb.s_feature_ro_compat = 0x400;
    expect(planTune({ reservedPercent: 1.5 }, sb).reservedBlocks).toBe(983);
    const bad: [TuneChanges, string][] = [
      [{ reservedPercent: 50.5 }, 'BAD_OPTION'],
      [{ reservedPercent: -1 }, 'BAD_OPTION'],
      [{ reservedBlocks: 32769 }, 'TOO_LARGE'],
      [{ reservedBlocks: 10, reservedPercent: 1 }, 'BAD_OPTION'],
      [{ label: '12345678901234567' }, 'TOO_LARGE'],
      [{ reservedUid: 70000 }, 'BAD_OPTION'],
      [{ errors: 'explode' as TuneChanges['errors'] }, 'BAD_OPTION'],
      [{ features: ['has_journal'] }, 'UNSUPPORTED_FEATURE'],
      [{ rewriteChecksums: true }, 'BAD_OPTION'],
      [{ uuid: U, rewriteChecksums: true, features: ['metadata_csum_seed'] }, 'BAD_OPTION'],
    ];
    for (const [c, code] of bad)
      expect(() => planTune(c, sb), JSON.stringify(c)).toThrowError(expect.objectContaining({ code }));
  });
});

describe.runIf(runIt)('tune against tune2fs', () => {
  let rich1k = '';
  let rich4k = '';
  beforeAll(() => {
    rich1k = richImage(1024);
    rich4k = richImage(4096);
  }, 120_000);

  it('label, reserved blocks, owner, mount counts, interval, errors', () => {
    parity(rich1k, { label: 'work-disk', reservedPercent: 1.5, reservedUid: 5, reservedGid: 6 }, [
      '-L',
      'work-disk',
      '-m',
      '1.5',
      '-u',
      '5',
      '-g',
      '6',
    ]);
    parity(
      rich4k,
      { reservedBlocks: 1234, maxMountCount: 30, mountCount: 3, checkInterval: '2w', errors: 'remount-ro' },
      ['-r', '1234', '-c', '30', '-C', '3', '-i', '2w', '-e', 'remount-ro'],
    );
    parity(rich4k, { maxMountCount: 0, checkInterval: '10s', errors: 'panic', reservedPercent: 0, label: '' }, [
      '-c',
      '0',
      '-i',
      '10s',
      '-e',
      'panic',
      '-m',
      '0',
      '-L',
      '',
    ]);
    parity(rich1k, { maxMountCount: -16000, checkInterval: '3m', errors: 'continue', reservedPercent: 50 }, [
      '-c',
      '-16000',
      '-i',
      '3m',
      '-e',
      'continue',
      '-m',
      '50',
    ]);
  });

  it('UUID with metadata_csum, seed route: as tune2fs -O metadata_csum_seed -U; no block but the superblocks changes', () => {
    for (const base of [rich1k, rich4k]) {
      const ours = parity(base, { uuid: U }, ['-O', 'metadata_csum_seed', '-U', U], true);
      expect(field(ours, 'Filesystem UUID')).toBe(U);
      expect(field(ours, 'Filesystem features')).toMatch(/metadata_csum_seed/);
      const oldUuid = field(base, 'Filesystem UUID');
      const seed = crc32c(0xffffffff, uuidBytes(oldUuid));
      expect(field(ours, 'Checksum seed')).toBe(`0x${seed.toString(16).padStart(8, '0')}`);
      // A second change keeps the seed; back to the old UUID and the seed off: nothing to rewrite.
      tuneImage(ours, { uuid: 'time' }, { sync: false });
      expect(field(ours, 'Checksum seed')).toBe(`0x${seed.toString(16).padStart(8, '0')}`);
      const back = tuneImage(ours, { uuid: oldUuid, features: ['^metadata_csum_seed'] }, { sync: false });
      expect(back.checksums).toBe('none');
      expect(field(ours, 'Filesystem features')).not.toMatch(/metadata_csum_seed/);
      expectClean(ours, 'back to the old UUID');
      expect(groups(ours)).toBe(groups(base));
    }
  });

  it('UUID with metadata_csum, rewrite route: as tune2fs -U, every group and checksum alike', () => {
    for (const base of [rich1k, rich4k]) {
      const ours = parity(base, { uuid: U, rewriteChecksums: true }, ['-U', U], true);
      expect(field(ours, 'Filesystem features')).not.toMatch(/metadata_csum_seed/);
    }
  });

  it('^metadata_csum_seed when the seed is not the UUID rewrites every checksum, as tune2fs does', () => {
    for (const base of [rich1k, rich4k]) {
      const seeded = copy(base);
      tuneImage(seeded, { uuid: U }, { sync: false });
      const r = parity(seeded, { features: ['^metadata_csum_seed'] }, ['-O', '^metadata_csum_seed'], true);
      expect(field(r, 'Filesystem UUID')).toBe(U);
      // And on: the seed of the current UUID stored, as tune2fs -O metadata_csum_seed.
      parity(r, { features: ['metadata_csum_seed'] }, ['-O', 'metadata_csum_seed'], true);
    }
  });

  it('gdt_csum (uninit_bg, no metadata_csum): descriptor checksums follow the UUID, backups too', () => {
    const img = path.join(work, 'gdt.img');
    run('truncate', ['-s', '40M', img]);
    expect(run('mkfs.ext4', ['-q', '-F', '-b', '1024', '-O', '^metadata_csum,uninit_bg', img]).status).toBe(0);
    editImage(img, (e) => e.writeFile('/f', 'data\n'), { sync: false });
    // The backup superblock and descriptors of group 1 as tune2fs leaves them.
    const ours = parity(img, { uuid: U, label: 'gdt' }, ['-U', U, '-L', 'gdt'], true, [8193, 1024]);
    expect(run('dumpe2fs', ['-o', 'superblock=8193', '-o', 'blocksize=1024', '-h', ours]).stdout).toContain(U);
  });

  it('ext2 (no journal, no checksums) and an ext3 image', () => {
    for (const type of ['ext2', 'ext3']) {
      const img = path.join(work, `${type}.img`);
      run('truncate', ['-s', '20M', img]);
      expect(run(`mkfs.${type}`, ['-q', '-F', img]).status).toBe(0);
      editImage(img, (e) => e.writeFile('/f', 'data\n'), { sync: false });
      parity(
        img,
        { uuid: U, label: type, reservedPercent: 2, errors: 'panic' },
        ['-U', U, '-L', type, '-m', '2', '-e', 'panic'],
        true,
      );
    }
  });

  it('backup superblocks and descriptors carry the change as tune2fs leaves them', () => {
    const ours = parity(
      rich4k,
      { uuid: U, label: 'bk', rewriteChecksums: true },
      ['-U', U, '-L', 'bk'],
      true,
      [32768, 4096],
    );
    parity(rich1k, { label: 'bk', reservedPercent: 3 }, ['-L', 'bk', '-m', '3'], false, [8193, 1024]);
    const r = run('dumpe2fs', ['-o', 'superblock=32768', '-o', 'blocksize=4096', '-h', ours]);
    expect(r.stdout).toContain(U);
    expect(r.stdout).toMatch(/volume name:\s+bk/);
  });

  it('meta_bg past s_first_meta_bg (a grown image): descriptor copies only where the format puts them', () => {
    // A grow without resize_inode turns to meta_bg with s_first_meta_bg 1: the backup superblock groups
    // of later meta groups hold no copy of descriptor block 0, so a rewrite must not put one there.
    const img = path.join(work, 'metabg.img');
    run('truncate', ['-s', '16M', img]);
    expect(run('mkfs.ext4', ['-q', '-F', '-O', '^resize_inode', img]).status).toBe(0);
    resizeImage(img, 4 * 2 ** 30, { sync: false });
    expect(field(img, 'First meta block group')).toBe('1');
    expect(field(img, 'Block size')).toBe('1024');
    const before = imageState(img);
    // 1 KiB blocks, 8192 a group, 16 descriptors a block: the block after the backup superblock of
    // groups 25, 27, 125, 243 and 343 is no descriptor copy (those groups are neither the first, second
    // nor last of their meta group).
    const afterBackups = () => {
      const fd = fs.openSync(img, 'r');
      try {
        return [25, 27, 125, 243, 343].map((g) => {
          const b = Buffer.alloc(1024);
          fs.readSync(fd, b, 0, 1024, (1 + g * 8192 + 1) * 1024);
          return b.toString('hex');
        });
      } finally {
        fs.closeSync(fd);
      }
    };
    const untouched = afterBackups();
    tuneImage(img, { uuid: U, label: 'mb', rewriteChecksums: true }, { sync: false });
    expect(afterBackups()).toEqual(untouched);
    expectClean(img, 'tuned meta_bg image');
    expect(field(img, 'Filesystem UUID')).toBe(U);
    expect(imageState(img)).toBe(before);
  });

  it('bad input and refusals leave the image unchanged', () => {
    const img = copy(rich1k);
    const before = fs.readFileSync(img);
    const cases: [TuneChanges, string][] = [
      [{ uuid: 'not-a-uuid' }, 'BAD_UUID'],
      [{ label: 'a label far too long' }, 'TOO_LARGE'],
      [{ reservedPercent: 60 }, 'BAD_OPTION'],
      [{ checkInterval: '1y' }, 'BAD_OPTION'],
      [{ features: ['^has_journal'] }, 'UNSUPPORTED_FEATURE'],
    ];
    for (const [c, code] of cases)
      expect(() => tuneImage(img, c, { sync: false })).toThrowError(expect.objectContaining({ code }));
    expect(Buffer.compare(fs.readFileSync(img), before)).toBe(0);
    // A damaged inode checksum: the rewrite refuses before writing (the seed route would not touch it).
    const damaged = copy(rich1k);
    const ino = run('debugfs', ['-R', 'stat /etc/deep/er/file', damaged]).stdout;
    expect(ino).toMatch(/Inode:/);
    run('debugfs', ['-w', '-R', 'sif /etc/deep/er/file checksum 0x1234', damaged]);
    const d0 = fs.readFileSync(damaged);
    expect(() => tuneImage(damaged, { uuid: U, rewriteChecksums: true }, { sync: false })).toThrowError(
      expect.objectContaining({ code: 'BAD_CHECKSUM' }),
    );
    expect(Buffer.compare(fs.readFileSync(damaged), d0)).toBe(0);
  });

  it('a rewrite larger than the journal is refused with NO_SPACE, nothing written', () => {
    const img = path.join(work, 'small-journal.img');
    run('truncate', ['-s', '48M', img]);
    expect(run('mkfs.ext4', ['-q', '-F', '-b', '1024', '-I', '1024', '-J', 'size=1', '-N', '4000', img]).status).toBe(
      0,
    );
    editImage(
      img,
      (e) => {
        for (let k = 0; k < 1500; k++) e.writeFile(`/f${k}`, '');
      },
      { sync: false },
    );
    const before = fs.readFileSync(img);
    expect(() => tuneImage(img, { uuid: U, rewriteChecksums: true }, { sync: false })).toThrowError(
      expect.objectContaining({ code: 'NO_SPACE' }),
    );
    expect(Buffer.compare(fs.readFileSync(img), before)).toBe(0);
    // The seed route changes two blocks and goes through.
    expect(tuneImage(img, { uuid: U }, { sync: false }).checksums).toBe('seed');
    expectClean(img, 'the seed route on a small journal');
  });
});
