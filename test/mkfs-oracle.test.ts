/**
 * Geometry parity with mkfs.ext4 and fsck-cleanliness, checked live against e2fsprogs: for each size
 * both tools format with the same UUID, hash seed and time, then `dumpe2fs` output must match
 * (everything, including every group's layout, flags and checksums, except lifetime writes and the
 * superblock checksum that covers it) and `e2fsck -fn` must pass on our image.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatImage } from '../src/mkfs/image.js';
import { readImageInfo, formatInfo } from '../src/check/info.js';
import { HAVE_E2FSPROGS, oracleAvailable, run, fsck, dumpe2fs, scratchDir } from './helpers/oracle.js';

const UUID = '11111111-2222-3333-4444-555555555555';
const SEED = '66666666-7777-8888-9999-aaaaaaaaaaaa';
const TS = 1700000000;
const K = 1024;
const M = K * K;
const G = K * M;
const T = K * G;

interface Case {
  name: string;
  size: number;
  blockSize?: number;
  inodeSize?: number;
  label?: string;
  /** Compare only `dumpe2fs -h` (very large group counts). */
  headerOnly?: boolean;
  huge?: boolean;
}

const CASES: Case[] = [
  { name: '120K', size: 120 * K },
  { name: '512K (no journal)', size: 512 * K },
  { name: '2M', size: 2 * M },
  { name: '3 MiB - 1', size: 3 * M - 1 },
  { name: '3M', size: 3 * M },
  { name: '100M', size: 100 * M, label: 'work' },
  { name: '512 MiB - 1', size: 512 * M - 1 },
  { name: '512M', size: 512 * M },
  { name: '1000000123 bytes', size: 1000000123 },
  { name: '4 groups + 463 blocks (last dropped)', size: (4 * 32768 + 463) * 4096 },
  { name: '5 groups + 563 blocks (last kept)', size: (5 * 32768 + 563) * 4096 },
  { name: '8G', size: 8 * G, label: 'a-sixteen-bytes!' },
  { name: '8G -b 1024', size: 8 * G, blockSize: 1024 },
  { name: '8G -b 2048', size: 8 * G, blockSize: 2048 },
  { name: '8G -b 65536', size: 8 * G, blockSize: 65536 },
  { name: '64M -b 65536', size: 64 * M, blockSize: 65536 },
  { name: '100M -b 4096', size: 100 * M, blockSize: 4096 },
  { name: '8G -I 128', size: 8 * G, inodeSize: 128 },
  { name: '8G -I 1024', size: 8 * G, inodeSize: 1024 },
  { name: '100G', size: 100 * G },
  { name: '1T', size: T, huge: true },
  { name: '4 TiB - 4 KiB', size: 4 * T - 4096, headerOnly: true, huge: true },
  { name: '4T (big)', size: 4 * T, headerOnly: true, huge: true },
  { name: '16 TiB - 4 KiB', size: 16 * T - 4096, headerOnly: true, huge: true },
  { name: '16T (huge)', size: 16 * T, headerOnly: true, huge: true },
  { name: '20T', size: 20 * T, headerOnly: true, huge: true },
];

const runIt = oracleAvailable('mkfs.ext4 parity suite', HAVE_E2FSPROGS);

describe.runIf(runIt)('formatter vs mkfs.ext4 (e2fsprogs oracle)', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  for (const c of CASES) {
    it(c.name, () => {
      const dir = scratchDir('ext4wd-mkfs', c.huge);
      dirs.push(dir);
      const theirs = path.join(dir, 'theirs.img');
      const ours = path.join(dir, 'ours.img');
      fs.writeFileSync(theirs, '');
      fs.truncateSync(theirs, c.size);
      const args = ['-q', '-F', '-U', UUID, '-E', `hash_seed=${SEED}`];
      if (c.blockSize) args.push('-b', String(c.blockSize));
      if (c.inodeSize) args.push('-I', String(c.inodeSize));
      if (c.label) args.push('-L', c.label);
      const mk = run('mkfs.ext4', [...args, theirs], {
        env: { E2FSPROGS_FAKE_TIME: String(TS), MKE2FS_CONFIG: '/etc/mke2fs.conf' },
      });
      expect(mk.status, mk.stderr).toBe(0);

      formatImage(ours, {
        sizeBytes: c.size,
        blockSize: c.blockSize,
        inodeSize: c.inodeSize,
        label: c.label,
        uuid: UUID,
        hashSeed: SEED,
        timestamp: TS,
        sync: false,
      });
      expect(fs.statSync(ours).size).toBe(c.size);

      const f = fsck(ours);
      expect(f.status, f.output).toBe(0);
      expect(dumpe2fs(ours, !!c.headerOnly)).toBe(dumpe2fs(theirs, !!c.headerOnly));

      // Our own reader prints what dumpe2fs -h prints, for both images.
      for (const img of [ours, theirs]) {
        const r = run('dumpe2fs', ['-h', img], { env: { TZ: 'UTC' } });
        expect(formatInfo(readImageInfo(img))).toBe(r.stdout);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    });
  }
});
