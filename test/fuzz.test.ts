/**
 * Mutation fuzzing: random byte flips in the metadata of small images. Whatever the damage, reading
 * finishes quickly and fails, if at all, with an Ext4Error: never a TypeError, RangeError or hang.
 * Seeded, so a failure reproduces.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { formatDevice } from '../src/mkfs/format.js';
import { MemoryDevice, BufferDevice } from '../src/io/device.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { Ext4Error } from '../src/core/errors.js';
import type { TreeSource } from '../src/core/types.js';
import { memoryTreeSource, type MemoryEntry } from '../src/tree/sources/memory.js';
import { walkImage } from './helpers/walk.js';
import { checkDevice } from '../src/check/check.js';
import { rng } from './helpers/rng.js';

/** A small tree in memory: files of several sizes, a sparse file, symlinks, an indexed directory, xattrs. */
function smallTree(): TreeSource {
  const sparse = new Uint8Array(300_000);
  sparse.fill(7, 0, 100);
  sparse.fill(9, 250_000, 260_000);
  const many: Record<string, MemoryEntry> = {};
  for (let i = 0; i < 150; i++) many[`entry-number-${i}`] = { data: `${i}`, uid: 1000, gid: 1000 };
  return memoryTreeSource(
    {
      children: {
        small: { data: 'hello' },
        medium: {
          data: new Uint8Array(20_000).fill(3),
          xattrs: [
            { name: 'user.k', value: new TextEncoder().encode('v') },
            { name: 'trusted.big', value: new Uint8Array(300).fill(1) },
          ],
        },
        sparse: { data: sparse },
        'fast-link': { target: 'target/of/the/link' },
        'slow-link': { target: 'a'.repeat(100) },
        dir: { children: many },
      },
    },
    { sec: 1_700_000_000, nsec: 5 },
  );
}

function bases(): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [];
  for (const [name, bs] of [
    ['ours-1k', 1024],
    ['ours-4k', 4096],
  ] as [string, number][]) {
    const dev = new MemoryDevice(4 * 2 ** 20);
    formatDevice(dev, {
      sizeBytes: 4 * 2 ** 20,
      blockSize: bs,
      source: smallTree(),
      uuid: '11111111-2222-3333-4444-555555555555',
      hashSeed: '66666666-7777-8888-9999-aaaaaaaaaaaa',
      timestamp: 1_700_000_000,
    });
    out.push([name, dev.read(0, 4 * 2 ** 20)]);
  }
  const corpus = path.resolve(__dirname, '../../shared/corpus/e2fsprogs');
  for (const t of ['f_dir_bad_csum', 'd_inline_dump', 'f_extent_htree', 'f_ea_checks']) {
    const f = path.join(corpus, t, 'image.gz');
    if (fs.existsSync(f)) out.push([t, new Uint8Array(zlib.gunzipSync(fs.readFileSync(f)))]);
  }
  return out;
}

describe('mutation fuzz: corrupt metadata never crashes or hangs the reader', () => {
  for (const [name, image] of bases()) {
    it(name, () => {
      const rnd = rng(name.length * 7919 + image.length);
      // Metadata lives in the first blocks (superblock, descriptors, bitmaps, inode tables, directories).
      const span = Math.min(image.length, 1 << 20);
      const outcomes = new Map<string, number>();
      for (let round = 0; round < 400; round++) {
        const m = image.slice();
        const flips = 1 + Math.floor(rnd() * 8);
        for (let k = 0; k < flips; k++) m[Math.floor(rnd() * span)] = Math.floor(rnd() * 256);
        for (const verify of [true, false]) {
          const t0 = Date.now();
          let outcome = 'ok';
          try {
            const st = walkImage(Ext4Reader.open(new BufferDevice(m), { verifyChecksums: verify }), {
              entries: 20_000,
              bytes: 64 << 20,
            });
            if (st.errors.size) outcome = [...st.errors.keys()].join(',');
          } catch (e) {
            if (!(e instanceof Ext4Error)) throw new Error(`round ${round} (verify ${verify}): ${(e as Error).stack}`);
            outcome = e.code;
          }
          expect(Date.now() - t0, `round ${round}`).toBeLessThan(5000);
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        }
      }
      expect([...outcomes.values()].reduce((a, b) => a + b, 0)).toBe(800);
    });
  }
});

describe('mutation fuzz: check finds the damage and never crashes or hangs', () => {
  for (const [name, image] of bases()) {
    it(name, () => {
      const rnd = rng(name.length * 104729 + image.length);
      // Metadata lives in the first quarter of these small images (the last of them, 512 KiB, holds
      // 12 KiB of it): flips are kept there.
      const span = Math.min(image.length / 4, 1 << 20);
      let found = 0;
      let changed = 0;
      const verdict = (b: Uint8Array) => JSON.stringify(checkDevice(new BufferDevice(b)).problems);
      const baseline = verdict(image);
      for (let round = 0; round < 150; round++) {
        const m = image.slice();
        const flips = 1 + Math.floor(rnd() * 8);
        for (let k = 0; k < flips; k++) m[Math.floor(rnd() * span)] = Math.floor(rnd() * 256);
        if (Buffer.compare(m, image) === 0) continue;
        changed++;
        const t0 = Date.now();
        try {
          if (verdict(m) !== baseline) found++;
        } catch (e) {
          if (!(e instanceof Ext4Error)) throw new Error(`round ${round}: ${(e as Error).stack}`);
          found++;
        }
        expect(Date.now() - t0, `round ${round}`).toBeLessThan(5000);
      }
      // Most flips land in used metadata; some land in unused table slots or padding, which is no damage.
      expect(found).toBeGreaterThan(0);
      expect(changed).toBeGreaterThan(100);
    });
  }
});
