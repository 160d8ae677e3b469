import { describe, expect, it } from 'vitest';
import { emptySuperblock, encodeSuperblock, decodeSuperblock, superblockChecksum } from '../src/ext4/superblock.js';
import { decodeGroupDesc, encodeGroupDesc, groupDescChecksum, crc16, type GroupDesc } from '../src/ext4/group-desc.js';
import {
  decodeInode,
  encodeInode,
  emptyInode,
  setInodeChecksum,
  inodeChecksum,
  storedInodeChecksum,
  encodeTime,
  decodeTime,
} from '../src/ext4/inode.js';
import {
  buildExtentTree,
  extentTreeBlockCount,
  decodeExtentHeader,
  decodeExtent,
  decodeExtentIndex,
  blockMaxEntries,
  runToExtents,
  type Extent,
} from '../src/ext4/extent.js';
import {
  packDirBlocks,
  decodeDirBlock,
  direntSize,
  encodeRecLen,
  decodeRecLen,
  FT_DIR,
  FT_REG_FILE,
} from '../src/ext4/dirent.js';
import { setBitRange, countBits, testBit } from '../src/ext4/bitmap.js';
import { newJournalSuperblock, decodeJournalSuperblock, JBD2_MAGIC } from '../src/ext4/journal.js';
import { crc32c } from '../src/core/crc32c.js';
import { IntervalSet } from '../src/ext4/intervals.js';
import { parseUuid, formatUuid } from '../src/core/bytes.js';
import { Ext4Error } from '../src/core/errors.js';

describe('superblock', () => {
  it('round-trips every field and checks magic and checksum', () => {
    const sb = emptySuperblock();
    Object.assign(sb, {
      s_inodes_count: 524288,
      s_blocks_count_lo: 0x89abcdef,
      s_blocks_count_hi: 0x12,
      s_magic: 0xef53,
      s_feature_ro_compat: 0x400,
      s_log_groups_per_flex: 4,
      s_overhead_clusters: 58505,
      s_kbytes_written_lo: 4129,
      s_wtime_hi: 1,
    });
    sb.s_uuid = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
    sb.s_jnl_blocks = Array.from({ length: 17 }, (_, i) => i * 1000);
    const bytes = encodeSuperblock(sb);
    expect(bytes.length).toBe(1024);
    const back = decodeSuperblock(bytes);
    expect(back.s_blocks_count_hi).toBe(0x12);
    expect(back.s_overhead_clusters).toBe(58505);
    expect(back.s_jnl_blocks).toEqual(sb.s_jnl_blocks);
    expect([...back.s_uuid]).toEqual([...sb.s_uuid]);
    expect(back.s_checksum).toBe(superblockChecksum(bytes));
    expect(encodeSuperblock(back)).toEqual(bytes);
    const bad = bytes.slice();
    bad[0] = bad[0]! ^ 1;
    expect(() => decodeSuperblock(bad)).toThrowError(expect.objectContaining({ code: 'BAD_CHECKSUM' }));
    const notExt = new Uint8Array(1024);
    expect(() => decodeSuperblock(notExt)).toThrowError(expect.objectContaining({ code: 'BAD_MAGIC' }));
  });
});

describe('group descriptors', () => {
  const d: GroupDesc = {
    blockBitmap: 0x1_0000_0401,
    inodeBitmap: 0x411,
    inodeTable: 0x2_0000_0421,
    freeBlocks: 0x1_5bd9,
    freeInodes: 0x1ff5,
    usedDirs: 2,
    flags: 4,
    excludeBitmap: 0,
    blockBitmapCsum: 0xea8fa66b,
    inodeBitmapCsum: 0xd30e3211,
    itableUnused: 0x1ff5,
    checksum: 0xd081,
  };
  it('round-trips 64-byte descriptors', () => {
    const b = new Uint8Array(128);
    encodeGroupDesc(b, 64, 64, d);
    expect(decodeGroupDesc(b, 64, 64)).toEqual(d);
  });
  it('32-byte descriptors keep only the low halves', () => {
    const b = new Uint8Array(32);
    encodeGroupDesc(b, 0, 32, d);
    const back = decodeGroupDesc(b, 0, 32);
    expect(back.blockBitmap).toBe(0x401);
    expect(back.freeBlocks).toBe(0x5bd9);
    expect(back.blockBitmapCsum).toBe(0xa66b);
  });
  it('checksum ignores the stored checksum field and depends on the group number', () => {
    const b = new Uint8Array(64);
    encodeGroupDesc(b, 0, 64, d);
    const c1 = groupDescChecksum(0x1234, 0, b, 0, 64);
    b[0x1e] = 0x55;
    expect(groupDescChecksum(0x1234, 0, b, 0, 64)).toBe(c1);
    expect(groupDescChecksum(0x1234, 1, b, 0, 64)).not.toBe(c1);
    expect(c1).toBeLessThan(0x10000);
  });
  it('crc16 matches the CRC-16/ARC check value', () => {
    // CRC-16/ARC("123456789") = 0xBB3D with init 0; gdt_csum uses init ~0 (CRC-16/MODBUS = 0x4B37).
    const msg = new TextEncoder().encode('123456789');
    expect(crc16(0, msg, 0, msg.length)).toBe(0xbb3d);
    expect(crc16(0xffff, msg, 0, msg.length)).toBe(0x4b37);
  });
});

describe('inode', () => {
  it('encodes times with epoch bits and nanoseconds', () => {
    for (const sec of [0, 1, -1, 0x7fffffff, -0x80000000, 0x80000000, 2 ** 33 + 5, 2 ** 34 - 2 ** 31 - 1]) {
      const { lo, extra } = encodeTime({ sec, nsec: 999_999_999 });
      expect(decodeTime(lo, extra)).toEqual({ sec, nsec: 999_999_999 });
    }
    expect(decodeTime(0xffffffff, undefined)).toEqual({ sec: -1, nsec: 0 });
    // Out of range: clamped to the ends of what ext4 can store.
    const far = encodeTime({ sec: 2 ** 40, nsec: 0 });
    expect(decodeTime(far.lo, far.extra).sec).toBe(2 ** 34 - 2 ** 31 - 1);
    const early = encodeTime({ sec: -(2 ** 40), nsec: 0 });
    expect(decodeTime(early.lo, early.extra).sec).toBe(-(2 ** 31));
  });
  it('round-trips a 256-byte inode and checksums it (32-bit with extra_isize >= 4)', () => {
    const ino = {
      ...emptyInode(),
      mode: 0o100644,
      uid: 100_000,
      gid: 70_000,
      size: 6 * 2 ** 30 + 17,
      atime: { sec: 2 ** 32 + 10, nsec: 5 },
      mtime: { sec: -5, nsec: 123 },
      ctime: { sec: 1_700_000_000, nsec: 1 },
      crtime: { sec: 1_600_000_000, nsec: 2 },
      linksCount: 3,
      blocks: 2 ** 33,
      flags: 0x80000,
      generation: 0xdeadbeef,
      fileAcl: 2 ** 40 + 3,
      extraIsize: 32,
      projid: 9,
    };
    const b = new Uint8Array(256);
    encodeInode(b, 0, 256, ino);
    expect(decodeInode(b, 0, 256)).toEqual({ ...ino, version: 0, block: new Uint8Array(60), dtime: 0 });
    setInodeChecksum(0xabcdef01, 12, b, 0, 256);
    expect(storedInodeChecksum(b, 0, 256)).toBe(inodeChecksum(0xabcdef01, 12, b, 0, 256));
    expect(storedInodeChecksum(b, 0, 256)).toBeGreaterThan(0xffff);
  });
  it('128-byte inodes: no extra fields, 16-bit checksum, seconds only', () => {
    const b = new Uint8Array(128);
    encodeInode(b, 0, 128, { ...emptyInode(), mode: 0o40755, mtime: { sec: 100, nsec: 5 } });
    const back = decodeInode(b, 0, 128);
    expect(back.mtime).toEqual({ sec: 100, nsec: 0 });
    expect(back.extraIsize).toBe(0);
    setInodeChecksum(1, 2, b, 0, 128);
    expect(storedInodeChecksum(b, 0, 128)).toBeLessThan(0x10000);
  });
});

describe('extent trees', () => {
  function walk(iBlock: Uint8Array, blocks: Map<number, Uint8Array>): Extent[] {
    const out: Extent[] = [];
    const visit = (node: Uint8Array) => {
      const h = decodeExtentHeader(node, 0);
      expect(h.magic).toBe(0xf30a);
      for (let i = 0; i < h.entries; i++) {
        if (h.depth === 0) out.push(decodeExtent(node, 12 + i * 12));
        else visit(blocks.get(decodeExtentIndex(node, 12 + i * 12).leaf)!);
      }
    };
    visit(iBlock);
    return out;
  }
  for (const n of [1, 4, 5, 340, 341, 1500, 340 * 340 + 1]) {
    it(`builds and walks a tree of ${n} extents`, () => {
      const exts: Extent[] = Array.from({ length: n }, (_, i) => ({
        lblk: i * 10,
        len: 5,
        pblk: 1_000_000 + i * 7,
        uninit: i % 3 === 0,
      }));
      const count = extentTreeBlockCount(n, 4096);
      const treeBlocks = Array.from({ length: count }, (_, i) => 50 + i);
      const t = buildExtentTree(exts, 4096, treeBlocks, 0x1234);
      expect(t.blocks.length).toBe(count);
      const map = new Map(t.blocks.map((b) => [b.block, b.data]));
      expect(walk(t.iBlock, map)).toEqual(exts);
      for (const b of t.blocks) {
        const tail = 12 + blockMaxEntries(4096) * 12;
        const stored = b.data[tail]! | (b.data[tail + 1]! << 8) | (b.data[tail + 2]! << 16) | (b.data[tail + 3]! << 24);
        expect(stored >>> 0).toBe(crc32c(0x1234, b.data, 0, tail));
      }
      expect(t.depth).toBe(n <= 4 ? 0 : n <= 4 * 340 ? 1 : 2);
    });
  }
  it('splits long runs at 32768 blocks and rejects a wrong block count', () => {
    expect(runToExtents(0, 100, 70000).map((e) => e.len)).toEqual([32768, 32768, 4464]);
    expect(() => buildExtentTree(runToExtents(0, 0, 5 * 32768), 4096, [])).toThrow(Ext4Error);
  });
});

describe('directory blocks', () => {
  const enc = new TextEncoder();
  it('packs entries, stretches the last one, and adds a checksummed tail', () => {
    const entries = Array.from({ length: 300 }, (_, i) => ({
      inode: 12 + i,
      name: enc.encode(`file-${i}-${'x'.repeat(i % 40)}`),
      fileType: i % 2 ? FT_DIR : FT_REG_FILE,
    }));
    const blocks = packDirBlocks(entries, 4096, 0x77);
    expect(blocks.length).toBeGreaterThan(1);
    const back = blocks.flatMap((b) => decodeDirBlock(b, 4096));
    expect(back.map((e) => [e.inode, new TextDecoder().decode(e.name), e.fileType])).toEqual(
      entries.map((e) => [e.inode, new TextDecoder().decode(e.name), e.fileType]),
    );
    for (const b of blocks) {
      const t = 4096 - 12;
      expect(b[t + 4]).toBe(12);
      expect(b[t + 7]).toBe(0xde);
      const stored = (b[t + 8]! | (b[t + 9]! << 8) | (b[t + 10]! << 16) | (b[t + 11]! << 24)) >>> 0;
      expect(stored).toBe(crc32c(0x77, b, 0, t));
    }
  });
  it('sizes, rec_len encodings and corrupt rec_len', () => {
    expect(direntSize(1)).toBe(12);
    expect(direntSize(10)).toBe(20);
    expect(direntSize(255)).toBe(264);
    expect(decodeRecLen(encodeRecLen(65536), 65536)).toBe(65536);
    expect(decodeRecLen(encodeRecLen(4084), 4096)).toBe(4084);
    const b = packDirBlocks([{ inode: 2, name: enc.encode('.'), fileType: FT_DIR }], 1024, undefined)[0]!;
    b[4] = 3; // rec_len 3: not a multiple of 4 and too short
    expect(() => decodeDirBlock(b, 1024)).toThrowError(expect.objectContaining({ code: 'CORRUPT' }));
  });
});

describe('bitmaps, journal superblock, uuids, interval sets', () => {
  it('sets ranges and counts bits', () => {
    const b = new Uint8Array(64);
    setBitRange(b, 3, 300);
    expect(countBits(b, 512)).toBe(297);
    expect(testBit(b, 2)).toBe(false);
    expect(testBit(b, 3)).toBe(true);
    expect(testBit(b, 299)).toBe(true);
    expect(testBit(b, 300)).toBe(false);
  });
  it('writes a clean v2 journal superblock', () => {
    const uuid = parseUuid('11111111-2222-3333-4444-555555555555')!;
    const j = decodeJournalSuperblock(newJournalSuperblock(4096, 16384, uuid));
    expect(j.h_magic).toBe(JBD2_MAGIC);
    expect(j.h_blocktype).toBe(4);
    expect(j.s_maxlen).toBe(16384);
    expect(j.s_first).toBe(1);
    expect(j.s_sequence).toBe(1);
    expect(j.s_start).toBe(0);
    expect(j.s_nr_users).toBe(1);
    expect(formatUuid(j.s_uuid)).toBe('11111111-2222-3333-4444-555555555555');
    expect(() => decodeJournalSuperblock(new Uint8Array(1024))).toThrowError(
      expect.objectContaining({ code: 'BAD_MAGIC' }),
    );
  });
  it('parses and formats uuids', () => {
    expect(parseUuid('not-a-uuid')).toBeUndefined();
    expect(formatUuid(parseUuid('AAAAAAAA-bbbb-cccc-dddd-eeeeeeeeeeee')!)).toBe('aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee');
  });
  it('merges ranges and answers overlap queries', () => {
    const s = new IntervalSet();
    s.add(10, 5);
    s.add(20, 5);
    s.add(15, 5); // bridges the two
    expect(s.ranges).toEqual([10, 25]);
    s.add(100, 1);
    expect(s.firstOverlap(25, 75)).toBeUndefined();
    expect(s.firstOverlap(25, 76)).toEqual([100, 101]);
    expect(s.countIn(0, 1000)).toBe(16);
    expect(s.countIn(12, 22)).toBe(10);
    expect(s.total()).toBe(16);
  });
});

describe('utf8 and path normalizing (the editor fast paths)', () => {
  it('utf8 equals TextEncoder on ASCII, non-ASCII, lone surrogates and long strings', async () => {
    const { utf8 } = await import('../src/core/bytes.js');
    const te = new TextEncoder();
    for (const s of ['', 'a', 'f0', 'héllo', '日本', 'x\ud800y', 'a'.repeat(65), 'é'.repeat(70), '\x7f\x00'])
      expect(Array.from(utf8(s))).toEqual(Array.from(te.encode(s)));
  });
  it('normalize keeps a path already in form and folds the others as before', async () => {
    const { normalize } = await import('../src/edit/op-context.js');
    const slow = (p: string) =>
      '/' +
      p
        .split('/')
        .filter((x) => x !== '' && x !== '.')
        .join('/');
    for (const p of [
      '/',
      '/a',
      '/a/b',
      'a/b',
      '//a',
      '/a//b',
      '/a/./b',
      '/a/.',
      '/a/',
      '/./',
      '/..',
      '/a/..',
      '/a/.b',
      '/.a/b.',
      '.',
      '',
      '/a/b/',
    ])
      expect(normalize(p)).toBe(slow(p));
  });
});
