/**
 * The QEMU guest the kernel checks use where the host's kernel cannot do them (test/helpers/guest.ts):
 * the newc archive its initramfs is written in, the order its modules load in, and a boot that runs a
 * script against an attached disk, reports the status, and is cut off by its timeout.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { newcArchive } from './helpers/cpio.js';
import { moduleOrder } from './helpers/guest-initrd.js';
import { guestDisk, guestMissing, runInGuest } from './helpers/guest.js';
import { oracleAvailable, scratchDir } from './helpers/oracle.js';

/** Members of a newc archive, read back by the format's rules (an independent reader of the writer). */
function members(buf: Buffer): { name: string; mode: number; ino: number; data: Buffer }[] {
  const out: { name: string; mode: number; ino: number; data: Buffer }[] = [];
  let at = 0;
  const field = (k: number) => parseInt(buf.toString('ascii', at + 6 + k * 8, at + 14 + k * 8), 16);
  for (;;) {
    expect(buf.toString('ascii', at, at + 6)).toBe('070701');
    const [ino, mode, size, namesize] = [field(0), field(1), field(6), field(11)];
    const name = buf.toString('utf8', at + 110, at + 110 + namesize - 1);
    expect(buf[at + 110 + namesize - 1]).toBe(0);
    const dataAt = Math.ceil((at + 110 + namesize) / 4) * 4;
    if (name === 'TRAILER!!!') {
      expect(dataAt).toBe(buf.length);
      return out;
    }
    out.push({ name, mode, ino, data: buf.subarray(dataAt, dataAt + size) });
    at = Math.ceil((dataAt + size) / 4) * 4;
  }
}

describe('newc archive', () => {
  it('parent directories first, files and links with their modes, every member 4-byte aligned', () => {
    const buf = newcArchive([
      { path: '/init', kind: 'file', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
      { path: '/lib/x86_64-linux-gnu/libc.so.6', kind: 'file', data: Buffer.from('abcde') },
      { path: '/bin/sh', kind: 'symlink', target: 'busybox' },
      { path: '/etc', kind: 'dir', mode: 0o700 },
    ]);
    const m = members(buf);
    expect(m.map((e) => [e.name, e.mode.toString(8)])).toEqual([
      ['init', '100755'],
      ['lib', '40755'],
      ['lib/x86_64-linux-gnu', '40755'],
      ['lib/x86_64-linux-gnu/libc.so.6', '100644'],
      ['bin', '40755'],
      ['bin/sh', '120777'],
      ['etc', '40700'],
    ]);
    expect(m.map((e) => e.data.toString())).toEqual(['#!/bin/sh\n', '', '', 'abcde', '', 'busybox', '']);
    expect(new Set(m.map((e) => e.ino)).size).toBe(m.length);
    expect(buf.length % 4).toBe(0);
  });

  it('refuses a path given twice or empty', () => {
    expect(() =>
      newcArchive([
        { path: '/a', kind: 'dir' },
        { path: 'a', kind: 'dir' },
      ]),
    ).toThrow(/repeated/);
    expect(() => newcArchive([{ path: '/', kind: 'dir' }])).toThrow(/empty/);
  });
});

describe('guest modules', () => {
  const dep = [
    'kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/mbcache.ko.xz kernel/fs/jbd2/jbd2.ko.xz',
    'kernel/fs/jbd2/jbd2.ko.xz:',
    'kernel/fs/mbcache.ko.xz:',
    'kernel/lib/crc16.ko.xz:',
    'kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz kernel/drivers/virtio/virtio.ko.xz',
    'kernel/drivers/virtio/virtio_ring.ko.xz: kernel/drivers/virtio/virtio.ko.xz',
    'kernel/drivers/virtio/virtio.ko.xz:',
    'kernel/arch/x86/crypto/crc32c-intel.ko.xz:',
  ].join('\n');

  it('each after what it needs, each once, names with - or _ alike', () => {
    expect(moduleOrder(dep, ['virtio-blk', 'crc32c_intel', 'ext4'])).toEqual([
      'kernel/drivers/virtio/virtio.ko.xz',
      'kernel/drivers/virtio/virtio_ring.ko.xz',
      'kernel/drivers/block/virtio_blk.ko.xz',
      'kernel/arch/x86/crypto/crc32c-intel.ko.xz',
      'kernel/lib/crc16.ko.xz',
      'kernel/fs/mbcache.ko.xz',
      'kernel/fs/jbd2/jbd2.ko.xz',
      'kernel/fs/ext4/ext4.ko.xz',
    ]);
  });

  it('a module modules.dep does not list is an error, not a guest that cannot mount', () => {
    expect(() => moduleOrder(dep, ['btrfs'])).toThrow(/btrfs/);
  });
});

const haveGuest = oracleAvailable(
  'QEMU guest (qemu-system-x86, linux-image-amd64, busybox-static)',
  guestMissing() === null,
);

describe.runIf(haveGuest)('guest', () => {
  it('runs the script against the disk with the host tools given; the first failing command ends it', () => {
    const dir = scratchDir('ext4wd-guest-test');
    try {
      const disk = path.join(dir, 'disk.raw');
      fs.writeFileSync(disk, Buffer.alloc(1 << 20));
      const g = runInGuest(
        [
          `printf guest-wrote | dd of=${guestDisk(0)} bs=512 seek=2 conv=notrunc`,
          'e2fsck -V',
          'echo reached',
          'false',
          'echo not-reached',
        ].join('\n'),
        { disks: [disk], tools: ['e2fsck'], timeoutMs: 300_000 },
      );
      console.log(`guest boot (${g.accel}${g.accelWhy ? `: ${g.accelWhy}` : ''}): ${g.ms} ms`);
      expect(g.status, g.output).toBe(1);
      expect(g.timedOut).toBe(false);
      expect(g.output).toMatch(/^e2fsck 1\.\d+/m);
      expect(g.output).toMatch(/^reached\r?$/m);
      expect(g.output).not.toMatch(/^not-reached/m);
      expect(fs.readFileSync(disk).toString('latin1', 1024, 1024 + 11)).toBe('guest-wrote');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a guest that does not finish is killed at its timeout, with no status', () => {
    const t0 = Date.now();
    const g = runInGuest('sleep 600', { timeoutMs: 2_000 });
    expect(g.timedOut).toBe(true);
    expect(g.status).toBeNull();
    expect(Date.now() - t0).toBeLessThan(60_000);
  });
});
