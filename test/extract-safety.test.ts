/**
 * Extraction never writes outside its destination: hostile names, duplicate names that put a symlink
 * where a directory is expected, and existing symlinks in the destination are all refused.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatDevice } from '../src/mkfs/format.js';
import { MemoryDevice, BufferDevice } from '../src/io/device.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { extract } from '../src/tree/extract.js';
import type { SourceNode, TreeSource } from '../src/core/types.js';
import { scratchDir } from './helpers/oracle.js';
import { stubNode } from './helpers/source.mjs';

const enc = new TextEncoder();
function node(name: string, p: Partial<SourceNode> = {}): SourceNode {
  return stubNode({ name: enc.encode(name), displayPath: name, readLink: () => enc.encode('/'), ...p });
}
function image(children: SourceNode[]): Uint8Array {
  const root = node('', { kind: 'dir', perm: 0o755, children: () => children });
  const src: TreeSource = { root: () => root };
  const dev = new MemoryDevice(4 * 2 ** 20);
  formatDevice(dev, { sizeBytes: 4 * 2 ** 20, blockSize: 1024, source: src });
  return dev.read(0, 4 * 2 ** 20);
}
/** Replaces every occurrence of `from` with `to` (same length) in the image bytes. */
function patch(img: Uint8Array, from: string, to: string): Uint8Array {
  const b = Buffer.from(img);
  const f = Buffer.from(from);
  let at = b.indexOf(f);
  expect(at).toBeGreaterThan(0);
  while (at >= 0) {
    Buffer.from(to).copy(b, at);
    at = b.indexOf(f, at + 1);
  }
  return new Uint8Array(b);
}

const work = scratchDir('ext4wd-safe');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const outside = path.join(work, 'outside');
fs.mkdirSync(outside);
const reader = (b: Uint8Array) => Ext4Reader.open(new BufferDevice(b), { verifyChecksums: false });
const fresh = (n: string) => {
  const d = path.join(work, n);
  fs.mkdirSync(d);
  return d;
};

describe('extract stays inside its destination', () => {
  it('refuses names with a slash: the entry is left out and reported, its neighbours extracted', () => {
    const img = patch(image([node('evilXname'), node('fine')]), 'evilXname', 'evil/name');
    const dest = fresh('slash');
    const warnings: string[] = [];
    const res = extract(reader(img), '/', dest, { onWarning: (m) => warnings.push(m) });
    expect(res.unreadable).toEqual([{ path: '/evil/name', code: 'CORRUPT', message: expect.any(String) as unknown }]);
    expect(warnings).toEqual([expect.stringContaining('/evil/name: not extracted')]);
    expect(fs.readdirSync(dest).sort()).toEqual(['fine', 'lost+found']);
    expect(fs.readdirSync(outside)).toEqual([]);
  });

  it('a symlink and a directory with the same name: the directory is not created through the link', () => {
    const link = node('dupA', { kind: 'symlink', size: outside.length, readLink: () => enc.encode(outside) });
    const dir = node('dupB', {
      kind: 'dir',
      perm: 0o755,
      children: () => [
        node('payload', {
          size: 4,
          openData: () => ({
            read: (b: Uint8Array) => (b.set(enc.encode('pwnd')), 4),
            verifyUnchanged: () => {},
            close: () => {},
          }),
        }),
      ],
    });
    const img = patch(image([link, dir]), 'dupB', 'dupA');
    const dest = fresh('dup');
    expect(() => extract(reader(img), '/', dest)).toThrowError(expect.objectContaining({ code: 'IO_ERROR' }));
    expect(fs.readdirSync(outside)).toEqual([]);
  });

  it('a file whose name matches an earlier symlink is not written through it', () => {
    const target = path.join(outside, 'victim');
    const link = node('sameA', { kind: 'symlink', size: target.length, readLink: () => enc.encode(target) });
    const file = node('sameB', {
      size: 4,
      openData: () => ({
        read: (b: Uint8Array) => (b.set(enc.encode('pwnd')), 4),
        verifyUnchanged: () => {},
        close: () => {},
      }),
    });
    const img = patch(image([link, file]), 'sameB', 'sameA');
    expect(() => extract(reader(img), '/', fresh('same'))).toThrowError(expect.objectContaining({ code: 'IO_ERROR' }));
    expect(fs.existsSync(target)).toBe(false);
  });

  it('existing symlinks in the destination are not followed', () => {
    const img = image([node('sub', { kind: 'dir', perm: 0o755, children: () => [node('f')] })]);
    const dest = fresh('existing');
    fs.symlinkSync(outside, path.join(dest, 'sub'));
    expect(() => extract(reader(img), '/', dest)).toThrowError(expect.objectContaining({ code: 'IO_ERROR' }));
    expect(fs.readdirSync(outside)).toEqual([]);
  });

  it('symlinks pointing anywhere are recreated as links, never followed', () => {
    const img = image([
      node('up', { kind: 'symlink', size: 5, readLink: () => enc.encode('../..') }),
      node('abs', { kind: 'symlink', size: outside.length, readLink: () => enc.encode(outside) }),
    ]);
    const dest = fresh('links');
    extract(reader(img), '/', dest);
    expect(fs.readlinkSync(path.join(dest, 'up'))).toBe('../..');
    expect(fs.readlinkSync(path.join(dest, 'abs'))).toBe(outside);
    expect(fs.readdirSync(outside)).toEqual([]);
  });

  it('a directory path becomes dest/<basename>; a file path too', () => {
    const img = image([node('d', { kind: 'dir', perm: 0o750, children: () => [node('inner')] }), node('top')]);
    const dest = fresh('basename');
    extract(reader(img), '/d', dest);
    extract(reader(img), '/top', dest);
    expect(fs.readdirSync(dest).sort()).toEqual(['d', 'top']);
    expect(fs.readdirSync(path.join(dest, 'd'))).toEqual(['inner']);
    expect(fs.statSync(path.join(dest, 'd')).mode & 0o777).toBe(0o750);
  });

  it('the writer refuses duplicate names from a source', () => {
    expect(() => image([node('x'), node('x')])).toThrowError(expect.objectContaining({ code: 'SOURCE_ERROR' }));
  });
});

describe('path lookup inside an image', () => {
  const sym = (name: string, target: string) =>
    node(name, { kind: 'symlink', size: target.length, readLink: () => enc.encode(target) });
  const img = image([
    node('real', { kind: 'dir', perm: 0o755, children: () => [node('x')] }),
    sym('rel', 'real'),
    sym('abs', '/real'),
    sym('up', '../../..'),
    sym('loop', 'loop'),
  ]);
  it('follows symlinks in the middle of a path, never out of the image', () => {
    const r = reader(img);
    const x = r.lookup('/real/x');
    expect(r.lookup('/rel/x')).toBe(x);
    expect(r.lookup('/abs/x')).toBe(x);
    expect(r.lookup('/up/real/x')).toBe(x);
    expect(r.lookup('/real/../real/./x')).toBe(x);
    // The last component is the link itself unless asked to follow it.
    expect(r.lookup('/rel')).not.toBe(r.lookup('/real'));
    expect(r.lookup('/rel', { followLast: true })).toBe(r.lookup('/real'));
  });
  it('reports loops and missing names with codes', () => {
    const r = reader(img);
    expect(() => r.lookup('/loop/x')).toThrowError(expect.objectContaining({ code: 'CORRUPT' }));
    expect(() => r.lookup('/real/missing')).toThrowError(expect.objectContaining({ code: 'NOT_FOUND' }));
    expect(() => r.lookup('/real/x/deeper')).toThrowError(expect.objectContaining({ code: 'NOT_A_DIRECTORY' }));
  });
});
