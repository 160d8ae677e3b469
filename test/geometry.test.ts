/**
 * Block-group geometry (ext4/geometry.ts) on hand-made numbers, and on images the formatter plans: the
 * descriptor and superblock places it computes must be where the formatter put them. The file-type
 * table (ext4/filetype.ts) both ways.
 */
import { describe, expect, it } from 'vitest';
import {
  type Geometry,
  groupOfBlock,
  groupFirstBlock,
  groupBlocks,
  groupOfInode,
  inodeIndex,
  groupInode,
  inodesPerBlock,
  inodeTableBlocks,
  groupHasSuperblock,
  descBlockLoc,
  descLocation,
  groupFixedMeta,
  descBlockCopies,
  superblockGroups,
} from '../src/ext4/geometry.js';
import {
  fileTypeOf,
  fileTypeOfMode,
  typeLetterOf,
  MODE_OF_TYPE,
  DIRENT_TYPE_OF,
  type FileType,
} from '../src/ext4/filetype.js';
import { S_IFSOCK } from '../src/ext4/inode.js';
import { FT_UNKNOWN } from '../src/ext4/dirent.js';
import { formatDevice } from '../src/mkfs/format.js';
import { MemoryDevice } from '../src/io/device.js';
import { Ext4Reader } from '../src/fs/reader.js';

/** 1 KiB blocks, 8192 per group, 5 groups, the last one short. */
const small: Geometry = {
  blockSize: 1024,
  blocksCount: 4 * 8192 + 1 + 100,
  firstDataBlock: 1,
  blocksPerGroup: 8192,
  inodesPerGroup: 2048,
  groupCount: 5,
  descSize: 32,
  inodeSize: 256,
  superPolicy: 'sparse',
  backupGroups: [0, 0],
  metaBg: false,
  firstMetaBg: 0,
  reservedGdtBlocks: 31,
};

describe('geometry', () => {
  it('maps blocks and inodes to groups', () => {
    expect(groupOfBlock(small, 1)).toBe(0);
    expect(groupOfBlock(small, 8192)).toBe(0);
    expect(groupOfBlock(small, 8193)).toBe(1);
    expect(groupFirstBlock(small, 4)).toBe(32769);
    expect([0, 3, 4].map((g) => groupBlocks(small, g))).toEqual([8192, 8192, 100]);
    expect([1, 2048, 2049].map((i) => groupOfInode(small, i))).toEqual([0, 0, 1]);
    expect([1, 2048, 2049].map((i) => inodeIndex(small, i))).toEqual([0, 2047, 0]);
    for (const ino of [1, 2048, 2049, 5000])
      expect(groupInode(small, groupOfInode(small, ino), inodeIndex(small, ino))).toBe(ino);
    expect(inodesPerBlock(small)).toBe(4);
    expect(inodeTableBlocks(small)).toBe(512);
  });
  it('places superblock backups by policy', () => {
    expect([0, 1, 2, 3, 4].map((g) => groupHasSuperblock(small, g))).toEqual([true, true, false, true, false]);
    expect([0, 1, 2].map((g) => groupHasSuperblock({ ...small, superPolicy: 'all' }, g))).toEqual([true, true, true]);
    const two = { ...small, superPolicy: 'sparse2' as const, backupGroups: [1, 4] as [number, number] };
    expect([0, 1, 2, 3, 4].map((g) => groupHasSuperblock(two, g))).toEqual([true, true, false, false, true]);
  });
  it('finds descriptor blocks, with and without meta_bg', () => {
    expect(descBlockLoc(small, 0)).toBe(2);
    expect(descLocation(small, 4)).toEqual({ block: 2, offset: 128 });
    // meta_bg from descriptor block 1: 32 descriptors a block, so block 1 describes groups 32..63 and lies
    // in group 32 (no backup there: first block of the group).
    const mb: Geometry = { ...small, metaBg: true, firstMetaBg: 1, groupCount: 70, blocksCount: 70 * 8192 + 1 };
    expect(descBlockLoc(mb, 0)).toBe(2);
    expect(descBlockLoc(mb, 1)).toBe(groupFirstBlock(mb, 32));
    expect(descLocation(mb, 33)).toEqual({ block: groupFirstBlock(mb, 32), offset: 32 });
    // Group 1 keeps a backup superblock, then the old-style descriptor blocks (first_meta_bg of them).
    expect(groupFixedMeta(mb, 1)).toEqual([
      [8193, 1],
      [8194, 1],
    ]);
    // Group 33 holds a copy of its meta group's descriptor block (the 2nd group of the meta group).
    expect(groupFixedMeta(mb, 33)).toEqual([[groupFirstBlock(mb, 33), 1]]);
    expect(groupFixedMeta(mb, 34)).toEqual([]);
    // Group 49 (7^2) keeps a superblock but, past first_meta_bg, no old-style descriptor blocks.
    expect(groupFixedMeta(mb, 49)).toEqual([[groupFirstBlock(mb, 49), 1]]);
    expect(descBlockCopies(mb, 0)).toEqual([
      2,
      8194,
      24578,
      40962,
      57346,
      groupFirstBlock(mb, 9) + 1,
      groupFirstBlock(mb, 25) + 1,
      groupFirstBlock(mb, 27) + 1,
    ]);
    expect(descBlockCopies(mb, 1)).toEqual([groupFirstBlock(mb, 32), groupFirstBlock(mb, 33), groupFirstBlock(mb, 63)]);
    expect(superblockGroups(mb)).toEqual([0, 1, 3, 5, 7, 9, 25, 27, 49]);
  });
  it('fixed metadata of a group with a backup: superblock, descriptors and reserved GDT blocks', () => {
    expect(groupFixedMeta(small, 3)).toEqual([
      [24577, 1],
      [24578, 1 + 31],
    ]);
    expect(groupFixedMeta(small, 2)).toEqual([]);
  });
  it('agrees with what the formatter wrote', () => {
    for (const sizeBytes of [16 << 20, 600 << 20]) {
      const dev = new MemoryDevice(sizeBytes);
      formatDevice(dev, { sizeBytes });
      const r = Ext4Reader.open(dev);
      expect(r.geo.groupCount).toBe(r.groupCount);
      expect(r.geo.blocksPerGroup).toBe(r.sb.s_blocks_per_group);
      for (let g = 0; g < r.groupCount; g++) {
        // Every superblock copy the geometry names carries the magic; the descriptors decode and
        // verify (groupDesc checks their checksums).
        if (groupHasSuperblock(r.geo, g)) {
          const b = groupFirstBlock(r.geo, g);
          const off = g === 0 ? 1024 : b * r.blockSize;
          expect(new DataView(dev.read(off + 0x38, 2).buffer).getUint16(0, true), `group ${g}`).toBe(0xef53);
        }
        expect(r.groupDesc(g).inodeTable).toBeGreaterThan(0);
      }
    }
  });
});

describe('file types', () => {
  it('maps modes, names and directory entry types both ways', () => {
    for (const [t, mode] of Object.entries(MODE_OF_TYPE) as [FileType, number][]) {
      expect(fileTypeOf(mode | 0o644)).toBe(t);
      expect(fileTypeOfMode(mode | 0o755)).toBe(DIRENT_TYPE_OF[t]);
    }
    expect(Object.keys(MODE_OF_TYPE)).toHaveLength(7);
    expect(new Set(Object.values(DIRENT_TYPE_OF)).size).toBe(7);
    expect(fileTypeOf(0)).toBeUndefined();
    expect(fileTypeOf(0xe000)).toBeUndefined();
    expect(fileTypeOfMode(0xe000)).toBe(FT_UNKNOWN);
    expect(fileTypeOf(S_IFSOCK)).toBe('socket');
    expect(DIRENT_TYPE_OF.socket).toBe(6);
  });

  it('gives the letter ls -l shows for each type', () => {
    const letters = Object.values(MODE_OF_TYPE)
      .map((m) => typeLetterOf(m | 0o755))
      .join('');
    expect(letters).toBe('-dlcbps');
    expect(typeLetterOf(0xe000)).toBe('?');
  });
});
