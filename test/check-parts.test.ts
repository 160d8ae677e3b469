/**
 * The pieces `check` keeps its speed with, against plain definitions: bitmap counting and comparison a
 * word at a time, the name table of pass 2, the table of inodes in use, and a directory block's entries
 * walked whole before any is used.
 */
import { describe, expect, it } from 'vitest';
import { allSet, countSet, differences, firstSet, mergeRanges, popcount } from '../src/check/bits.js';
import { BlockEntries, NameSet } from '../src/check/dir-names.js';
import { InodeInfo, InodeTable } from '../src/check/inode-table.js';

let seed = 0x9e3779b9;
const rnd = (n: number) => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return (seed >>> 8) % n;
};
const bit = (b: Uint8Array, i: number) => (b[i >>> 3]! >> (i & 7)) & 1;

describe('bitmaps a word at a time', () => {
  it('count, compare and find bits as bit-by-bit loops do, at any length and byte offset', () => {
    for (let round = 0; round < 200; round++) {
      const bytes = 1 + rnd(600);
      const off = rnd(5);
      const a = new Uint8Array(bytes + 8).subarray(off, off + bytes);
      const b = new Uint8Array(bytes + 8).subarray(off, off + bytes);
      const density = rnd(4);
      for (let k = 0; k < bytes; k++) {
        a[k] = density === 0 ? 0 : density === 3 ? 0xff : rnd(256);
        b[k] = rnd(8) ? a[k]! : rnd(256);
      }
      const n = rnd(bytes * 8 + 1);
      let count = 0;
      let diff = 0;
      let firstDiff = -1;
      let first = -1;
      for (let i = 0; i < n; i++) {
        count += bit(a, i);
        if (bit(a, i) && first < 0) first = i;
        if (bit(a, i) !== bit(b, i)) {
          diff++;
          if (firstDiff < 0) firstDiff = i;
        }
      }
      expect(countSet(a, n)).toBe(count);
      expect(differences(a, b, n)).toEqual({ count: diff, first: firstDiff });
      expect(firstSet(a, n)).toBe(first);
      const from = rnd(n + 1);
      let all = true;
      for (let i = from; i < n; i++) if (!bit(a, i)) all = false;
      expect(allSet(a, from, n)).toBe(all);
    }
    expect(popcount(-1)).toBe(32);
    expect(popcount(0x80000001)).toBe(2);
  });
  it('merged ranges cover what a bitmap with the ranges set would, below the limit', () => {
    for (let round = 0; round < 100; round++) {
      const limit = 1 + rnd(300);
      const ranges: [number, number][] = [];
      for (let k = rnd(6); k > 0; k--) {
        const s = rnd(400) - 50;
        ranges.push([s, s + rnd(80)]);
      }
      const set = new Set<number>();
      for (const [s, e] of ranges) for (let i = Math.max(0, s); i < Math.min(e, limit); i++) set.add(i);
      const merged = mergeRanges(ranges, limit);
      const covered = new Set<number>();
      for (const [s, e] of merged) for (let i = s; i < e; i++) covered.add(i);
      expect([...covered].sort((x, y) => x - y)).toEqual([...set].sort((x, y) => x - y));
      for (let k = 1; k < merged.length; k++) expect(merged[k]![0]).toBeGreaterThan(merged[k - 1]![1]);
    }
  });
});

describe('the name table of pass 2', () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  it('finds a name given twice, even among names of one hash, and forgets them all between directories', () => {
    const names = new NameSet();
    for (let dir = 0; dir < 3; dir++) {
      names.clear();
      // One buffer holding many names, some twice; the hash deliberately weak (two values) to force probing.
      const list = Array.from({ length: 3000 }, (_, k) => `n${k % 2500}-${dir}`);
      const buf = enc(list.join(''));
      const seen = new Set<string>();
      let at = 0;
      for (const name of list) {
        const added = names.add(name.length & 1, buf, at, name.length);
        expect(added, name).toBe(!seen.has(name));
        seen.add(name);
        at += name.length;
      }
    }
    // Names of different lengths or bytes with one hash are different names.
    names.clear();
    const b = enc('abcab');
    expect(names.add(7, b, 0, 2)).toBe(true);
    expect(names.add(7, b, 0, 3)).toBe(true);
    expect(names.add(7, b, 3, 2)).toBe(false);
    expect(names.add(8, b, 3, 2)).toBe(true);
  });
  it("walks a block's entries whole: a damaged block yields none", () => {
    const bs = 1024;
    const b = new Uint8Array(bs);
    const entry = (off: number, ino: number, rec: number, name: string) => {
      new DataView(b.buffer).setUint32(off, ino, true);
      new DataView(b.buffer).setUint16(off + 4, rec, true);
      b[off + 6] = name.length;
      b.set(enc(name), off + 8);
    };
    entry(0, 2, 12, '.');
    entry(12, 2, 12, '..');
    entry(24, 11, bs - 24, 'x');
    const list = new BlockEntries();
    list.read(b, bs, {});
    expect([...list.offsets.subarray(0, list.count)]).toEqual([0, 12, 24]);
    entry(24, 11, 3, 'x');
    expect(() => list.read(b, bs, {})).toThrow(/directory entry/);
  });
});

describe('the table of inodes in use', () => {
  it('keeps the order inodes were added, finds them by number, and a second record replaces the first', () => {
    const t = new InodeTable(100);
    const inos = [1, 2, 11, 99, 100, 101, 250, 1000];
    for (const ino of inos) t.set(ino, new InodeInfo(ino, 0, 1));
    expect(t.size).toBe(inos.length);
    for (let k = 0; k < t.size; k++) {
      expect(t.inoAt(k)).toBe(inos[k]);
      expect(t.at(k).mode).toBe(inos[k]);
      expect(t.get(inos[k]!)).toBe(t.at(k));
    }
    for (const missing of [0, -1, 3, 102, 999, 1001, 2 ** 32 - 1]) expect(t.has(missing), String(missing)).toBe(false);
    const again = new InodeInfo(7, 0, 1);
    t.set(99, again);
    expect(t.size).toBe(inos.length);
    expect(t.at(3)).toBe(again);
  });
});
