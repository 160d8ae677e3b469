/**
 * The kernel as the oracle: each formatted image is loop-mounted read-write, written through the kernel
 * (a large directory, a big file, small files, a symlink), unmounted, checked with `e2fsck -fn`, then
 * mounted again read-only to compare what the kernel reads back.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { formatImage } from '../src/mkfs/image.js';
import { HAVE_E2FSPROGS, IS_ROOT, oracleAvailable, run, fsck, scratchDir, haveTool } from './helpers/oracle.js';

const runIt = oracleAvailable('kernel loop-mount suite (needs root)', IS_ROOT && HAVE_E2FSPROGS && haveTool('mount'));

function mount(img: string, mnt: string, ro: boolean): void {
  const r = run('mount', ['-t', 'ext4', '-o', ro ? 'loop,ro' : 'loop', img, mnt]);
  if (r.status !== 0) throw new Error(`mount failed: ${r.stderr}`);
}
function umount(mnt: string): void {
  const r = run('umount', [mnt]);
  if (r.status !== 0) throw new Error(`umount failed: ${r.stderr}`);
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe.runIf(runIt)('kernel mounts our images read-write', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  for (const [name, size, opts] of [
    ['2M (1 KiB blocks, floppy)', 2 * 2 ** 20, {}],
    ['100M (small)', 100 * 2 ** 20, {}],
    ['8G', 8 * 2 ** 30, {}],
    // Block sizes above the page size (64 KiB) are not mountable on x86 kernels, whoever formats them.
    ['8G with 2 KiB blocks', 8 * 2 ** 30, { blockSize: 2048 }],
    ['1T', 2 ** 40, {}],
    ['20T (huge, no resize inode)', 20 * 2 ** 40, {}],
  ] as [string, number, { blockSize?: number }][]) {
    it(name, () => {
      const dir = scratchDir('ext4wd-mount', size > 2 ** 40 - 1);
      dirs.push(dir);
      const img = path.join(dir, 'disk.img');
      const mnt = path.join(dir, 'mnt');
      fs.mkdirSync(mnt);
      formatImage(img, { sizeBytes: size, ...opts, sync: false });

      mount(img, mnt, false);
      let big: Buffer;
      const names: string[] = [];
      try {
        const root = fs.statSync(mnt);
        expect([root.uid, root.gid, root.mode & 0o7777]).toEqual([0, 0, 0o755]);
        const lpf = fs.statSync(path.join(mnt, 'lost+found'));
        expect(lpf.mode & 0o7777).toBe(0o700);
        const small = size < 8 * 2 ** 20;
        fs.mkdirSync(path.join(mnt, 'many'));
        const count = small ? 100 : 3000;
        for (let i = 0; i < count; i++) {
          const n = `entry-${i}-${'n'.repeat(i % 50)}`;
          names.push(n);
          fs.writeFileSync(path.join(mnt, 'many', n), `content ${i}\n`);
        }
        big = randomBytes(small ? 200 * 1024 : 24 * 2 ** 20);
        fs.writeFileSync(path.join(mnt, 'big.bin'), big);
        fs.symlinkSync('many/entry-1-n', path.join(mnt, 'link'));
        fs.appendFileSync(path.join(mnt, 'big.bin'), 'tail');
      } finally {
        umount(mnt);
      }
      const f = fsck(img);
      expect(f.status, f.output).toBe(0);

      mount(img, mnt, true);
      try {
        expect(sha(fs.readFileSync(path.join(mnt, 'big.bin')))).toBe(sha(Buffer.concat([big, Buffer.from('tail')])));
        expect(fs.readdirSync(path.join(mnt, 'many')).sort()).toEqual([...names].sort());
        expect(fs.readFileSync(path.join(mnt, 'many', names[7]!), 'utf8')).toBe('content 7\n');
        expect(fs.readlinkSync(path.join(mnt, 'link'))).toBe('many/entry-1-n');
      } finally {
        umount(mnt);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    });
  }
});
