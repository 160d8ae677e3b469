/**
 * Many processes, one image: a reader looping beside a committing writer only ever sees committed
 * states (extract --tar digests against the states replayed one by one), and eight processes editing
 * and reading at random for a bounded time lose nothing. Every image is checked by e2fsck -fn and our check.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { lockForRead } from '../src/host/lock.js';
import { formatImage } from '../src/mkfs/image.js';
import { editImage } from '../src/edit/editor.js';
import { HAVE_E2FSPROGS, oracleAvailable, scratchDir, CLI } from './helpers/oracle.js';
import { cliAsync, lockFiles, sha, reader, text, expectClean } from './helpers/lock.js';

const runIt = oracleAvailable('image lock stress suite (e2fsprogs)', HAVE_E2FSPROGS);
const work = scratchDir('ext4wd-lockstress');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
let n = 0;
function image(size: number): string {
  const img = path.join(work, `s${n++}.img`);
  formatImage(img, { sizeBytes: size * 2 ** 20, sync: false });
  return img;
}

/**
 * A digest of the whole tree as the library reads it, under a reader's lock (names, types, modes,
 * contents, link targets): fast enough to read hundreds of times while a writer commits.
 */
function treeDigest(img: string): string {
  const lock = lockForRead(img, { wait: 30 });
  const dev = FileDevice.open(img);
  try {
    const r = Ext4Reader.open(dev);
    const h = createHash('sha256');
    const walk = (ino: number, at: string): void => {
      const entries = r
        .readDir(ino)
        .map((e) => ({ name: Buffer.from(e.name).toString(), ino: e.inode }))
        .filter((e) => e.name !== '.' && e.name !== '..')
        .sort((x, y) => (x.name < y.name ? -1 : 1));
      for (const e of entries) {
        const i = r.inode(e.ino);
        const type = i.mode & 0o170000;
        h.update(`${at}/${e.name} ${i.mode.toString(8)} ${i.size}\n`);
        if (type === 0o100000) h.update(r.readFileBytes(e.ino));
        else if (type === 0o120000) h.update(r.readLink(e.ino));
        else if (type === 0o040000) walk(e.ino, `${at}/${e.name}`);
      }
    };
    walk(2, '');
    return h.digest('hex');
  } catch (e) {
    return `unreadable: ${(e as Error).message}`;
  } finally {
    dev.close();
    lock.release();
  }
}

describe.runIf(runIt)('readers beside a writer', () => {
  it('a reader looping while a writer commits sees only committed states', async () => {
    const img = image(16);
    const copy = path.join(work, 'replay.img');
    fs.copyFileSync(img, copy);
    const scripts = Array.from({ length: 8 }, (_, i) => {
      const s = path.join(work, `script${i}`);
      // Big enough that a commit writes many blocks home: data, directories, inodes, bitmaps.
      const files = Array.from({ length: 24 }, (_, f) => `write /d${i}/x${f} --data ${i}-${f}`).join('\n');
      fs.writeFileSync(s, `write /f --data ${String(i).repeat(20000)}\nmkdir /d${i}\n${files}\nrm -rf /d${i - 2}\n`);
      return s;
    });
    const edit = (target: string, i: number) => ['edit', target, '--script', scripts[i]!, '--timestamp', '1700000000'];
    const tarOf = async (target: string) => {
      const r = await cliAsync(['extract', target, '/', '--tar', '-']);
      expect(r.status, r.stderr).toBe(0);
      return sha(r.stdout);
    };
    // The committed states, replayed one by one on a copy.
    const tars = new Set([await tarOf(copy)]);
    const trees = new Set([treeDigest(copy)]);
    for (let i = 0; i < scripts.length; i++) {
      expect((await cliAsync(edit(copy, i))).status).toBe(0);
      tars.add(await tarOf(copy));
      trees.add(treeDigest(copy));
    }
    expect(tars.size).toBe(scripts.length + 1);
    expect(trees.size).toBe(scripts.length + 1);

    // The first half of the commits beside `extract --tar` in a loop.
    const half = scripts.length / 2;
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < half; i++) {
        const r = await cliAsync([...edit(img, i), '--wait']);
        expect(r.status, r.stderr).toBe(0);
      }
      writing = false;
    })();
    const seen: string[] = [];
    while (writing) seen.push(await tarOf(img));
    await writer;
    seen.push(await tarOf(img));
    for (const d of seen) expect(tars).toContain(d);
    expect(seen.length).toBeGreaterThan(2);

    // The second half beside the library's reader in a tight loop (a shell runs the writer: this
    // thread does not come back to its event loop until the writer is done).
    const doneFile = path.join(work, 'writer-done');
    const loop = scripts
      .slice(half)
      .map((_, k) => `"${process.execPath}" "${CLI}" ${edit(img, half + k).join(' ')} --wait >/dev/null || exit 1`)
      .join('\n');
    const sh = spawn('sh', ['-c', `${loop}\ntouch "${doneFile}"`], { stdio: 'ignore' });
    const exited = new Promise((r) => sh.on('exit', r));
    const reads: string[] = [];
    const stop = Date.now() + 30_000;
    while (!fs.existsSync(doneFile) && Date.now() < stop) reads.push(treeDigest(img));
    await exited;
    expect(fs.existsSync(doneFile)).toBe(true);
    reads.push(treeDigest(img));
    for (const d of reads) expect(trees).toContain(d);
    expect(new Set(reads).size).toBeGreaterThan(1);
    expect(lockFiles(img)).toEqual([]);
    expectClean(img);
  });
});

/** One of the stress test's processes: random edits in its own directory, reads of the whole image. */
const STRESS = `
const { spawnSync } = require('node:child_process');
const [cli, img, k, until, seed] = process.argv.slice(2);
let x = Number(seed) >>> 0 || 1;
const rand = (m) => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return (x >>> 0) % m; };
const model = {};
const errors = [];
let ops = 0, j = 0;
const dir = '/p' + k;
const run = (args) => spawnSync(process.execPath, [cli, ...args, '--wait=60'], { maxBuffer: 1 << 28 });
while (Date.now() < Number(until)) {
  const names = Object.keys(model);
  const pick = () => names[rand(names.length)];
  const op = names.length ? rand(7) : 0;
  let r, what;
  if (op === 0) {
    const name = dir + '/f' + j++;
    const content = (k + '-' + j + ';').repeat(1 + rand(3000));
    r = run(['write', img, name, '--data', content]);
    if (r.status === 0) model[name] = content;
    what = 'write ' + name;
  } else if (op === 1) {
    const name = pick();
    r = run(['rm', img, name]);
    if (r.status === 0) delete model[name];
    what = 'rm ' + name;
  } else if (op === 2) {
    const name = pick(), to = dir + '/m' + j++;
    r = run(['mv', img, name, to]);
    if (r.status === 0) { model[to] = model[name]; delete model[name]; }
    what = 'mv ' + name;
  } else if (op === 3) {
    const name = pick();
    r = run(['cat', img, name]);
    if (r.status === 0 && r.stdout.toString() !== model[name]) errors.push('cat ' + name + ': wrong content');
    what = 'cat ' + name;
  } else if (op === 4) {
    r = run(['ls', img, dir]);
    const got = r.stdout.toString().split('\\n').filter(Boolean).sort().join(',');
    const want = names.map((p) => p.slice(dir.length + 1)).sort().join(',');
    if (r.status === 0 && got !== want) errors.push('ls ' + dir + ': ' + got + ' != ' + want);
    what = 'ls';
  } else if (op === 5) {
    r = run(['extract', img, '/', '--tar', '-']);
    what = 'extract --tar';
  } else {
    r = run(['truncate', img, '--size', String(rand(5000)), pick()]);
    what = 'truncate';
    if (r.status === 0) errors.push('truncated a model file');
  }
  ops++;
  if (r.status !== 0 && op !== 6) errors.push(what + ': exit ' + r.status + ' ' + r.stderr.toString());
}
console.log(JSON.stringify({ model, errors, ops }));
`;

describe.runIf(runIt)('stress', () => {
  it('8 processes editing and reading one image at random for 8 s: nothing lost, clean', async () => {
    const img = image(64);
    editImage(img, (e) => {
      for (let k = 0; k < 8; k++) e.mkdir(`/p${k}`);
    });
    const script = path.join(work, 'stress.cjs');
    // Truncating a model file would change it: op 6 aims at a name that does not exist.
    fs.writeFileSync(
      script,
      STRESS.replace(
        "'truncate', img, '--size', String(rand(5000)), pick()",
        "'truncate', img, '--size', String(rand(5000)), dir + '/none'",
      ),
    );
    const until = String(Date.now() + 8000);
    const outs = await Promise.all(
      Array.from(
        { length: 8 },
        (_, k) =>
          new Promise<string>((resolve) => {
            const p = spawn(process.execPath, [script, CLI, img, String(k), until, String(k * 7919 + 1)]);
            let out = '';
            p.stdout.on('data', (d: Buffer) => (out += d.toString()));
            p.stderr.on('data', (d: Buffer) => process.stderr.write(d));
            p.on('close', () => resolve(out));
          }),
      ),
    );
    const r = reader(img);
    let ops = 0;
    for (const [k, out] of outs.entries()) {
      const res = JSON.parse(out) as { model: Record<string, string>; errors: string[]; ops: number };
      expect(res.errors).toEqual([]);
      ops += res.ops;
      const names = r
        .readDir(r.lookup(`/p${k}`))
        .map((e) => Buffer.from(e.name).toString())
        .filter((nm) => nm !== '.' && nm !== '..')
        .sort();
      expect(names).toEqual(
        Object.keys(res.model)
          .map((p) => p.slice(`/p${k}/`.length))
          .sort(),
      );
      for (const [p, content] of Object.entries(res.model)) expect(text(r, p)).toBe(content);
    }
    expect(ops).toBeGreaterThan(16);
    expect(lockFiles(img)).toEqual([]);
    expectClean(img);
  }, 60_000);
});
