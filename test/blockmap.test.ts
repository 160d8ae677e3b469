/**
 * Block maps moved in place (src/fs/blockmap.ts: moveMapBlock, remapData), what resize needs to empty
 * the blocks past a new end: extent tree nodes (a leaf under the inode, a leaf under an index block)
 * and classic indirect blocks (under i_block and under another indirect block) move to new blocks;
 * every data block of a file moves, its map built again. Each image passes e2fsck -fn and our check,
 * and the file reads back unchanged.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { editImage } from '../src/edit/editor.js';
import { Volume } from '../src/edit/volume.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { moveMapBlock, remapData } from '../src/fs/blockmap.js';
import { FL_EXTENTS } from '../src/ext4/inode.js';
import { HAVE_E2FSPROGS, oracleAvailable, scratchDir, mkfsExt4, expectClean } from './helpers/oracle.js';

const runIt = oracleAvailable('block map moves (e2fsprogs)', HAVE_E2FSPROGS);
const work = scratchDir('ext4wd-bmap');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const mkfs = (opts: string[], size: string): string => mkfsExt4(work, opts, size);
const clean = expectClean;
function readBack(img: string, p: string): { bytes: Uint8Array; meta: number[]; flags: number } {
  const r = Ext4Reader.open(FileDevice.open(img));
  const ino = r.lookup(p);
  const i = r.inode(ino);
  return { bytes: r.readFileBytes(ino, 256 << 20), meta: r.mapping(ino, i, true).metaBlocks, flags: i.flags };
}
/** `count` one-block pieces with a one-block hole after each: one extent per piece. */
function pieces(count: number, bs: number): (Uint8Array | { hole: number })[] {
  const out: (Uint8Array | { hole: number })[] = [];
  for (let k = 0; k < count; k++) out.push(new Uint8Array(bs).fill(1 + (k % 250)), { hole: bs });
  return out;
}

/** Moves every map block of `p` to a newly allocated block; returns the old and new block numbers. */
function moveAllMapBlocks(img: string, p: string): { from: number[]; to: number[] } {
  const v = Volume.open(img, { sync: false });
  try {
    const ino = v.r.lookup(p);
    const inode = v.readInode(ino);
    const from = v.r.mapping(ino, inode, true).metaBlocks;
    const to: number[] = [];
    v.beginOp();
    for (const b of from) {
      const t = v.allocBlock(v.groupFirstBlock(v.groupCount - 1));
      expect(moveMapBlock(v, ino, inode, b, t)).toBe(true);
      to.push(t);
    }
    // A block the map does not hold is left alone.
    const data = v.r.mapping(ino, inode, true).runs[0]!.pblk;
    expect(moveMapBlock(v, ino, inode, data, to[0]!)).toBe(false);
    v.writeInode(ino, inode);
    v.endOp();
    v.commit();
    return { from, to };
  } finally {
    v.close();
  }
}

/** Moves every data block of `p` to a newly allocated block (the data copied first). */
function moveAllData(img: string, p: string): void {
  const v = Volume.open(img, { sync: false });
  try {
    const ino = v.r.lookup(p);
    const inode = v.readInode(ino);
    const moved = new Map<number, number>();
    v.beginOp();
    for (const r of v.r.mapping(ino, inode, true).runs)
      for (let k = 0; k < r.len; k++) {
        const t = v.allocBlock(v.groupFirstBlock(v.groupCount - 1));
        v.tx.addData(t, v.tx.keepData(v.tx.readData(r.pblk + k, 1)));
        moved.set(r.pblk + k, t);
      }
    remapData(v, ino, inode, (b) => moved.get(b)!);
    v.writeInode(ino, inode);
    v.endOp();
    v.commit();
  } finally {
    v.close();
  }
}

describe.runIf(runIt)('moving block maps', () => {
  it('extent tree nodes move: leaves and the index block above them; the file reads the same', () => {
    const img = mkfs(['-b', '1024'], '32M');
    // 1 KiB blocks: 4 extents in the inode, 84 a leaf; 400 extents need an index block above the leaves.
    editImage(img, (ed) => ed.writeFile('/tree', pieces(400, 1024)));
    const before = readBack(img, '/tree');
    expect(before.meta.length).toBeGreaterThan(5);
    const { from, to } = moveAllMapBlocks(img, '/tree');
    clean(img);
    const after = readBack(img, '/tree');
    expect(Buffer.compare(Buffer.from(after.bytes), Buffer.from(before.bytes))).toBe(0);
    expect([...after.meta].sort((a, b) => a - b)).toEqual([...to].sort((a, b) => a - b));
    expect(after.meta.some((b) => from.includes(b))).toBe(false);
  });

  it('classic indirect blocks move: single, double and the blocks under it; the file reads the same', () => {
    const img = mkfs(['-t', 'ext2', '-b', '1024'], '32M');
    const part = (k: number) => new Uint8Array(3000).fill(k);
    editImage(img, (ed) => ed.writeFile('/maps', [part(1), { hole: 200 << 10 }, part(2), { hole: 3 << 20 }, part(3)]));
    const before = readBack(img, '/maps');
    expect(before.flags & FL_EXTENTS).toBe(0);
    expect(before.meta.length).toBeGreaterThanOrEqual(3);
    const { to } = moveAllMapBlocks(img, '/maps');
    clean(img);
    const after = readBack(img, '/maps');
    expect(Buffer.compare(Buffer.from(after.bytes), Buffer.from(before.bytes))).toBe(0);
    expect([...after.meta].sort((a, b) => a - b)).toEqual([...to].sort((a, b) => a - b));
  });

  it('every data block of a file moves, with extents and with a classic map', () => {
    for (const opts of [
      ['-b', '1024'],
      ['-t', 'ext2', '-b', '1024'],
    ]) {
      const img = mkfs(opts, '32M');
      editImage(img, (ed) => {
        ed.writeFile('/data', pieces(120, 1024));
        ed.writeFile('/big', [new Uint8Array(300 << 10).fill(7)]);
      });
      for (const p of ['/data', '/big']) {
        const before = readBack(img, p);
        moveAllData(img, p);
        clean(img);
        const after = readBack(img, p);
        expect(Buffer.compare(Buffer.from(after.bytes), Buffer.from(before.bytes))).toBe(0);
      }
    }
  });
});
