/**
 * Checksum vectors taken from images mkfs.ext4 writes: our checksum functions must reproduce every
 * checksum e2fsprogs stored (superblock, each group descriptor, the group bitmaps, the reserved inodes,
 * directory block tails and the journal's extent tree block).
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HAVE_E2FSPROGS, oracleAvailable, run, scratchDir } from './helpers/oracle.js';
import { FileDevice } from '../src/io/device.js';
import { decodeSuperblock, superblockChecksum, SUPERBLOCK_OFFSET } from '../src/ext4/superblock.js';
import { decodeGroupDesc, groupDescChecksum, BG_BLOCK_UNINIT, BG_INODE_UNINIT } from '../src/ext4/group-desc.js';
import { inodeChecksum, storedInodeChecksum, decodeInode } from '../src/ext4/inode.js';
import { bitmapChecksum } from '../src/ext4/bitmap.js';
import { crc32c } from '../src/core/crc32c.js';
import { u32 } from '../src/core/bytes.js';
import { decodeExtentHeader, decodeExtentIndex, extentBlockChecksumOffset } from '../src/ext4/extent.js';
import { inodeCsumSeed } from '../src/ext4/inode.js';

const runIt = oracleAvailable('checksum vectors from mkfs.ext4 images', HAVE_E2FSPROGS);

describe.runIf(runIt)('checksums match what mkfs.ext4 stored', () => {
  for (const [size, extra] of [
    ['8G', []],
    ['100M', []],
    ['1T', []],
    ['2G', ['-I', '128']],
  ] as [string, string[]][]) {
    it(`${size} ${extra.join(' ')}`, () => {
      const dir = scratchDir('ext4wd-csum', true);
      const img = path.join(dir, 'm.img');
      try {
        run('truncate', ['-s', size, img]);
        expect(run('mkfs.ext4', ['-q', '-F', ...extra, img]).status).toBe(0);
        const dev = FileDevice.open(img);
        const sbBytes = dev.read(SUPERBLOCK_OFFSET, 1024);
        const sb = decodeSuperblock(sbBytes);
        expect(superblockChecksum(sbBytes)).toBe(sb.s_checksum);
        const bs = 1024 << sb.s_log_block_size;
        const seed = crc32c(0xffffffff, sb.s_uuid);
        const groups = Math.ceil(
          (sb.s_blocks_count_lo + sb.s_blocks_count_hi * 2 ** 32 - sb.s_first_data_block) / sb.s_blocks_per_group,
        );
        const gdt = dev.read((sb.s_first_data_block + 1) * bs, groups * sb.s_desc_size);
        let checkedBitmaps = 0;
        for (let g = 0; g < groups; g++) {
          const d = decodeGroupDesc(gdt, g * sb.s_desc_size, sb.s_desc_size);
          expect(groupDescChecksum(seed, g, gdt, g * sb.s_desc_size, sb.s_desc_size)).toBe(d.checksum);
          if (!(d.flags & BG_BLOCK_UNINIT) && checkedBitmaps < 40) {
            expect(bitmapChecksum(seed, dev.read(d.blockBitmap * bs, bs), sb.s_clusters_per_group)).toBe(
              d.blockBitmapCsum,
            );
            checkedBitmaps++;
          }
          if (!(d.flags & BG_INODE_UNINIT))
            expect(bitmapChecksum(seed, dev.read(d.inodeBitmap * bs, bs), sb.s_inodes_per_group)).toBe(
              d.inodeBitmapCsum,
            );
        }
        const gd0 = decodeGroupDesc(gdt, 0, sb.s_desc_size);
        const isz = sb.s_inode_size;
        const table = dev.read(gd0.inodeTable * bs, 11 * isz);
        for (let ino = 1; ino <= 11; ino++) {
          expect(inodeChecksum(seed, ino, table, (ino - 1) * isz, isz)).toBe(
            storedInodeChecksum(table, (ino - 1) * isz, isz),
          );
        }
        // Directory block tails of / and lost+found.
        for (const ino of [2, 11]) {
          const inode = decodeInode(table, (ino - 1) * isz, isz);
          const first = u32(inode.block, 12 + 8);
          const blk = dev.read(first * bs, bs);
          expect(u32(blk, bs - 4)).toBe(crc32c(inodeCsumSeed(seed, ino, inode.generation), blk, 0, bs - 12));
        }
        // The journal's extent tree block (1 GiB journals need one).
        const j = decodeInode(table, 7 * isz, isz);
        if (decodeExtentHeader(j.block, 0).depth > 0) {
          const leaf = dev.read(decodeExtentIndex(j.block, 12).leaf * bs, bs);
          const t = extentBlockChecksumOffset(bs);
          expect(u32(leaf, t)).toBe(crc32c(inodeCsumSeed(seed, 8, j.generation), leaf, 0, t));
        }
        dev.close();
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
