/**
 * Pass 5 (e2fsck's): each group's block and inode bitmaps against what passes 0 and 1 found in use
 * (an uninitialized group against what the kernel would compute for it), their padding and checksums,
 * and the descriptor's free block, free inode and directory counts. Asked to (a repair, ctx.fixes),
 * it also keeps what each group it finds wrong should hold: only for those groups, so the memory grows
 * with the damage found, one bitmap per wrong bitmap.
 */
import { RO_COMPAT } from '../ext4/features.js';
import { BG_BLOCK_UNINIT, BG_INODE_UNINIT } from '../ext4/group-desc.js';
import { S_IFMT, S_IFDIR } from '../ext4/inode.js';
import { bitmapChecksum, setBitRange } from '../ext4/bitmap.js';
import { Ext4Error } from '../core/errors.js';
import { groupOfInode, groupInode, inodeIndex } from '../ext4/geometry.js';
import type { CheckContext, GroupFix } from './context.js';
import { allSet, countSet, differences, firstSet, mergeRanges } from './bits.js';

export function checkBitmaps(ctx: CheckContext): void {
  // In-use inodes by group, and directories among them.
  const used = new Map<number, number[]>();
  const t = ctx.inodes;
  for (let k = 0; k < t.size; k++) {
    const ino = t.inoAt(k);
    const info = t.at(k);
    const g = groupOfInode(ctx.raw.geo, ino);
    let l = used.get(g);
    if (!l) used.set(g, (l = []));
    l.push(inodeIndex(ctx.raw.geo, ino) * 2 + ((info.mode & S_IFMT) === S_IFDIR ? 1 : 0));
  }
  // Reserved inodes are always in use; so are orphans (pass 1 lists those it could read).
  for (let ino = 1; ino < ctx.firstIno && ino <= ctx.inodesCount; ino++) {
    if (ctx.inodes.has(ino)) continue;
    const g = groupOfInode(ctx.raw.geo, ino);
    (used.get(g) ?? used.set(g, []).get(g)!).push(inodeIndex(ctx.raw.geo, ino) * 2);
  }
  // What each group's bitmaps should hold, made in two buffers used group after group.
  const blocksWanted = new Uint8Array(Math.ceil(ctx.bpg / ctx.ratio / 8));
  const inodesWanted = new Uint8Array(Math.ceil(ctx.ipg / 8));
  let metaAt = 0;
  for (let g = 0; g < ctx.groupCount; g++) {
    metaAt = checkBlockBitmap(ctx, g, metaAt, blocksWanted);
    checkInodeBitmap(ctx, g, used.get(g) ?? [], inodesWanted);
  }
}

/** The fix of group `g` (made when first needed), when the check keeps fixes. */
function fixOf(ctx: CheckContext, g: number): GroupFix | undefined {
  const fixes = ctx.fixes;
  if (!fixes) return undefined;
  let f = fixes.get(g);
  if (!f) fixes.set(g, (f = { clearFlags: 0 }));
  return f;
}

/** Returns where the fixed metadata list stands after group `g` (the list is sorted by block). */
function checkBlockBitmap(ctx: CheckContext, g: number, metaFrom: number, scratch: Uint8Array): number {
  const p = ctx.problems;
  const d = ctx.gd(g);
  const first = ctx.groupFirstBlock(g);
  const n = ctx.groupBlocks(g);
  const ratio = ctx.ratio;
  const clusters = Math.ceil(n / ratio);
  const bits = ctx.bpg / ratio;
  // The fixed metadata runs in this group, as cluster ranges [from, to).
  const runs: [number, number][] = [];
  let m = metaFrom;
  while (m < ctx.meta.length && ctx.meta[m]!.start < first + n) {
    const run = ctx.meta[m]!;
    const s = Math.max(run.start, first);
    const e = Math.min(run.start + run.len, first + n);
    runs.push([Math.floor((s - first) / ratio), Math.floor((e - 1 - first) / ratio) + 1]);
    if (run.start + run.len > first + n) break; // it goes on into the next group
    m++;
  }
  const claimed = ctx.claimed(g);
  const uninit = ctx.groupCsum && (d.flags & BG_BLOCK_UNINIT) !== 0;
  if (uninit) {
    // Uninitialized: only the group's own superblock copy, descriptors, bitmaps and table may be used,
    // and the descriptor counts what they leave free (counted over the ranges: no bitmap made).
    const own = mergeRanges(
      ctx.raw
        .groupMetaRanges(g)
        .all.map(([s, len]): [number, number] => [
          Math.floor((s - first) / ratio),
          Math.floor((s + len - 1 - first) / ratio) + 1,
        ]),
      clusters,
    );
    let extra = -1;
    for (const [s, e] of runs) {
      const c = firstOutside(own, s);
      if (c < e) {
        extra = c;
        break;
      }
    }
    if (extra < 0 && claimed) extra = firstSet(claimed, clusters);
    if (extra >= 0)
      p.add('UNINIT_GROUP', `group ${g} is marked BLOCK_UNINIT but block ${first + extra * ratio} is in use`, {
        group: g,
        block: first + extra * ratio,
      });
    const free = clusters - own.reduce((a, [s, e]) => a + e - s, 0);
    if (d.freeBlocks !== free)
      p.add('FREE_BLOCKS_GROUP', `group ${g}: ${d.freeBlocks} free blocks counted, ${free} free`, { group: g });
    if (extra >= 0) {
      // Fixed by initializing the group: its bitmap written as what is in use.
      const fix = fixOf(ctx, g);
      if (fix) {
        const want = wantedBlocks(runs, claimed, scratch.subarray(0, Math.ceil(bits / 8)));
        fix.clearFlags |= BG_BLOCK_UNINIT;
        fix.blockBitmap = want.slice();
        fix.freeBlocks = clusters - countSet(want, clusters);
      }
    } else if (d.freeBlocks !== free) {
      const fix = fixOf(ctx, g);
      if (fix) fix.freeBlocks = free;
    }
    return m;
  }
  // What is in use: the fixed metadata and the clusters inodes claim.
  const want = wantedBlocks(runs, claimed, scratch.subarray(0, Math.ceil(bits / 8)));
  const inUse = countSet(want, clusters);
  const before = p.count;
  const bm = readBitmap(ctx, d.blockBitmap);
  if (bm) {
    const { count, first: at } = differences(bm, want, clusters);
    if (count)
      p.add(
        'BLOCK_BITMAP',
        `group ${g}: the block bitmap differs from what is in use at ${count} block(s), from block ${first + at * ratio}`,
        { group: g, block: first + at * ratio },
      );
    // The bits past the group's blocks, and the whole bytes past its bitmap, are padding: all ones.
    if (!allSet(bm, g === ctx.groupCount - 1 ? clusters : Math.ceil(bits / 8) * 8, ctx.bs * 8))
      p.add('BITMAP_PADDING', `group ${g}: the block bitmap's bits past the last block are not set`, { group: g });
    if (ctx.hasRo(RO_COMPAT.metadata_csum)) {
      const mask = ctx.raw.descSize >= 64 ? 0xffffffff : 0xffff;
      if ((bitmapChecksum(ctx.raw.csumSeed, bm, bits) & mask) >>> 0 !== (d.blockBitmapCsum & mask) >>> 0)
        p.add('BITMAP_CHECKSUM', `group ${g}: block bitmap checksum does not match`, { group: g });
    }
  }
  if (d.freeBlocks !== clusters - inUse)
    p.add('FREE_BLOCKS_GROUP', `group ${g}: ${d.freeBlocks} free blocks counted, ${clusters - inUse} free`, {
      group: g,
    });
  const fix = p.count > before ? fixOf(ctx, g) : undefined;
  if (fix) {
    fix.freeBlocks = clusters - inUse;
    // Only the count wrong: the bitmap stays as it is.
    if (p.count > before + (d.freeBlocks !== clusters - inUse ? 1 : 0)) fix.blockBitmap = want.slice();
  }
  return m;
}

/** The bitmap of a group in use: its fixed metadata runs and the clusters inodes claim, in `out`. */
function wantedBlocks(runs: [number, number][], claimed: Uint8Array | undefined, out: Uint8Array): Uint8Array {
  out.fill(0);
  for (const [s, e] of runs) setBitRange(out, s, e);
  if (claimed) for (let k = 0; k < out.length; k++) out[k]! |= claimed[k]!;
  return out;
}

/** A bitmap block, when the descriptor puts it where it can be (pass 0 reported it otherwise). */
function readBitmap(ctx: CheckContext, block: number): Uint8Array | undefined {
  if (!ctx.metaAt(block)) return undefined;
  try {
    return ctx.raw.readBlocks(block);
  } catch (e) {
    if (!(e instanceof Ext4Error) || e.code === 'IO_ERROR') throw e;
    return undefined;
  }
}

/** The first position from `from` on that none of the sorted, merged ranges covers. */
function firstOutside(ranges: [number, number][], from: number): number {
  let c = from;
  for (const [s, e] of ranges) if (s <= c && c < e) c = e;
  return c;
}

function checkInodeBitmap(ctx: CheckContext, g: number, used: number[], scratch: Uint8Array): void {
  const p = ctx.problems;
  const d = ctx.gd(g);
  const ipg = ctx.ipg;
  const want = scratch.fill(0);
  let dirs = 0;
  for (const x of used) {
    const idx = x >>> 1;
    want[idx >>> 3]! |= 1 << (idx & 7);
    if (x & 1) dirs++;
  }
  const last = used.reduce((a, x) => Math.max(a, x >>> 1), -1);
  const before = p.count;
  let bitmapWrong = false;
  if (ctx.groupCsum && d.flags & BG_INODE_UNINIT) {
    if (used.length) {
      p.add(
        'UNINIT_GROUP',
        `group ${g} is marked INODE_UNINIT but inode ${groupInode(ctx.raw.geo, g, used[0]! >>> 1)} is in use`,
        {
          group: g,
        },
      );
      // Fixed by initializing the group's inode bitmap, the table used up to its last inode in use.
      const fix = fixOf(ctx, g);
      if (fix) {
        fix.clearFlags |= BG_INODE_UNINIT;
        fix.itableUnused = ipg - last - 1;
        bitmapWrong = true;
      }
    }
  } else {
    const bm = readBitmap(ctx, d.inodeBitmap);
    if (bm) {
      const { count: diff, first: firstDiff } = differences(bm, want, ipg);
      if (diff) {
        p.add(
          'INODE_BITMAP',
          `group ${g}: the inode bitmap differs from the inodes in use at ${diff} inode(s), from inode ${groupInode(ctx.raw.geo, g, firstDiff)}`,
          { group: g, inode: groupInode(ctx.raw.geo, g, firstDiff) },
        );
        bitmapWrong = true;
      }
      if (!allSet(bm, Math.ceil(ipg / 8) * 8, ctx.bs * 8)) {
        p.add('BITMAP_PADDING', `group ${g}: the inode bitmap's bytes past the group's inodes are not all set`, {
          group: g,
        });
        bitmapWrong = true;
      }
      if (ctx.hasRo(RO_COMPAT.metadata_csum)) {
        const mask = ctx.raw.descSize >= 64 ? 0xffffffff : 0xffff;
        if ((bitmapChecksum(ctx.raw.csumSeed, bm, ipg) & mask) >>> 0 !== (d.inodeBitmapCsum & mask) >>> 0) {
          p.add('BITMAP_CHECKSUM', `group ${g}: inode bitmap checksum does not match`, { group: g });
          bitmapWrong = true;
        }
      }
    }
    if (ctx.groupCsum && last >= ipg - d.itableUnused) {
      const fix = fixOf(ctx, g);
      if (fix) fix.itableUnused = ipg - last - 1;
      p.add(
        'ITABLE_UNUSED',
        `group ${g}: inode ${groupInode(ctx.raw.geo, g, last)} is in use past the table's used part`,
        {
          group: g,
        },
      );
    }
  }
  if (d.freeInodes !== ipg - used.length)
    p.add('FREE_INODES_GROUP', `group ${g}: ${d.freeInodes} free inodes counted, ${ipg - used.length} free`, {
      group: g,
    });
  if (d.usedDirs !== dirs)
    p.add('USED_DIRS_GROUP', `group ${g}: ${d.usedDirs} directories counted, ${dirs} found`, { group: g });
  const fix = p.count > before ? fixOf(ctx, g) : undefined;
  if (fix) {
    fix.freeInodes = ipg - used.length;
    fix.usedDirs = dirs;
    if (bitmapWrong) fix.inodeBitmap = want.slice();
  }
}
