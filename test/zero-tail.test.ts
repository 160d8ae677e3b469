/**
 * Blocks kept as a head followed by zeros (src/core/zero-tail.ts): every path that sums or writes them
 * gives the bytes and checksums of the same block materialized, so a journal commit or a grow cannot
 * tell the two apart.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { crc32c } from '../src/core/crc32c.js';
import { ZeroTail, blockBytes, pushBlockParts, type BlockData } from '../src/core/zero-tail.js';
import { buildTransaction, journalTagChecksum, JBD2_MAGIC, type JournalFormat } from '../src/ext4/journal.js';
import { writeBlocks } from '../src/edit/journal-log.js';
import { FileDevice, MemoryDevice } from '../src/io/device.js';
import { resizeGeometry, resizeListBlocks } from '../src/ext4/resize-inode.js';
import type { Geometry } from '../src/ext4/geometry.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ext4wd-zero-tail-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const BS = 4096;
/** A block of `n` pseudo-random head bytes (never zero at its end) and zeros after. */
function tailed(n: number, seed: number, bs = BS): ZeroTail {
  const head = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) head[i] = ((x = (x * 1103515245 + 12345) >>> 0) >>> 16) | 1;
  return new ZeroTail(head, bs);
}

function format(over: Partial<JournalFormat>): JournalFormat {
  const uuid = Uint8Array.from({ length: 16 }, (_, i) => i * 7 + 3);
  return { blockSize: BS, is64: true, csumV2: false, csumV3: true, uuid, seed: crc32c(0xffffffff, uuid), ...over };
}

describe('ZeroTail blocks', () => {
  it('materialize to their head and zeros; a Uint8Array is its own bytes', () => {
    const z = tailed(68, 1);
    const b = blockBytes(z);
    expect(b.length).toBe(BS);
    expect([...b.subarray(0, 68)]).toEqual([...z.head]);
    expect(b.subarray(68).every((v) => v === 0)).toBe(true);
    const plain = new Uint8Array(BS);
    expect(blockBytes(plain)).toBe(plain);
    expect(() => new ZeroTail(new Uint8Array(8), 4)).toThrow(RangeError);
  });

  it('split into their head and shared zeros for a gathered write (nothing for an empty head or tail)', () => {
    const parts: Uint8Array[] = [];
    pushBlockParts(parts, tailed(12, 2));
    pushBlockParts(parts, new ZeroTail(new Uint8Array(0), BS));
    pushBlockParts(parts, tailed(BS, 3));
    expect(parts.map((p) => p.length)).toEqual([12, BS - 12, BS, BS]);
    expect(parts[1]!.every((v) => v === 0) && parts[2]!.every((v) => v === 0)).toBe(true);
  });

  it('sum as their materialized bytes in every tag form (csum v3 and v2, 32 and 64 bit tags)', () => {
    for (const f of [format({}), format({ csumV3: false, csumV2: true }), format({ is64: false })])
      for (const n of [0, 3, 4, 68, 200, BS - 1, BS])
        for (const tid of [1, 0x12345678, 0xfffffffe]) {
          const z = tailed(n, n + tid);
          const seq = new Uint8Array([tid >>> 24, (tid >>> 16) & 0xff, (tid >>> 8) & 0xff, tid & 0xff]);
          const want = crc32c(crc32c(f.seed, seq), blockBytes(z));
          expect(journalTagChecksum(f, tid, z)).toBe(want);
          expect(journalTagChecksum(f, tid, blockBytes(z))).toBe(want);
        }
  });

  it('give a transaction the same log bytes as their materialized copies, escapes included', () => {
    const magic = tailed(40, 9);
    new DataView(magic.head.buffer).setUint32(0, JBD2_MAGIC, false);
    const blocks: { block: number; data: BlockData }[] = [];
    for (let i = 0; i < 600; i++)
      blocks.push({ block: 100 + i * 3, data: i % 3 ? tailed(4 + (i % 50) * 4, i) : blockBytes(tailed(60, i)) });
    blocks.push({ block: 5000, data: magic }, { block: 5001, data: new ZeroTail(new Uint8Array([0xc0, 0x3b]), BS) });
    for (const f of [format({}), format({ csumV3: false, csumV2: true }), format({ csumV3: false })]) {
      const now = { sec: 1_700_000_000, nsec: 5 };
      const a = buildTransaction(f, 77, blocks, now).map(blockBytes);
      const b = buildTransaction(
        f,
        77,
        blocks.map((x) => ({ block: x.block, data: blockBytes(x.data) })),
        now,
      ).map(blockBytes);
      expect(a.length).toBe(b.length);
      for (let i = 0; i < a.length; i++) expect(Buffer.from(a[i]!).equals(Buffer.from(b[i]!))).toBe(true);
      // The escaped copy lost its magic, the block given in stayed as it was.
      expect(magic.head[0]).toBe(0xc0);
    }
  });

  it('are written as their materialized bytes, gathered (a file) or piece by piece (memory)', () => {
    const pieces: { block: number; data: BlockData }[] = [];
    // More blocks than one gathered write takes, adjacent, mixed with whole blocks and a gap.
    for (let i = 0; i < 1500; i++)
      pieces.push({ block: 10 + i, data: i % 5 ? tailed(4 * (i % 30), i) : blockBytes(tailed(BS, i)) });
    pieces.push({ block: 2000, data: tailed(100, 1) });
    const want = new Uint8Array(2001 * BS);
    for (const p of pieces) want.set(blockBytes(p.data), p.block * BS);
    const file = path.join(tmp, 'img');
    fs.writeFileSync(file, new Uint8Array(2001 * BS).fill(0xee));
    const dev = FileDevice.open(file, true);
    writeBlocks(dev, BS, pieces);
    dev.close();
    const got = fs.readFileSync(file);
    for (const p of pieces)
      expect(got.subarray(p.block * BS, (p.block + 1) * BS).equals(Buffer.from(blockBytes(p.data)))).toBe(true);
    const mem = new MemoryDevice(2001 * BS);
    writeBlocks(mem, BS, pieces);
    expect(Buffer.from(mem.read(0, 2001 * BS)).equals(Buffer.from(want))).toBe(true);
  });
});

describe("the resize inode's lists", () => {
  /** sparse_super's backup groups, counted here by definition: 1 and the powers of 3, 5 and 7. */
  const isBackup = (g: number) => {
    for (const p of [3, 5, 7]) {
      let x = 1;
      while (x < g) x *= p;
      if (x === g) return true;
    }
    return false;
  };

  it('list each reserved block copy in every backup group, in group order, then zeros', () => {
    for (const [bs, groups] of [
      [4096, 512],
      [1024, 900],
      [4096, 3],
    ] as const) {
      const bpg = bs * 8;
      const firstDataBlock = bs === 1024 ? 1 : 0;
      const geo: Geometry = {
        blockSize: bs,
        blocksCount: groups * bpg + firstDataBlock,
        firstDataBlock,
        blocksPerGroup: bpg,
        inodesPerGroup: 8192,
        groupCount: groups,
        descSize: 64,
        inodeSize: 256,
        superPolicy: 'sparse',
        backupGroups: [0, 0],
        metaBg: false,
        firstMetaBg: 0,
        reservedGdtBlocks: 256,
      };
      const backups = Array.from({ length: groups }, (_, g) => g).filter(isBackup);
      const lists = resizeListBlocks({ ...resizeGeometry(geo), descBlocks: 5 }, 0, 40);
      expect(lists.length).toBe(40);
      lists.forEach((l, i) => {
        const b = blockBytes(l);
        expect(b.length).toBe(bs);
        const dv = new DataView(b.buffer, b.byteOffset);
        backups.forEach((g, j) => expect(dv.getUint32(j * 4, true)).toBe(firstDataBlock + g * bpg + 1 + 5 + i));
        expect(b.subarray(backups.length * 4).every((v) => v === 0)).toBe(true);
      });
    }
  });
});
