/**
 * The block allocator of an open edit, over the on-disk block bitmaps (an uninitialized group's bitmap
 * is computed from its metadata, and written out the first time the group is allocated from). Searches
 * start at a goal (near the inode, after the file's last block, as the kernel does) and skip each
 * group's full prefix by a remembered hint. Freed blocks are only released at commit, so no new data
 * lands in them before the old file system stops needing them.
 */
import { Ext4Error } from '../core/errors.js';
import { BG_BLOCK_UNINIT } from '../ext4/group-desc.js';
import { clearBit, setBitRange, testBit, countBits } from '../ext4/bitmap.js';
import type { EditVolume } from './groups.js';

export interface Run {
  start: number;
  len: number;
}

export class BlockAllocator {
  /** Blocks freed by the open edit: released at commit. */
  private readonly frees: Run[] = [];
  /** Per group: no free block before this bit; found lazily, forgotten when anything is freed. */
  private readonly hint = new Map<number, number>();

  constructor(private readonly v: EditVolume) {
    v.tx.onRollback(() => {
      this.hint.clear();
      this.forgetFreedGroups();
    });
  }

  /** Frees waiting for the commit. */
  get pendingFrees(): readonly Run[] {
    return this.frees;
  }

  /** The groups of the frees counted so far, and how many frees that is (the list only grows in an edit). */
  private readonly freedGroups = new Set<number>();
  private freesCounted = 0;

  /**
   * How many groups the pending frees touch (each one's bitmap and descriptor go into the commit),
   * counted incrementally: an edit that frees a block per operation asks after every operation (a
   * commit or a rollback starts the count again).
   */
  pendingFreeGroups(): number {
    const frees = this.frees;
    for (; this.freesCounted < frees.length; this.freesCounted++)
      this.freedGroups.add(this.v.groupOfBlock(frees[this.freesCounted]!.start));
    return this.freedGroups.size;
  }

  private forgetFreedGroups(): void {
    this.freedGroups.clear();
    this.freesCounted = 0;
  }

  /** The block bitmap of group `g` as it is (computed for an uninitialized group); read-only. */
  bitmap(g: number): Uint8Array {
    const gd = this.v.r.groupDesc(g);
    if (gd.flags & BG_BLOCK_UNINIT && this.v.hasGroupCsum) return this.initialBitmap(g);
    return this.v.r.readBlocks(gd.blockBitmap);
  }

  private initialBitmap(g: number): Uint8Array {
    const v = this.v;
    const b = new Uint8Array(v.bs);
    const first = v.groupFirstBlock(g);
    for (const [s, len] of v.r.groupMetaRanges(g).all) setBitRange(b, s - first, s - first + len);
    setBitRange(b, v.groupBlocks(g), v.bs * 8);
    return b;
  }

  /** The block bitmap of group `g`, initialized on disk first when the group was uninitialized. */
  bitmapForWrite(g: number): Uint8Array {
    const v = this.v;
    v.guard.blockBitmap(g, () => this.bitmap(g));
    let gd = v.groups.get(g);
    if (gd.flags & BG_BLOCK_UNINIT && v.hasGroupCsum) {
      gd = v.groups.copy(g);
      const init = this.initialBitmap(g);
      // A safety net: what the computed bitmap leaves free must be what the descriptor counts.
      if (v.groupBlocks(g) - countBits(init, v.groupBlocks(g)) !== gd.freeBlocks)
        throw new Ext4Error(
          'CORRUPT',
          `group ${g} is marked uninitialized but its free count (${gd.freeBlocks}) disagrees with its metadata`,
          { group: g },
        );
      v.tx.put(gd.blockBitmap, init);
      gd.flags &= ~BG_BLOCK_UNINIT;
      v.groups.set(g, gd);
    }
    v.groups.touch(g);
    return v.tx.modify(gd.blockBitmap);
  }

  /**
   * Allocates `count` blocks, as few runs as the free space allows, starting the search at `goal`.
   * Each piece is the first run at least as long as what is still needed, or else the longest free
   * run there is.
   */
  alloc(goal: number, count: number): Run[] {
    if (count <= 0) return [];
    const v = this.v;
    if (count > v.freeBlocks)
      throw new Ext4Error('NO_SPACE', `${v.name}: ${count} blocks needed, ${Math.max(0, v.freeBlocks)} free`);
    const out: Run[] = [];
    let remaining = count;
    let at = Math.min(Math.max(goal, v.firstDataBlock), v.blocksCount - 1);
    while (remaining > 0) {
      const run = this.findFreeRun(at, Math.min(remaining, v.bpg));
      if (!run) throw new Ext4Error('NO_SPACE', `${v.name}: no free blocks left (${remaining} more needed)`);
      const len = Math.min(run.len, remaining);
      this.mark(run.start, len);
      const last = out[out.length - 1];
      if (last && last.start + last.len === run.start) last.len += len;
      else out.push({ start: run.start, len });
      remaining -= len;
      at = run.start + len;
      if (at >= v.blocksCount) at = v.firstDataBlock;
    }
    return out;
  }

  /** The first free run of at least `want` blocks from `goal` on (wrapping once), else the longest. */
  private findFreeRun(goal: number, want: number): Run | undefined {
    const v = this.v;
    const g0 = v.groupOfBlock(goal);
    let best: Run | undefined;
    for (let k = 0; k <= v.groupCount; k++) {
      const g = (g0 + k) % v.groupCount;
      const free = v.r.groupDesc(g).freeBlocks;
      if (free === 0 || (best && free <= best.len)) continue;
      const first = v.groupFirstBlock(g);
      const n = v.groupBlocks(g);
      // The goal's group is searched from the goal first, and from its start on the last lap; never
      // before the group's first free block.
      const bm = this.bitmap(g);
      const low = firstFree(this.hint, g, bm, n);
      const from = Math.max(low, k === 0 ? goal - first : 0);
      const to = k === v.groupCount ? goal - first : n;
      if (from >= to) continue;
      const run = scanFree(bm, from, to, want);
      if (run && (!best || run.len > best.len)) best = { start: first + run.start, len: run.len };
      if (best && best.len >= want) return best;
    }
    return best;
  }

  private mark(start: number, len: number): void {
    const v = this.v;
    while (len > 0) {
      const g = v.groupOfBlock(start);
      const first = v.groupFirstBlock(g);
      const n = Math.min(len, first + v.groupBlocks(g) - start);
      const bm = this.bitmapForWrite(g);
      for (let i = start - first; i < start - first + n; i++)
        if (testBit(bm, i))
          throw new Ext4Error('CORRUPT', `block ${first + i} is already in use`, { block: first + i });
      setBitRange(bm, start - first, start - first + n);
      const gd = v.groups.copy(g);
      gd.freeBlocks -= n;
      v.groups.set(g, gd);
      v.tx.saveFields(v.counts);
      v.counts.freeBlocks -= n;
      start += n;
      len -= n;
    }
  }

  /** Frees blocks at commit (never reused by this edit, so no new data overwrites what they held). */
  freeLater(start: number, len: number): void {
    if (len <= 0) return;
    const v = this.v;
    if (start < v.firstDataBlock || start + len > v.blocksCount)
      throw new Ext4Error('CORRUPT', `cannot free blocks ${start}+${len}: outside the file system`, { block: start });
    // A block freed now may be handed out again by this edit: it must be in use (a file's old content
    // the bitmap calls free would end up in two files).
    for (let s = start, left = len; left > 0;) {
      const g = v.groupOfBlock(s);
      const n = Math.min(left, v.groupFirstBlock(g) + v.groupBlocks(g) - s);
      v.guard.group(g);
      v.guard.inUse(g, this.bitmap(g), s, n);
      s += n;
      left -= n;
    }
    v.tx.saveLength(this.frees);
    this.frees.push({ start, len });
  }

  /** Releases the frees into the bitmaps and counts (at commit, outside any operation). */
  release(): void {
    const v = this.v;
    this.hint.clear();
    const frees = this.frees.sort((a, b) => a.start - b.start).splice(0);
    this.forgetFreedGroups();
    for (let k = 1; k < frees.length; k++)
      if (frees[k]!.start < frees[k - 1]!.start + frees[k - 1]!.len)
        throw new Ext4Error('CORRUPT', `block ${frees[k]!.start} freed twice`, { block: frees[k]!.start });
    for (let { start, len } of frees) {
      while (len > 0) {
        const g = v.groupOfBlock(start);
        const first = v.groupFirstBlock(g);
        const n = Math.min(len, first + v.groupBlocks(g) - start);
        if (v.r.groupDesc(g).flags & BG_BLOCK_UNINIT && v.hasGroupCsum)
          throw new Ext4Error('CORRUPT', `block ${start} lies in an uninitialized group and cannot be in use`, {
            block: start,
          });
        const bm = this.bitmapForWrite(g);
        for (let i = start - first; i < start - first + n; i++) {
          if (!testBit(bm, i))
            throw new Ext4Error('CORRUPT', `block ${first + i} is freed but was not in use`, { block: first + i });
          clearBit(bm, i);
          // A freed block's new content (if an earlier operation changed it) is of no use any more.
          v.tx.drop(first + i);
        }
        const gd = v.groups.copy(g);
        gd.freeBlocks += n;
        v.groups.set(g, gd);
        v.counts.freeBlocks += n;
        start += n;
        len -= n;
      }
    }
  }

  /** Drops the edit's frees and hints. */
  discard(): void {
    this.frees.length = 0;
    this.forgetFreedGroups();
    this.hint.clear();
  }
}

/** The first clear bit of a group's bitmap at or after its remembered hint (which moves up to it). */
export function firstFree(hints: Map<number, number>, g: number, bm: Uint8Array, n: number): number {
  const i = scanFree(bm, hints.get(g) ?? 0, n, 1)?.start ?? n;
  hints.set(g, i);
  return i;
}

/**
 * In bits [from, to) of a bitmap: the first run of at least `want` clear bits (its length capped at
 * `want`: the rest of a long free stretch is not measured), else the longest shorter one.
 */
export function scanFree(b: Uint8Array, from: number, to: number, want: number): Run | undefined {
  let bestStart = -1;
  let bestLen = 0;
  let i = from;
  while (i < to) {
    // Skip whole used bytes.
    if ((i & 7) === 0) {
      let byte = i >>> 3;
      const end = to >>> 3;
      while (byte < end && b[byte] === 0xff) byte++;
      if (byte << 3 !== i) {
        i = byte << 3;
        continue;
      }
    }
    if (testBit(b, i)) {
      i++;
      continue;
    }
    const start = i;
    const stop = Math.min(to, start + want);
    while (i < stop) {
      if ((i & 7) === 0 && i + 8 <= stop && b[i >>> 3] === 0) {
        i += 8;
        continue;
      }
      if (testBit(b, i)) break;
      i++;
    }
    const len = i - start;
    if (len >= want) return { start, len };
    if (len > bestLen) {
      bestStart = start;
      bestLen = len;
    }
  }
  return bestLen ? { start: bestStart, len: bestLen } : undefined;
}
