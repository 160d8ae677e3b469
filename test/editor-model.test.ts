/**
 * The editor against the kernel: thousands of random operations applied to a host directory and to an
 * image side by side (see helpers/model.ts), on images of several option sets and one the kernel has
 * churned. Set EDITOR_MODEL_SEED to replay a run, EDITOR_MODEL_OPS for a longer one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatImage } from '../src/mkfs/image.js';
import { HAVE_E2FSPROGS, IS_ROOT, oracleAvailable, run, scratchDir, haveTool, fsck } from './helpers/oracle.js';
import { runModel, mount, umount } from './helpers/model.js';

const runIt = oracleAvailable(
  'editor model suite (needs root)',
  IS_ROOT && HAVE_E2FSPROGS && haveTool('mount') && haveTool('setfattr'),
);
const work = scratchDir('ext4wd-model');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const OPS = Number(process.env.EDITOR_MODEL_OPS ?? 400);
const SEED = process.env.EDITOR_MODEL_SEED ? Number(process.env.EDITOR_MODEL_SEED) : undefined;
let umask = 0;
beforeAll(() => {
  umask = process.umask(0);
});
afterAll(() => {
  process.umask(umask);
});

/** [name, how to make the image, block size, bulk directory entries, seed] */
const VARIANTS: [string, string[] | 'ours' | 'churned', number, number, number][] = [
  ['our mkfs (4 KiB, metadata_csum)', 'ours', 4096, 0, 101],
  ['mkfs.ext4 1 KiB blocks, two-level htree', ['-b', '1024'], 1024, 12000, 102],
  ['mkfs.ext4 ^metadata_csum (gdt_csum)', ['-O', '^metadata_csum'], 4096, 3000, 103],
  ['ext3 (block maps, journal)', ['-t', 'ext3'], 4096, 2000, 104],
  ['ext2 (block maps, no journal)', ['-t', 'ext2', '-b', '1024'], 1024, 0, 105],
  ['inline_data', ['-O', 'inline_data'], 4096, 0, 106],
  ['128-byte inodes', ['-I', '128'], 4096, 0, 107],
  ['an image the kernel has churned', 'churned', 4096, 0, 108],
];

describe.runIf(runIt)('editor vs the kernel: random operations on a host directory and an image', () => {
  for (const [name, how, bs, bulk, seed] of VARIANTS) {
    it(name, () => {
      const dir = fs.mkdtempSync(path.join(work, 'v-'));
      const img = path.join(dir, 'disk.img');
      const host = path.join(dir, 'host');
      const mnt = path.join(dir, 'mnt');
      fs.mkdirSync(host);
      fs.mkdirSync(mnt);
      if (how === 'ours') formatImage(img, { sizeBytes: 512 * 2 ** 20, sync: false });
      else {
        run('truncate', ['-s', '512M', img]);
        const r = run('mkfs.ext4', ['-q', '-F', ...(how === 'churned' ? [] : how), img]);
        expect(r.status, r.stderr).toBe(0);
      }
      if (how === 'churned') {
        // The kernel writes, fragments and deletes; its journal has been used.
        mount(img, mnt, false);
        try {
          for (let d = 0; d < 20; d++) {
            fs.mkdirSync(path.join(mnt, `k${d}`));
            for (let f = 0; f < 40; f++)
              fs.writeFileSync(path.join(mnt, `k${d}`, `f${f}`), Buffer.alloc(100 + f * 997, d + f));
          }
          for (let d = 0; d < 20; d += 2) fs.rmSync(path.join(mnt, `k${d}`), { recursive: true });
          fs.symlinkSync('k1/f1', path.join(mnt, 'link'));
        } finally {
          umount(mnt);
        }
      }
      // The host starts as the kernel's view of the image.
      mount(img, mnt, true);
      try {
        const r = run('cp', ['-a', `${mnt}/.`, host]);
        expect(r.status, r.stderr).toBe(0);
      } finally {
        umount(mnt);
      }
      const s = SEED ?? seed;
      console.log(`${name}: seed ${s}, ${OPS} operations`);
      const res = runModel({
        img,
        host,
        mnt,
        seed: s,
        ops: OPS,
        checkpointEvery: Math.ceil(OPS / 3),
        blockSize: bs,
        bulk,
        seconds32: name.startsWith('128'),
      });
      expect(res.checkpoints).toBeGreaterThanOrEqual(3);
      // The kernel takes the edited image read-write, writes more, and e2fsck stays clean.
      mount(img, mnt, false);
      try {
        fs.mkdirSync(path.join(mnt, 'after-edit'));
        for (let k = 0; k < 50; k++) fs.writeFileSync(path.join(mnt, 'after-edit', `f${k}`), Buffer.alloc(k * 300, k));
        fs.rmSync(path.join(mnt, 'after-edit', 'f3'));
      } finally {
        umount(mnt);
      }
      const f = fsck(img);
      expect(f.status, f.output).toBe(0);
      fs.rmSync(dir, { recursive: true, force: true });
    });
  }
});
