/**
 * `check --repair=all`'s clone of multiply-claimed blocks (e2fsck passes 1B-1D, "Clone multiply-claimed
 * blocks? yes"): every inode the check found claiming blocks that something claimed before it (the
 * groups' metadata, an inode scanned earlier, or the same inode twice) gets its own copy of each such
 * block (of each place it maps one), and its map is built again to point at the copies; the earlier
 * claim keeps the original.
 * e2fsck gives the copies to the earlier inodes and leaves the original to the last; either way every
 * file keeps its content and no block is claimed twice. Nothing shared is freed; the rebuilt map's old
 * blocks are (those not shared). Copies are taken from blocks that the bitmap calls free AND that the
 * check found no claim on: on a damaged image the bitmap may call a block in use by a file free.
 */
import type { CheckResult } from '../check/check.js';
import { RESIZE_INO } from '../ext4/inode.js';
import { testBit } from '../ext4/bitmap.js';
import { mapping, remapData } from '../fs/blockmap.js';
import { hasBlockMap } from '../fs/inodes.js';
import { withMethods, type AllocRun, type WritableVolume } from '../fs/writable.js';
import type { Volume } from './volume.js';
import { attempt, type Report } from './repair-dirs.js';
import { fixedTimeOf, opTime } from './inodes.js';

/** The bad blocks inode (1): its blocks are listed, not used, and stay as they are. */
const BAD_BLOCKS_INO = 1;

/** Clones the shared blocks of every inode the check names (res.sharedClaims); returns how many inodes. */
export function fixSharedBlocks(v: Volume, res: CheckResult, report: Report): number {
  const shared = res.sharedClaims;
  if (!shared?.size) return 0;
  const w = unclaimedOnly(v, res);
  let n = 0;
  for (const [ino, blocks] of shared) {
    if (ino === RESIZE_INO || ino === BAD_BLOCKS_INO || res.inodeFixes?.get(ino)?.clear) continue;
    const keep = new Set(blocks);
    let copied = 0;
    const ok = attempt(v, () => {
      const inode = v.readInode(ino);
      if (!hasBlockMap(inode)) return;
      const data = new Set(mapping(v.r, ino, inode, true).runs.flatMap((r) => spread(r.pblk, r.len)));
      // Every place the file maps a shared block gets a copy of its own: a block the file maps twice
      // (claimed before by itself) is then left to nobody, and the bitmap round frees it.
      const to = (b: number): number => {
        if (!keep.has(b) || !data.has(b)) return b; // a block of the map: the rebuilt map leaves it
        const copy = w.allocBlock(b);
        v.tx.addData(copy, v.tx.keepData(v.r.readBlocks(b)));
        copied++;
        return copy;
      };
      remapData(keepShared(w, keep), ino, inode, to);
      v.writeInode(ino, inode);
    });
    if (ok && copied) {
      report({
        code: 'BLOCK_CLAIMED_TWICE',
        text: `inode ${ino}: ${copied} multiply-claimed block(s) cloned`,
        inode: ino,
      });
      n++;
    } else if (!ok && v.freeBlocks < keep.size && attempt(v, () => deleteInode(v, ino))) {
      // No room for the copies: the file goes, as e2fsck deletes one it cannot clone ("Delete file?
      // yes"); its entries and blocks go in the rounds after.
      report({
        code: 'BLOCK_CLAIMED_TWICE',
        text: `inode ${ino}: no free blocks to clone its ${keep.size} multiply-claimed block(s) into: deleted`,
        inode: ino,
      });
      n++;
    }
  }
  return n;
}

/** Marks inode `ino` deleted: no links, a deletion time (as repair-inodes.ts clears a condemned one). */
function deleteInode(v: Volume, ino: number): void {
  const { buf, offset } = v.inodeRecordForWrite(ino);
  const i = v.r.decodeRecord(ino, buf, offset);
  i.linksCount = 0;
  i.dtime = opTime(fixedTimeOf(undefined)).sec >>> 0;
  v.writeInode(ino, i);
}

function spread(start: number, len: number): number[] {
  return Array.from({ length: len }, (_, k) => start + k);
}

/**
 * The volume, allocating only blocks no claim holds: a block the allocator hands out that the check
 * found in use (its group's bitmap was wrong) stays taken, which is what the bitmap should have said,
 * and the next one is asked for.
 */
function unclaimedOnly(v: Volume, res: CheckResult): WritableVolume {
  const claimed = (b: number): boolean => {
    const g = v.groupOfBlock(b);
    const bm = res.fixes?.get(g)?.blockBitmap;
    return bm !== undefined && testBit(bm, b - v.groupFirstBlock(g));
  };
  const allocBlock = (goal: number): number => {
    for (;;) {
      const b = v.allocBlock(goal);
      if (!claimed(b)) return b;
      goal = b + 1;
    }
  };
  const allocBlocks = (goal: number, count: number): AllocRun[] => {
    const out: AllocRun[] = [];
    for (let k = 0; k < count; k++) {
      const b = allocBlock(goal);
      const last = out[out.length - 1];
      if (last && last.start + last.len === b) last.len++;
      else out.push({ start: b, len: 1 });
      goal = b + 1;
    }
    return out;
  };
  return withMethods<WritableVolume>(v, { allocBlock, allocBlocks });
}

/** The volume, freeing nothing in `keep` (blocks another claim still holds). */
function keepShared(w: WritableVolume, keep: ReadonlySet<number>): WritableVolume {
  const freeLater = (start: number, len: number): void => {
    let from = start;
    for (let b = start; b <= start + len; b++)
      if (b === start + len || keep.has(b)) {
        if (b > from) w.freeLater(from, b - from);
        from = b + 1;
      }
  };
  return withMethods(w, { freeLater });
}
