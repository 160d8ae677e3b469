/**
 * Layout plans for every size class. Expected figures were read off mkfs.ext4 1.47.0 (stock
 * mke2fs.conf) for the same device sizes; test/mkfs-oracle.test.ts re-checks them against mkfs.ext4 live.
 */
import { describe, expect, it } from 'vitest';
import { planLayout, parseSize, sizeTypeFor, defaultJournalBlocks } from '../src/ext4/layout.js';
import { groupHasSuper, superGroups, groupFirstBlock } from '../src/ext4/geometry.js';
import { COMPAT } from '../src/ext4/features.js';

const K = 1024;
const M = K * K;
const G = K * M;
const T = K * G;

interface Expect {
  type: string;
  bs: number;
  blocks: number;
  inodes: number;
  ipg?: number;
  itb?: number;
  rsv?: number;
  journal?: number;
  groups?: number;
  resize?: boolean;
}

const CASES: [string, number, Expect, { blockSize?: number; inodeSize?: number }?][] = [
  ['120K (smallest mkfs accepts)', 120 * K, { type: 'floppy', bs: 1024, blocks: 120, inodes: 16, rsv: 0, journal: 0 }],
  ['2M floppy', 2 * M, { type: 'floppy', bs: 1024, blocks: 2048, inodes: 256, rsv: 15, journal: 1024, groups: 1 }],
  [
    '3 MiB - 1 (floppy, page-rounded)',
    3 * M - 1,
    { type: 'floppy', bs: 1024, blocks: 3068, inodes: 384, rsv: 23, journal: 1024 },
  ],
  ['3M small', 3 * M, { type: 'small', bs: 1024, blocks: 3072, inodes: 768, rsv: 23 }],
  [
    '100M small',
    100 * M,
    {
      type: 'small',
      bs: 1024,
      blocks: 102400,
      inodes: 25584,
      ipg: 1968,
      itb: 492,
      rsv: 256,
      journal: 4096,
      groups: 13,
    },
  ],
  [
    '512 MiB - 1 small',
    512 * M - 1,
    { type: 'small', bs: 1024, blocks: 524284, inodes: 131072, ipg: 2048, journal: 8192 },
  ],
  ['512M default', 512 * M, { type: 'default', bs: 4096, blocks: 131072, inodes: 32768, rsv: 63, journal: 4096 }],
  [
    '1000000123 bytes',
    1000000123,
    { type: 'default', bs: 4096, blocks: 244140, inodes: 61056, ipg: 7632, itb: 477, rsv: 119 },
  ],
  [
    '8G',
    8 * G,
    {
      type: 'default',
      bs: 4096,
      blocks: 2097152,
      inodes: 524288,
      ipg: 8192,
      itb: 512,
      rsv: 1023,
      journal: 16384,
      groups: 64,
    },
  ],
  ['1T', T, { type: 'default', bs: 4096, blocks: 268435456, inodes: 67108864, rsv: 1024, journal: 262144 }],
  ['4 TiB - 4 KiB', 4 * T - 4096, { type: 'default', bs: 4096, blocks: 1073741823, inodes: 268435456, ipg: 8192 }],
  ['4T big', 4 * T, { type: 'big', bs: 4096, blocks: 1073741824, inodes: 134217728, ipg: 4096 }],
  [
    '16 TiB - 4 KiB',
    16 * T - 4096,
    { type: 'big', bs: 4096, blocks: 4294967295, inodes: 536870912, rsv: 0, resize: true },
  ],
  ['16T huge', 16 * T, { type: 'huge', bs: 4096, blocks: 4294967296, inodes: 268435456, ipg: 2048, resize: false }],
  ['20T huge', 20 * T, { type: 'huge', bs: 4096, blocks: 5368709120, inodes: 335544320 }],
  [
    '8G with 64 KiB blocks',
    8 * G,
    { type: 'default', bs: 65536, blocks: 131056, inodes: 130560, ipg: 65280, rsv: 1, journal: 4096 },
    { blockSize: 65536 },
  ],
  [
    '64M with 64 KiB blocks (no journal)',
    64 * M,
    { type: 'small', bs: 65536, blocks: 1024, inodes: 1024, journal: 0 },
    { blockSize: 65536 },
  ],
  [
    '100M with 4 KiB blocks',
    100 * M,
    { type: 'small', bs: 4096, blocks: 25600, inodes: 25600, rsv: 12, journal: 1024 },
    { blockSize: 4096 },
  ],
  [
    '8G with 128-byte inodes',
    8 * G,
    { type: 'default', bs: 4096, blocks: 2097152, inodes: 524288, itb: 256 },
    { inodeSize: 128 },
  ],
];

describe('planLayout matches mkfs.ext4 geometry', () => {
  for (const [name, size, e, opt] of CASES) {
    it(name, () => {
      const l = planLayout({ sizeBytes: size, ...opt });
      expect(l.sizeType).toBe(e.type);
      expect(l.blockSize).toBe(e.bs);
      expect(l.blocksCount).toBe(e.blocks);
      expect(l.inodesCount).toBe(e.inodes);
      if (e.ipg !== undefined) expect(l.inodesPerGroup).toBe(e.ipg);
      if (e.itb !== undefined) expect(l.inodeBlocksPerGroup).toBe(e.itb);
      if (e.rsv !== undefined) expect(l.reservedGdtBlocks).toBe(e.rsv);
      if (e.journal !== undefined) expect(l.journalBlocks).toBe(e.journal);
      if (e.groups !== undefined) expect(l.groupCount).toBe(e.groups);
      if (e.resize !== undefined) expect((l.features.compat & COMPAT.resize_inode) !== 0).toBe(e.resize);
      expect((l.features.compat & COMPAT.has_journal) !== 0).toBe(l.journalBlocks > 0);
      if (l.blocksCount === Math.floor(size / l.blockSize))
        expect(l.reservedBlocks).toBe(Math.floor(l.blocksCount / 20));
      // Every group's tables lie inside the file system and do not overlap (the interval set would merge them).
      expect(l.used.total()).toBe(
        l.firstDataBlock +
          l.superGroups.length * (1 + l.descBlocks + l.reservedGdtBlocks) +
          l.groupCount * (2 + l.inodeBlocksPerGroup),
      );
      for (let g = 0; g < l.groupCount; g += Math.max(1, Math.floor(l.groupCount / 64))) {
        expect(l.inodeTable[g]! + l.inodeBlocksPerGroup).toBeLessThanOrEqual(l.blocksCount);
      }
    });
  }

  it('places flex_bg tables like mkfs: 8G group 0 and group 16', () => {
    const l = planLayout({ sizeBytes: 8 * G });
    expect([l.blockBitmap[0], l.inodeBitmap[0], l.inodeTable[0]]).toEqual([1025, 1041, 1057]);
    expect([l.blockBitmap[1], l.inodeBitmap[1], l.inodeTable[1]]).toEqual([1026, 1042, 1569]);
    expect([l.blockBitmap[16], l.inodeBitmap[16], l.inodeTable[16]]).toEqual([524288, 524304, 524320]);
  });
  it('packs a last partial flex group tightly (100M: 13 groups)', () => {
    const l = planLayout({ sizeBytes: 100 * M });
    expect(l.blockBitmap[12]).toBe(271);
    expect(l.inodeBitmap[12]).toBe(284);
  });
  it('drops a last group too small for its own metadata plus 50 blocks', () => {
    // Boundaries measured with mkfs.ext4: 4 full groups + r blocks keeps r >= 464; 5 + r keeps r >= 563.
    expect(planLayout({ sizeBytes: (4 * 32768 + 463) * 4096 }).blocksCount).toBe(4 * 32768);
    // ...and keeps the reserved ratio of the requested size: 6552, not 5% of 131072 (6553).
    expect(planLayout({ sizeBytes: (4 * 32768 + 463) * 4096 }).reservedBlocks).toBe(6552);
    expect(planLayout({ sizeBytes: (4 * 32768 + 464) * 4096 }).blocksCount).toBe(4 * 32768 + 464);
    expect(planLayout({ sizeBytes: (5 * 32768 + 562) * 4096 }).blocksCount).toBe(5 * 32768);
    expect(planLayout({ sizeBytes: (5 * 32768 + 563) * 4096 }).blocksCount).toBe(5 * 32768 + 563);
  });
  it('caps the inode count at 2^32 - 1', () => {
    const l = planLayout({ sizeBytes: 150 * T });
    expect(l.inodesCount).toBeLessThanOrEqual(0xffffffff);
    expect(l.inodesPerGroup % 8).toBe(0);
  });
});

describe('size rules', () => {
  it('size classes switch at 3 MiB, 512 MiB, 4 TiB and 16 TiB', () => {
    expect([3 * M - 1, 3 * M, 512 * M - 1, 512 * M, 4 * T - 1, 4 * T, 16 * T - 1, 16 * T].map(sizeTypeFor)).toEqual([
      'floppy',
      'small',
      'small',
      'default',
      'default',
      'big',
      'big',
      'huge',
    ]);
  });
  it('journal sizes', () => {
    expect(
      [2047, 2048, 32767, 32768, 262144, 524288, 4194304, 8388608, 16777216, 33554432].map(defaultJournalBlocks),
    ).toEqual([0, 1024, 1024, 4096, 8192, 16384, 32768, 65536, 131072, 262144]);
  });
  it('sparse_super backup groups', () => {
    expect(superGroups(100)).toEqual([0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
    expect([243, 125, 343, 2401, 15, 21].map(groupHasSuper)).toEqual([true, true, true, true, false, false]);
    expect(groupFirstBlock({ firstDataBlock: 1, blocksPerGroup: 8192 }, 3)).toBe(24577);
  });
  it('parses sizes with powers of 1024 and rejects the rest', () => {
    expect(parseSize('8G')).toBe(8 * G);
    expect(parseSize('512m')).toBe(512 * M);
    expect(parseSize('1000000123')).toBe(1000000123);
    expect(parseSize('2KiB')).toBe(2048);
    for (const bad of ['', '1.5G', '-1', '8X', 'G', '10 GG'])
      expect(() => parseSize(bad)).toThrowError(expect.objectContaining({ code: 'BAD_SIZE' }));
    expect(() => parseSize('9P')).toThrowError(expect.objectContaining({ code: 'TOO_LARGE' }));
  });
  it('rejects sizes and options mkfs would reject', () => {
    expect(() => planLayout({ sizeBytes: 100 * K })).toThrowError(expect.objectContaining({ code: 'TOO_SMALL' }));
    expect(() => planLayout({ sizeBytes: 0 })).toThrowError(expect.objectContaining({ code: 'BAD_SIZE' }));
    expect(() => planLayout({ sizeBytes: 8 * G, blockSize: 3000 })).toThrowError(
      expect.objectContaining({ code: 'BAD_OPTION' }),
    );
    expect(() => planLayout({ sizeBytes: 8 * G, inodeSize: 100 })).toThrowError(
      expect.objectContaining({ code: 'BAD_OPTION' }),
    );
    expect(() => planLayout({ sizeBytes: 8 * G, blockSize: 1024, inodeSize: 2048 })).toThrowError(
      expect.objectContaining({ code: 'BAD_OPTION' }),
    );
    // Sizes that need meta_bg are refused with a clear code rather than formatted differently from mkfs.
    expect(() => planLayout({ sizeBytes: 300 * T })).toThrowError(
      expect.objectContaining({ code: 'UNSUPPORTED_FEATURE' }),
    );
  });
});
