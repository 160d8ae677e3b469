/**
 * Two processes, one image, through the CLI: writers started together each commit or are refused with
 * IN_USE (nothing reported done goes missing), --wait makes both commit, a writer killed while holding
 * the lock is taken over (its journal recovered, its MMP claim released). Every image is checked by
 * e2fsck -fn and our check. (Readers beside writers and the stress test: lock-stress.test.ts.)
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { formatImage } from '../src/mkfs/image.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { editImage } from '../src/edit/editor.js';
import { INCOMPAT } from '../src/ext4/features.js';
import { HAVE_E2FSPROGS, oracleAvailable, scratchDir, cli, run } from './helpers/oracle.js';
import { cliAsync, lockFiles, sha, reader, text, expectClean } from './helpers/lock.js';

const runIt = oracleAvailable('image lock CLI suite (e2fsprogs)', HAVE_E2FSPROGS);
const work = scratchDir('ext4wd-lockcli');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
let n = 0;
function image(size = 32): string {
  const img = path.join(work, `k${n++}.img`);
  formatImage(img, { sizeBytes: size * 2 ** 20, sync: false });
  return img;
}
/** Each editing command, acting in its own directory D (holding a file D/pre), and what it leaves. */
interface Op {
  args: (img: string, d: string) => string[];
  check: (r: Ext4Reader, d: string) => void;
}
const absent = (r: Ext4Reader, p: string) =>
  expect(() => r.lookup(p)).toThrowError(expect.objectContaining({ code: 'NOT_FOUND' }));
const hostTree = path.join(work, 'tree');
const OPS: Record<string, Op> = {
  write: {
    args: (i, d) => ['write', i, `${d}/w`, '--data', 'written'],
    check: (r, d) => expect(text(r, `${d}/w`)).toBe('written'),
  },
  mkdir: {
    args: (i, d) => ['mkdir', i, `${d}/m`],
    check: (r, d) => expect(r.inode(r.lookup(`${d}/m`)).mode & 0o170000).toBe(0o040000),
  },
  rm: { args: (i, d) => ['rm', i, `${d}/pre`], check: (r, d) => absent(r, `${d}/pre`) },
  mv: {
    args: (i, d) => ['mv', i, `${d}/pre`, `${d}/moved`],
    check: (r, d) => {
      absent(r, `${d}/pre`);
      expect(text(r, `${d}/moved`)).toBe('pre');
    },
  },
  ln: {
    args: (i, d) => ['ln', '-s', i, 'pre', `${d}/sl`],
    check: (r, d) => expect(Buffer.from(r.readLink(r.lookup(`${d}/sl`))).toString()).toBe('pre'),
  },
  chmod: {
    args: (i, d) => ['chmod', i, '0600', `${d}/pre`],
    check: (r, d) => expect(r.inode(r.lookup(`${d}/pre`)).mode & 0o7777).toBe(0o600),
  },
  chown: {
    args: (i, d) => ['chown', i, '7:8', `${d}/pre`],
    check: (r, d) => expect(r.inode(r.lookup(`${d}/pre`)).uid).toBe(7),
  },
  truncate: {
    args: (i, d) => ['truncate', i, '--size', '5000', `${d}/pre`],
    check: (r, d) => expect(r.inode(r.lookup(`${d}/pre`)).size).toBe(5000),
  },
  setfattr: {
    args: (i, d) => ['setfattr', i, '-n', 'user.k', '-v', 'v', `${d}/pre`],
    check: (r, d) => expect(r.xattrs(r.lookup(`${d}/pre`)).map((x) => x.name)).toContain('user.k'),
  },
  'cp-in': {
    args: (i, d) => ['cp-in', i, hostTree, `${d}/cp`],
    check: (r, d) => expect(text(r, `${d}/cp/f19`)).toBe('x'.repeat(19 * 300)),
  },
};
const NAMES = Object.keys(OPS);

describe.runIf(runIt)('two writers on one image', () => {
  fs.mkdirSync(hostTree, { recursive: true });
  for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(hostTree, `f${i}`), 'x'.repeat(i * 300));

  // Every command against itself and two others, started at the same moment.
  for (const [a, first] of NAMES.entries())
    it(`${first} beside ${[0, 1, 2].map((k) => NAMES[(a + k) % NAMES.length]).join(', ')}: each commits or is refused with IN_USE`, async () => {
      const img = image();
      const pairs = [0, 1, 2].map((k) => [first, NAMES[(a + k) % NAMES.length]!] as const);
      const dirs = pairs.flatMap((_, p) => [`/p${p}a`, `/p${p}b`]);
      editImage(img, (e) => {
        for (const d of dirs) {
          e.mkdir(d);
          e.writeFile(`${d}/pre`, new TextEncoder().encode('pre'));
        }
      });
      const done: [string, string][] = [];
      for (const [p, pair] of pairs.entries()) {
        const ds = [`/p${p}a`, `/p${p}b`];
        const rs = await Promise.all(pair.map((c, k) => cliAsync(OPS[c]!.args(img, ds[k]!))));
        for (const [k, r] of rs.entries()) {
          if (r.status === 0) done.push([pair[k]!, ds[k]!]);
          else {
            expect(r.status, r.stderr).toBe(1);
            expect(r.stderr).toMatch(/error \[IN_USE\]: .* in use by process \d+ on host .*ext4-workdisk/);
          }
        }
      }
      expect(done.length).toBeGreaterThanOrEqual(pairs.length);
      const r = reader(img);
      for (const [c, d] of done) OPS[c]!.check(r, d);
      expect(lockFiles(img)).toEqual([]);
      expectClean(img);
    });

  it('a writer refused while another holds the lock; with --wait both commit, one after the other', async () => {
    const img = image();
    editImage(img, (e) => {
      e.mkdir('/a');
      e.mkdir('/b');
    });
    // A holder that runs: a sleeping process, its record as the lock module writes it.
    const sleeper = spawn('sleep', ['30']);
    await new Promise((r) => setTimeout(r, 50));
    const stat = fs.readFileSync(`/proc/${sleeper.pid}/stat`, 'utf8');
    const me = JSON.parse(
      spawnSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const h = await import(${JSON.stringify(path.resolve(__dirname, '../dist/host/holder.js'))}); console.log(JSON.stringify(h.newHolder('sleep')))`,
        ],
        { encoding: 'utf8' },
      ).stdout,
    ) as Record<string, unknown>;
    const lockFile = `${img}.lock`;
    fs.writeFileSync(
      lockFile,
      JSON.stringify({ ...me, pid: sleeper.pid, start: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) }),
    );
    try {
      const refused = await Promise.all([
        cliAsync(['write', img, '/a/x', '--data', 'a']),
        cliAsync(['mkdir', img, '/b/y']),
        cliAsync(['write', img, '/a/z', '--data', 'a', '--wait=0.3']),
      ]);
      for (const r of refused) {
        expect(r.status).toBe(1);
        expect(r.stderr).toContain(`in use by process ${sleeper.pid} on host`);
        expect(r.stderr).toContain('(sleep, since ');
      }
      // Readers wait for the writer (bounded).
      const ls = cli(['ls', img, '/', '--wait=0.2']);
      expect(ls.status).toBe(1);
      expect(ls.stderr).toContain('IN_USE');
      const both = Promise.all([
        cliAsync(['write', img, '/a/x', '--data', 'a', '--wait']),
        cliAsync(['cp-in', img, hostTree, '/b/tree', '--wait=30']),
        cliAsync(['ls', img, '/b', '--wait']),
      ]);
      await new Promise((r) => setTimeout(r, 600));
      fs.unlinkSync(lockFile); // the holder releases
      const rs = await both;
      for (const r of rs) expect(r.status, r.stderr).toBe(0);
    } finally {
      sleeper.kill('SIGKILL');
    }
    const r = reader(img);
    expect(text(r, '/a/x')).toBe('a');
    expect(text(r, '/b/tree/f19')).toBe('x'.repeat(19 * 300));
    expect(lockFiles(img)).toEqual([]);
    expectClean(img);
  });

  it('--wait takes seconds or nothing', () => {
    const img = image();
    const r = cli(['mkdir', img, '/x', '--wait=soon']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('BAD_OPTION');
    expect(cli(['mkdir', img, '/x', '--wait']).status).toBe(0);
    expect(cli(['ls', img, '/', '--wait=2']).stdout).toContain('x');
  });
});

describe.runIf(runIt)('a writer killed while holding the lock', () => {
  const big = path.join(work, 'big');
  fs.writeFileSync(big, Buffer.alloc(300_000, 7));

  function killedAt(base: string, at: number, name: string): string {
    const img = path.join(work, name);
    fs.copyFileSync(base, img);
    const r = cli(['write', img, '/big', '--from', big], { ...process.env, EXT4_WORKDISK_CRASH_AFTER: String(at) });
    expect(r.signal).toBe('SIGKILL');
    expect(lockFiles(img)).toEqual([path.basename(img) + '.lock']);
    return img;
  }

  for (const mmp of [false, true])
    it(`the next writer takes over, recovers the journal and proceeds${mmp ? ' (an MMP image)' : ''}`, () => {
      const base = path.join(work, `kill-base-${mmp}.img`);
      if (mmp) {
        fs.writeFileSync(base, '');
        fs.truncateSync(base, 32 * 2 ** 20);
        expect(run('mkfs.ext4', ['-q', '-F', '-O', 'mmp', '-E', 'mmp_update_interval=1', base]).status).toBe(0);
      } else formatImage(base, { sizeBytes: 32 * 2 ** 20, sync: false });
      const counted = path.join(work, `kill-count-${mmp}.img`);
      fs.copyFileSync(base, counted);
      const c = cli(['write', counted, '/big', '--from', big], { ...process.env, EXT4_WORKDISK_COUNT_IO: '1' });
      expect(c.status, c.stderr).toBe(0);
      const events = Number(/io events: (\d+)/.exec(c.stderr)?.[1]);
      let dirty = 0;
      for (let at = 2; at < events; at += Math.max(1, Math.floor(events / 5))) {
        const img = killedAt(base, at, `killed-${mmp}-${at}.img`);
        if (reader(img).sb.s_feature_incompat & INCOMPAT.needs_recovery) dirty++;
        const w = cli(['write', img, '/after', '--data', 'after']);
        expect(w.status, `killed at ${at}: ${w.stderr}`).toBe(0);
        const r = reader(img);
        expect(text(r, '/after')).toBe('after');
        // The killed write is there whole, or not at all.
        let bigIno = 0;
        try {
          bigIno = r.lookup('/big');
        } catch {
          bigIno = 0;
        }
        if (bigIno) expect(sha(r.readFileBytes(bigIno))).toBe(sha(fs.readFileSync(big)));
        expect(lockFiles(img)).toEqual([]);
        expectClean(img);
      }
      expect(dirty).toBeGreaterThan(0);
    });
});
