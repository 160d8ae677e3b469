/**
 * `ext4-workdisk resize` on the command line: growing to SIZE and to the file's size, nothing to do,
 * --json; and what is refused before anything is written, the image left byte for byte as it was:
 * a bad SIZE, shrinking, past 2^32 blocks without 64bit, a size the host cannot hold, bigalloc, a
 * journal that needs recovery (--recover recovers it first), a mounted image, another writer's lock.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { formatImage } from '../src/mkfs/image.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { lockForWrite } from '../src/host/lock.js';
import { HAVE_E2FSPROGS, IS_ROOT, cli, oracleAvailable, run, scratchDir, expectClean } from './helpers/oracle.js';
import { mount, umount } from './helpers/model.js';
import { lockFiles } from './helpers/lock.js';

const runIt = oracleAvailable('resize CLI suite (e2fsprogs)', HAVE_E2FSPROGS);
const work = scratchDir('ext4wd-resize-cli');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const M = 2 ** 20;
let n = 0;

function image(sizeMiB = 32, args?: string[]): string {
  const img = path.join(work, `r${n++}.img`);
  if (args) {
    fs.writeFileSync(img, '');
    fs.truncateSync(img, sizeMiB * M);
    const r = run('mkfs.ext4', ['-q', '-F', '-t', 'ext4', ...args, img]);
    expect(r.status, r.stderr).toBe(0);
  } else formatImage(img, { sizeBytes: sizeMiB * M, sync: false });
  return img;
}

const sha = (img: string) => createHash('sha256').update(fs.readFileSync(img)).digest('hex');

function blocksOf(img: string): { blocks: number; bs: number } {
  const dev = FileDevice.open(img);
  try {
    const r = Ext4Reader.open(dev);
    return { blocks: r.blocksCount, bs: r.blockSize };
  } finally {
    dev.close();
  }
}

/** Runs resize expecting a refusal with `code`; the image (size and bytes) must be as it was. */
function refused(args: string[], img: string, code: string, message?: RegExp): void {
  const before = sha(img);
  const size = fs.statSync(img).size;
  const r = cli(['resize', ...args]);
  expect(r.status, r.stdout + r.stderr).toBe(1);
  expect(r.stderr).toContain(`[${code}]`);
  if (message) expect(r.stderr).toMatch(message);
  expect(fs.statSync(img).size).toBe(size);
  expect(sha(img)).toBe(before);
}

describe.runIf(runIt)('resize CLI', () => {
  it('grows to SIZE, then to the file size after truncate -s; the same size again is nothing to do', () => {
    const img = image();
    const r = cli(['resize', img, '100M']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/grown from 33554432 bytes .* to 104857600 bytes/);
    expect(blocksOf(img).blocks * blocksOf(img).bs).toBe(100 * M);
    expect(fs.statSync(img).size).toBe(100 * M);
    expectClean(img);
    fs.truncateSync(img, 300 * M);
    const again = cli(['resize', img, '--json']);
    expect(again.status, again.stderr).toBe(0);
    const j = JSON.parse(again.stdout) as Record<string, unknown>;
    expect(j).toMatchObject({ ok: true, command: 'resize', newBlocks: (300 * M) / 1024, steps: 1 });
    expectClean(img);
    const same = cli(['resize', img, '300M']);
    expect(same.status, same.stderr).toBe(0);
    expect(same.stdout).toMatch(/nothing to do/);
  });

  it('refuses a bad SIZE and a file cut below its file system, nothing written; shrinks to a SIZE below', () => {
    const img = image();
    refused([img, 'lots'], img, 'BAD_SIZE');
    const small = image();
    const shrunk = cli(['resize', small, '16M']);
    expect(shrunk.status, shrunk.stderr).toBe(0);
    expect(shrunk.stdout).toMatch(/shrunk from 33554432 bytes .* to 16777216 bytes/);
    expect(fs.statSync(small).size).toBe(16 * M);
    expectClean(small);
    // A file cut below its file system: refused, not read past its end.
    fs.truncateSync(img, 16 * M);
    const r = cli(['resize', img, '--json']);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, code: 'UNSUPPORTED_FEATURE' });
    expect(cli(['resize']).status).toBe(2);
    expect(cli(['resize', img, '1G', 'extra']).status).toBe(2);
  });

  it('--print-min prints the smallest size, changing nothing; below it a shrink is refused with NO_SPACE', () => {
    const img = image(64);
    const before = sha(img);
    const r = cli(['resize', img, '--print-min']);
    expect(r.status, r.stderr).toBe(0);
    const m = /^Estimated minimum size of the filesystem: (\d+) blocks of (\d+) bytes, (\d+) bytes$/m.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    expect(Number(m![1]) * Number(m![2])).toBe(Number(m![3]));
    const j = JSON.parse(cli(['resize', img, '--print-min', '--json']).stdout) as Record<string, number>;
    expect(j).toMatchObject({ ok: true, minBlocks: Number(m![1]), blocks: (64 * M) / 1024 });
    expect(sha(img)).toBe(before);
    // The figure printed is resize2fs -P's estimate; a given size may go below it, down to what holds
    // the data (`floorBytes`), and no further.
    expect(j.floorBytes).toBe(j.floorBlocks! * j.blockSize!);
    expect(j.floorBytes).toBeLessThanOrEqual(Number(m![3]));
    refused(
      [img, `${j.floorBytes! - 4096}`],
      img,
      'NO_SPACE',
      new RegExp(`smallest this file system can be is ${j.floorBytes} bytes`),
    );
    expect(cli(['resize', img, '--print-min', '32M']).status).toBe(2);
    expect(cli(['resize', img, '--min', '32M']).status).toBe(2);
  });

  it('refuses past 2^32 blocks without 64bit, and what the host file system cannot hold', () => {
    const no64 = image(64, ['-O', '^64bit', '-b', '4096']);
    refused([no64, '17T'], no64, 'TOO_LARGE', /64bit/);
    // /tmp is ext4 here (16 TiB files at most); on a host that holds it the grow is fine instead.
    const big = image(64, ['-b', '4096']);
    const before = sha(big);
    const r = cli(['resize', big, '20T']);
    if (r.status === 1) {
      expect(r.stderr).toContain('[TOO_LARGE]');
      expect(r.stderr).toMatch(/host file system cannot hold/);
      expect(fs.statSync(big).size).toBe(64 * M);
      expect(sha(big)).toBe(before);
    } else expect(r.status, r.stderr).toBe(0);
  });

  it('refuses bigalloc, a journal that needs recovery (unless --recover), another writer', () => {
    const ba = image(64, ['-O', 'bigalloc', '-C', '16384']);
    refused([ba, '128M'], ba, 'UNSUPPORTED_FEATURE', /bigalloc/);

    // A writer killed mid-commit: the next writer takes its lock over and recovers the journal first.
    const taken = image(64);
    const killed = cli(['write', taken, '/f', '--data', 'x'], { EXT4_WORKDISK_CRASH_AFTER: '4' });
    expect(killed.signal).toBe('SIGKILL');
    const over = cli(['resize', taken, '128M']);
    expect(over.status, over.stderr).toBe(0);
    expectClean(taken);
    // A dirty journal nobody of ours left (its lock gone): refused, or recovered first with --recover.
    const dirty = image(64);
    const crashed = cli(['write', dirty, '/f', '--data', 'x'], { EXT4_WORKDISK_CRASH_AFTER: '4' });
    expect(crashed.signal).toBe('SIGKILL');
    for (const f of lockFiles(dirty)) fs.rmSync(path.join(work, f));
    refused([dirty, '128M'], dirty, 'NEEDS_RECOVERY');
    const ok = cli(['resize', dirty, '128M', '--recover']);
    expect(ok.status, ok.stderr).toBe(0);
    expectClean(dirty);

    const held = image();
    const lock = lockForWrite(held);
    try {
      refused([held, '64M'], held, 'IN_USE');
    } finally {
      lock.release();
    }
  });

  it.runIf(IS_ROOT)('refuses a mounted image', () => {
    const img = image(64, []);
    const mnt = path.join(work, 'mnt');
    fs.mkdirSync(mnt, { recursive: true });
    mount(img, mnt, true);
    try {
      const r = cli(['resize', img, '128M']);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('[IN_USE]');
    } finally {
      umount(mnt);
    }
    expect(blocksOf(img).blocks * blocksOf(img).bs).toBe(64 * M);
  });

  it('--help', () => {
    const r = cli(['resize', '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/resize <image> \[SIZE\]/);
    expect(cli(['--help']).stdout).toMatch(/resize <image>/);
  });
});
