/**
 * What a repair is compared by: an image's tree (every path with its type, mode, owner, link count and
 * content) and the free counts dumpe2fs prints, per group and in the superblock.
 */
import { expect } from 'vitest';
import { createHash } from 'node:crypto';
import { Ext4Reader } from '../../src/fs/reader.js';
import { FileDevice } from '../../src/io/device.js';
import { run } from './oracle.js';

/** Every path of the image with its type, mode, owner, link count and content (what a repair keeps). */
export function tree(img: string): Map<string, string> {
  const dev = FileDevice.open(img);
  try {
    const r = Ext4Reader.open(dev);
    const out = new Map<string, string>();
    const walk = (ino: number, at: string) => {
      for (const e of r.readDir(ino)) {
        const name = Buffer.from(e.name).toString();
        if (name === '.' || name === '..') continue;
        const i = r.inode(e.inode);
        const p = `${at}/${name}`;
        const isDir = (i.mode & 0xf000) === 0x4000;
        const body =
          (i.mode & 0xf000) === 0x8000 ? createHash('sha256').update(r.readFileBytes(e.inode)).digest('hex') : '';
        out.set(p, `${i.mode.toString(8)} ${i.uid}:${i.gid} ${i.linksCount} ${i.size} ${body}`);
        if (isDir) walk(e.inode, p);
      }
    };
    walk(2, '');
    return out;
  } finally {
    dev.close();
  }
}

/**
 * Per group, the counts dumpe2fs prints ("N free blocks, M free inodes, D directories"). Not the unused
 * inodes: e2fsck recomputes itable_unused of every group it writes (a choice, not a fix), a preen
 * only where the check finds it wrong.
 */
export function groupCounts(img: string): string[] {
  const r = run('dumpe2fs', [img]);
  expect(r.status, r.stderr).toBe(0);
  return r.stdout
    .split('\n')
    .filter((l) => /free blocks, .* free inodes/.test(l))
    .map((l) => l.trim().replace(/, \d+ unused inodes$/, ''));
}

export function superCounts(img: string): string[] {
  return run('dumpe2fs', ['-h', img])
    .stdout.split('\n')
    .filter((l) => /^Free (blocks|inodes):/.test(l));
}
