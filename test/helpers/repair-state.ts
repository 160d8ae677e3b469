/**
 * What a repair is compared by: an image's tree (every path with its type, mode, owner, link count and
 * content) and the free counts dumpe2fs prints, per group and in the superblock; and the crash harness
 * both repairs run under.
 */
import { expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SpawnSyncReturns } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Ext4Reader } from '../../src/fs/reader.js';
import { FileDevice } from '../../src/io/device.js';
import { recoverJournal } from '../../src/edit/recover.js';
import { cli, expectClean, run } from './oracle.js';
import { mount, umount } from './model.js';

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
 * The tree as the kernel sees it, in tree()'s form: the image loop-mounted read-only (root only), every
 * path stat'ed and every regular file read through the mount.
 */
export function kernelTree(img: string, mnt: string): Map<string, string> {
  fs.mkdirSync(mnt, { recursive: true });
  mount(img, mnt, true);
  try {
    const out = new Map<string, string>();
    const walk = (dir: string, at: string) => {
      for (const name of fs.readdirSync(dir)) {
        const full = path.join(dir, name);
        const st = fs.lstatSync(full);
        const body = st.isFile() ? createHash('sha256').update(fs.readFileSync(full)).digest('hex') : '';
        const p = `${at}/${name}`;
        out.set(p, `${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.nlink} ${st.size} ${body}`);
        if (st.isDirectory()) walk(full, p);
      }
    };
    walk(mnt, '');
    return out;
  } finally {
    umount(mnt);
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

/**
 * A repair (`check IMG ...args`) killed after each of its writes and fsyncs, in both loss modes: after
 * `recover`, the image is the damaged one or the repaired one by `state`, both seen, and a repaired one
 * e2fsck-clean. Returns the uninterrupted run (status 1 asserted) for its output.
 */
export function crashEveryRepairEvent(
  work: string,
  img: string,
  args: string[],
  state: (img: string) => string,
): SpawnSyncReturns<string> {
  const oldState = state(img);
  const full = path.join(work, 'crash-full.img');
  fs.copyFileSync(img, full);
  const done = cli(['check', full, ...args], { EXT4_WORKDISK_COUNT_IO: '1' });
  expect(done.status, done.stderr).toBe(1);
  const events = Number(/io events: (\d+)/.exec(done.stderr)?.[1]);
  expect(events).toBeGreaterThan(3);
  const newState = state(full);
  expect(newState).not.toBe(oldState);
  const seen = { old: 0, new: 0 };
  for (let k = 1; k <= events; k++)
    for (const lose of ['', 'all']) {
      const crashed = path.join(work, 'crashed.img');
      fs.copyFileSync(img, crashed);
      const env: NodeJS.ProcessEnv = { EXT4_WORKDISK_CRASH_AFTER: String(k) };
      if (lose) env.EXT4_WORKDISK_CRASH_LOSE = lose;
      const r = cli(['check', crashed, ...args], env);
      expect(r.signal, `event ${k}: ${r.stderr}`).toBe('SIGKILL');
      recoverJournal(crashed, { sync: false });
      const st = state(crashed);
      expect([oldState, newState], `crash at event ${k} ${lose}`).toContain(st);
      if (st === newState) {
        expectClean(crashed);
        seen.new++;
      } else seen.old++;
    }
  expect(seen.old).toBeGreaterThan(0);
  expect(seen.new).toBeGreaterThan(0);
  return done;
}
