/**
 * The one tree walk (src/tree/walk.ts): order of the sink's calls, hard links by key, unreadable
 * entries reported (or failing the walk with their path), directory loops and the depth limit; and every
 * sink (extract, tar export, the image writer, copy-in, the work-disk job) over an image whose
 * directories loop: the walk's check is the only one.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TreeWalk, MAX_DEPTH, type TreeSink } from '../src/tree/walk.js';
import { exportTar } from '../src/tree/tar-export.js';
import { extract } from '../src/tree/extract.js';
import { formatImage } from '../src/mkfs/image.js';
import { memoryTreeSource } from '../src/tree/sources/memory.js';
import { imageTreeSource } from '../src/tree/sources/image.js';
import { Ext4Editor } from '../src/edit/editor.js';
import { buildWorkSeedImage } from '../src/workdisk/job.js';
import { Ext4Error } from '../src/core/errors.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import type { SourceNode } from '../src/core/types.js';
import { stubNode } from './helpers/source.mjs';
import { HAVE_E2FSPROGS, fsck, oracleAvailable, run, scratchDir } from './helpers/oracle.js';

const enc = new TextEncoder();
const dir = (name: string, children: SourceNode['children'], p: Partial<SourceNode> = {}): SourceNode =>
  stubNode({ name: enc.encode(name), displayPath: `/${name}`, kind: 'dir', children, ...p });
const file = (name: string, p: Partial<SourceNode> = {}): SourceNode =>
  stubNode({ name: enc.encode(name), displayPath: `/${name}`, ...p });

/** A directory named `d` at `level`, with one such below it, without end. */
const deep = (level: number): SourceNode =>
  stubNode({ name: enc.encode('d'), displayPath: `level ${level}`, kind: 'dir', children: () => [deep(level + 1)] });

/** A sink that records what it is asked to make, as "kind path" lines. */
function recorder(opts: { refuseDirs?: string[]; refuseLeaves?: string[] } = {}) {
  const log: string[] = [];
  const sink: TreeSink<string, string> = {
    dir(n, parent) {
      const p = `${parent}/${Buffer.from(n.name).toString()}`;
      log.push(`dir ${p}`);
      return opts.refuseDirs?.includes(p) ? undefined : p;
    },
    leave(_n, h) {
      log.push(`leave ${h}`);
    },
    leaf(n, parent) {
      const p = `${parent}/${Buffer.from(n.name).toString()}`;
      log.push(`leaf ${p}`);
      return opts.refuseLeaves?.includes(p) ? undefined : p;
    },
    link(n, parent, first) {
      log.push(`link ${parent}/${Buffer.from(n.name).toString()} -> ${first}`);
    },
  };
  return { log, sink };
}

describe('the tree walk', () => {
  it('hands the sink each directory before its entries and after them, and further names as links', () => {
    const { log, sink } = recorder({ refuseLeaves: ['/d/dev1'] });
    const tree = memoryTreeSource({ children: { d: { children: { a: { data: 'x' }, s: { target: 'a' } } } } });
    const root = tree.root();
    const linked = (name: string, key: string, kind: SourceNode['kind'] = 'file') => file(name, { linkKey: key, kind });
    const extra = dir('e', () => [linked('one', 'k1'), linked('two', 'k1'), linked('dev1', 'k2', 'fifo')]);
    const d2 = dir('d', () => [linked('dev1', 'k2', 'fifo'), ...root.children()[0]!.children(), extra]);
    const walk = new TreeWalk(sink);
    walk.entries(
      dir('', () => [d2]),
      '',
    );
    expect(log).toEqual([
      'dir /d',
      'leaf /d/dev1',
      'leaf /d/a',
      'leaf /d/s',
      'dir /d/e',
      'leaf /d/e/one',
      'link /d/e/two -> /d/e/one',
      // The first name made nothing (the sink refused it): the next name is made, not linked.
      'leaf /d/e/dev1',
      'leave /d/e',
      'leave /d',
    ]);
  });

  it('a directory the sink does not make is not entered', () => {
    const { log, sink } = recorder({ refuseDirs: ['/skip'] });
    let listed = false;
    const skip = dir('skip', () => ((listed = true), [file('x')]));
    new TreeWalk(sink).entries(
      dir('', () => [skip, file('y')]),
      '',
    );
    expect(log).toEqual(['dir /skip', 'leaf /y']);
    expect(listed).toBe(false);
  });

  it('entries the source cannot read are reported and left out, or fail the walk naming their path', () => {
    const bad = new Ext4Error('CORRUPT', 'inode 12 is damaged', { inode: 12 });
    const source = () =>
      dir('', (skip) => {
        skip?.('/broken', bad);
        return [file('fine')];
      });
    const { log, sink } = recorder();
    const seen: [string, string][] = [];
    new TreeWalk(sink, { onUnreadable: (p, e) => seen.push([p, e.message]) }).entries(source(), '');
    expect(seen).toEqual([['/broken', 'inode 12 is damaged']]);
    expect(log).toEqual(['leaf /fine']);
    expect(() => new TreeWalk(recorder().sink).entries(source(), '')).toThrowError(
      expect.objectContaining({
        code: 'CORRUPT',
        message: '/broken: inode 12 is damaged',
        context: { inode: 12, path: '/broken' },
      }),
    );
    // The top entry's own failure is one unreadable entry too; other errors are never swallowed.
    const top: string[] = [];
    const w = new TreeWalk(recorder().sink, { onUnreadable: (p) => top.push(p) });
    w.entry('', '/top', () => {
      throw bad;
    });
    expect(top).toEqual(['/top']);
    expect(() =>
      w.entry('', '/top', () => {
        throw new Ext4Error('IO_ERROR', 'disk gone');
      }),
    ).toThrowError(expect.objectContaining({ code: 'IO_ERROR' }));
    expect(() => w.unreadable('/x', new Error('plain'))).toThrowError('plain');
  });

  it('a directory that is its own ancestor is an unreadable entry, not an endless walk', () => {
    const seen: string[] = [];
    const { log, sink } = recorder();
    const loop: SourceNode = dir('a', () => [loop, file('f')], { dirKey: 'inode 12' });
    const sibling = dir('b', () => [], { dirKey: 'inode 13' });
    new TreeWalk(sink, { onUnreadable: (p, e) => seen.push(`${p}: ${e.code} ${e.message}`) }).entries(
      dir('', () => [loop, sibling], { dirKey: 'inode 2' }),
      '',
    );
    expect(seen).toEqual(['/a: CORRUPT directory loop through inode 12']);
    expect(log).toEqual(['dir /a', 'leaf /a/f', 'leave /a', 'dir /b', 'leave /b']);
  });

  it("entries walked apart from their parent (the writer's lost+found) still see it on their path", () => {
    const seen: string[] = [];
    const top: SourceNode = dir('', () => [lpf], { dirKey: 'inode 2' });
    const lpf: SourceNode = dir('lost+found', () => [dir('up', () => top.children(), { dirKey: 'inode 2' })], {
      dirKey: 'inode 11',
    });
    const walk = () => new TreeWalk(recorder().sink, { onUnreadable: (p, e) => seen.push(`${p}: ${e.message}`) });
    walk().entries(lpf, '', 2, [top]);
    expect(seen).toEqual(['/up: directory loop through inode 2']);
    // Without it, the loop is found one level further down, through lost+found itself.
    seen.length = 0;
    walk().entries(lpf, '', 2);
    expect(seen).toEqual(['/lost+found: directory loop through inode 11']);
  });

  it(`stops below ${MAX_DEPTH} levels`, () => {
    const seen: string[] = [];
    let made = 0;
    new TreeWalk<number, never>(
      { dir: () => ++made, leaf: () => undefined, link: () => {} },
      { onUnreadable: (p, e) => seen.push(`${p}: ${e.message}`) },
    ).entry(0, 'top', () => deep(0));
    expect(made).toBe(MAX_DEPTH + 1);
    expect(seen).toEqual([`level ${MAX_DEPTH + 1}: directory tree deeper than ${MAX_DEPTH} levels`]);
  });

  it('the image writer and copy-in stop at the same depth, naming the entry, before writing anything', () => {
    const tooDeep = {
      code: 'CORRUPT',
      message: `level ${MAX_DEPTH + 1}: directory tree deeper than ${MAX_DEPTH} levels`,
    };
    const img = path.join(work, 'deep.img');
    expect(() => formatImage(img, { sizeBytes: 8 << 20, sync: false, source: { root: () => deep(0) } })).toThrowError(
      expect.objectContaining(tooDeep),
    );
    expect(fs.existsSync(img)).toBe(false);
    formatImage(img, { sizeBytes: 8 << 20, sync: false });
    const ed = Ext4Editor.open(img, { sync: false });
    try {
      expect(() => ed.copyIn({ root: () => deep(0) }, '/x')).toThrowError(expect.objectContaining(tooDeep));
    } finally {
      ed.close();
    }
    if (HAVE_E2FSPROGS) expect(fsck(img).status).toBe(0);
  });
});

const runIt = oracleAvailable('image walk with a directory loop (debugfs)', HAVE_E2FSPROGS);
const work = scratchDir('ext4wd-walk');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/**
 * A clean image of /a/b/f and /z, then a second name `to` of directory `from` made by debugfs (a
 * directory hard link: e2fsck's business to fix).
 */
function loopedImage(name: string, from: string, to: string): string {
  const img = path.join(work, name);
  formatImage(img, {
    sizeBytes: 8 << 20,
    sync: false,
    timestamp: 1_700_000_000,
    source: memoryTreeSource({
      children: { a: { children: { b: { children: { f: { data: 'data' } } } } }, z: { data: 'z' } },
    }),
  });
  expect(fsck(img).status).toBe(0);
  const d = run('debugfs', ['-w', '-R', `link ${from} ${to}`, img]);
  expect(d.status, d.stderr).toBe(0);
  return img;
}

describe.runIf(runIt)('sinks over an image whose directories loop', () => {
  it('extract and the tar export report the loop, and write everything else', () => {
    // /a inside its own subtree.
    const img = loopedImage('loop.img', '/a', '/a/b/up');
    const warnings: string[] = [];
    const reader = () => Ext4Reader.open(FileDevice.open(img));
    const dest = path.join(work, 'out');
    fs.mkdirSync(dest);
    const ex = extract(reader(), '/', dest, { onWarning: (m) => warnings.push(m) });
    expect(ex.unreadable).toEqual([
      { path: '/a/b/up', code: 'CORRUPT', message: expect.stringContaining('directory loop') as unknown },
    ]);
    expect(fs.readFileSync(path.join(dest, 'a/b/f'), 'utf8')).toBe('data');
    expect(fs.readFileSync(path.join(dest, 'z'), 'utf8')).toBe('z');
    expect(fs.existsSync(path.join(dest, 'a/b/up'))).toBe(false);
    const tar = exportTar(reader(), '/', path.join(work, 'out.tar'), {
      sync: false,
      onWarning: (m) => warnings.push(m),
    });
    expect(tar.unreadable.map((u) => u.path)).toEqual(['/a/b/up']);
    expect(tar.files).toBe(2);
    expect(warnings).toEqual([
      expect.stringMatching(/^\/a\/b\/up: not extracted: .*directory loop/),
      expect.stringMatching(/^\/a\/b\/up: not archived: .*directory loop/),
    ]);
    // The image writer meets the same check: the walk's.
    expect(() =>
      formatImage(path.join(work, 'copy.img'), {
        sizeBytes: 8 << 20,
        sync: false,
        source: imageTreeSource(reader(), '/'),
      }),
    ).toThrowError(expect.objectContaining({ code: 'CORRUPT', message: '/a/b/up: directory loop through inode 12' }));
    expect(fs.existsSync(path.join(work, 'copy.img'))).toBe(false);
  });

  it("the image writer, copy-in and the work-disk job leave a loop out by the source's choice, or fail naming it", () => {
    const img = loopedImage('loop2.img', '/a', '/a/b/up');
    const reader = () => Ext4Reader.open(FileDevice.open(img));
    const loop = { code: 'CORRUPT', message: '/a/b/up: directory loop through inode 12' };
    const out = (name: string) => path.join(work, name);
    // Laid over with an owner (every node wrapped), the source still shows the walk its loop keys.
    expect(() =>
      formatImage(out('owned.img'), {
        sizeBytes: 8 << 20,
        sync: false,
        owner: { uid: 0, gid: 0 },
        source: imageTreeSource(reader(), '/'),
      }),
    ).toThrowError(expect.objectContaining(loop));
    expect(fs.existsSync(out('owned.img'))).toBe(false);

    // The source's choice: left out, reported once though the tree is walked twice (sizing, writing).
    const warnings: string[] = [];
    const skipping = () =>
      imageTreeSource(reader(), '/', { onUnreadable: (p, e) => warnings.push(`${p} | ${e.message}`) });
    formatImage(out('kept.img'), { sizeBytes: 8 << 20, sync: false, owner: { uid: 0, gid: 0 }, source: skipping() });
    expect(warnings).toEqual(['/a/b/up | /a/b/up: directory loop through inode 12']);
    expect(fsck(out('kept.img')).status).toBe(0);
    const kept = Ext4Reader.open(FileDevice.open(out('kept.img')));
    expect(new TextDecoder().decode(kept.readFileBytes(kept.lookup('/a/b/f')))).toBe('data');
    expect(() => kept.lookup('/a/b/up')).toThrowError(expect.objectContaining({ code: 'NOT_FOUND' }));

    // copy-in: refused as one operation (nothing of it stays), or the loop left out by the source's choice.
    const target = out('target.img');
    formatImage(target, { sizeBytes: 8 << 20, sync: false });
    const ed = Ext4Editor.open(target, { sync: false });
    try {
      expect(() => ed.copyIn(imageTreeSource(reader(), '/a'), '/x')).toThrowError(expect.objectContaining(loop));
      expect(() => ed.reader.lookup('/x')).toThrowError(expect.objectContaining({ code: 'NOT_FOUND' }));
      warnings.length = 0;
      const r = ed.copyIn(skipping(), '/y');
      expect(warnings).toEqual(['/a/b/up | /a/b/up: directory loop through inode 12']);
      // /y, /y/a, /y/a/b and /y/lost+found (a plain directory here); /a/b/f and /z.
      expect(r).toEqual({ files: 2, dirs: 4, other: 0, bytes: 5 });
    } finally {
      ed.close();
    }
    expect(fsck(target).status).toBe(0);

    // The work seed: its size count walks the tree too, before the image is written.
    const seed = out('seed.img');
    expect(() => buildWorkSeedImage(img, seed, { path: '/a', sync: false })).toThrowError(
      expect.objectContaining(loop),
    );
    expect(fs.existsSync(seed)).toBe(false);
    warnings.length = 0;
    const sr = buildWorkSeedImage(img, seed, {
      path: '/a',
      sync: false,
      skipUnreadable: true,
      onWarning: (m) => warnings.push(m),
    });
    expect(warnings).toEqual(['/a/b/up: directory loop through inode 12: left out (skip unreadable entries)']);
    expect(sr.entries).toBe(2);
    expect(fsck(seed).status).toBe(0);
  });

  it("a loop back to the root through the source's lost+found is caught too", () => {
    const img = loopedImage('lpf-loop.img', '/', '/lost+found/up');
    const copy = path.join(work, 'lpf-copy.img');
    const source = () => imageTreeSource(Ext4Reader.open(FileDevice.open(img)), '/');
    expect(() => formatImage(copy, { sizeBytes: 8 << 20, sync: false, source: source() })).toThrowError(
      expect.objectContaining({ code: 'CORRUPT', message: '/lost+found/up: directory loop through inode 2' }),
    );
    expect(fs.existsSync(copy)).toBe(false);
  });
});
