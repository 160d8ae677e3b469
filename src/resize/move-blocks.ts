/**
 * Moving what files hold past a shrink's new end to free blocks below it, through the editor: every
 * file whose data or map blocks (extent tree nodes, indirect blocks) reach past the end is remapped
 * (fs/blockmap.ts remapData, moveMapBlock), one file per operation. The data is copied as new file data
 * into blocks that were free (written before the commit that points at them, as every edit's data);
 * the map changes and the old blocks are freed in the same journal transaction, and transactions are
 * committed whenever the open edit grows past half the journal, each leaving a consistent file system.
 * Allocation is held below the new end (the editor's allocator knows nothing of it: a view of the
 * volume hands it runs found below the end). The inodes of the removed groups have moved into kept
 * groups first (move-inodes.ts). What this does not move yet is refused before anything is written
 * (see `checkMovable`). Extended attribute blocks move too (moveXattrBlocks); the journal moves on its
 * own (move-journal.ts).
 */
import { Ext4Error } from '../core/errors.js';
import { RESIZE_INO } from '../ext4/inode.js';
import { mapping, moveMapBlock, remapData } from '../fs/blockmap.js';
import { hasBlockMap } from '../fs/inodes.js';
import { withMethods, type WritableVolume, type AllocRun } from '../fs/writable.js';
import { scanFree } from '../edit/balloc.js';
import { put32 } from '../core/bytes.js';
import { xattrBlockChecksum } from '../ext4/xattr.js';
import type { Volume } from '../edit/volume.js';
import { usedInodes } from './move-inodes.js';

/** Pending copied data is written out (not yet pointed at) past this many bytes: memory stays bounded. */
const DATA_FLUSH_BYTES = 64 << 20;

export interface MoveResult {
  /** Files whose blocks moved. */
  files: number;
  /** Blocks copied (data) and map blocks moved. */
  blocks: number;
}

/**
 * A range below the new end that must be emptied too: sparse_super2's backup moving into the new last
 * group takes its first blocks. [start, length]; it starts at its group's first block.
 */
export type Hole = readonly [number, number] | undefined;

/** The pieces [start, length] of blocks `start`..`start + len - 1` at or past `end` or in `hole`. */
export function outside(start: number, len: number, end: number, hole: Hole): [number, number][] {
  const out: [number, number][] = [];
  if (hole) {
    const a = Math.max(start, hole[0]);
    const b = Math.min(start + len, hole[0] + hole[1], end);
    if (a < b) out.push([a, b - a]);
  }
  const from = Math.max(start, end);
  if (from < start + len) out.push([from, start + len - from]);
  return out;
}

/** A view of the volume whose allocations all lie below `end` (and outside `hole`). */
export function below(v: Volume, end: number, keptGroups: number, hole?: Hole): WritableVolume {
  // Per group: no free block between its lowest usable bit (`floor`) and this one (scans from the floor
  // resume here). What a move frees lies past the end or in the hole, so no block below turns free
  // behind the hint.
  const hint = new Map<number, number>();
  const alloc = (goal: number, count: number): AllocRun[] => {
    const out: AllocRun[] = [];
    let remaining = count;
    goal = Math.min(Math.max(goal, v.firstDataBlock), end - 1);
    const g0 = v.groupOfBlock(goal);
    const limit = (g: number) => Math.min(v.groupBlocks(g), end - v.groupFirstBlock(g));
    const floor = (g: number) => (hole && v.groupOfBlock(hole[0]) === g ? hole[0] + hole[1] - v.groupFirstBlock(g) : 0);
    // The goal's group from the goal on, every other kept group, then the goal's group before the goal.
    const spans: [number, number, number][] = [[g0, Math.max(goal - v.groupFirstBlock(g0), floor(g0)), limit(g0)]];
    for (let k = 1; k < keptGroups; k++) {
      const g = (g0 + k) % keptGroups;
      spans.push([g, floor(g), limit(g)]);
    }
    spans.push([g0, floor(g0), goal - v.groupFirstBlock(g0)]);
    // Long runs first; then, where the space left is in pieces, every free block in turn.
    for (const [g, lo, hi, pieces] of [...spans.map((s) => [...s, 0]), ...spans.map((s) => [...s, 1])]) {
      const first = v.groupFirstBlock(g!);
      const fromFloor = lo === floor(g!);
      let from = fromFloor ? Math.max(lo, hint.get(g!) ?? 0) : lo!;
      while (remaining > 0 && from < hi! && v.r.groupDesc(g!).freeBlocks > 0) {
        const wanted = pieces ? 1 : Math.min(remaining, v.bpg);
        const run = scanFree(v.balloc.bitmap(g!), from, hi!, wanted);
        if (!run) {
          if (wanted === 1 && fromFloor && hi === limit(g!)) hint.set(g!, hi);
          break;
        }
        if (wanted === 1 && fromFloor && from === Math.max(lo, hint.get(g!) ?? 0)) hint.set(g!, run.start);
        const len = Math.min(run.len, remaining);
        // The allocator takes the run it is pointed at (its first free run from the goal on).
        const got = v.balloc.alloc(first + run.start, len);
        if (got.length !== 1 || got[0]!.start !== first + run.start || got[0]!.len !== len)
          throw new Error(`resize: the allocator did not take blocks ${first + run.start}+${len}`);
        const last = out[out.length - 1];
        if (last && last.start + last.len === first + run.start) last.len += len;
        else out.push({ start: first + run.start, len });
        remaining -= len;
        from = run.start + len;
      }
      if (!remaining) break;
    }
    if (remaining > 0)
      throw new Ext4Error('NO_SPACE', `${v.name}: no free blocks left below the new end (${remaining} more needed)`);
    return out;
  };
  const allocBlock = (goal: number) => alloc(goal, 1)[0]!.start;
  return withMethods<WritableVolume>(v, { allocBlocks: alloc, allocBlock });
}

/** The bad blocks inode (1) lists blocks to keep out of use; they do not move. */
const BAD_BLOCKS_INO = 1;

/** Refuses (UNSUPPORTED_FEATURE, nothing written) a shrink needing bad blocks listed past the new end moved. */
export function checkMovable(v: Volume, end: number): void {
  const bad = v.readInode(BAD_BLOCKS_INO);
  if (hasBlockMap(bad) && mapping(v.r, BAD_BLOCKS_INO, bad, true).runs.some((r) => r.pblk + r.len > end))
    throw new Ext4Error('UNSUPPORTED_FEATURE', `${v.name}: bad blocks are listed past the new end`);
}

/**
 * Moves the extended attribute blocks past `end` below it: each one copied (a new metadata block, its
 * checksum seeded by its new number; its reference count kept) and every inode naming it pointed at the
 * copy, in one operation per block.
 */
function moveXattrBlocks(
  v: Volume,
  w: WritableVolume,
  end: number,
  hole: Hole,
  inodes: number[],
  out: MoveResult,
): void {
  const users = new Map<number, number[]>();
  for (const ino of inodes) {
    const acl = v.readInode(ino).fileAcl;
    if (acl && outside(acl, 1, end, hole).length) users.set(acl, [...(users.get(acl) ?? []), ino]);
  }
  for (const [from, names] of users) {
    v.runOp(() => {
      const to = w.allocBlock(end - 1);
      const b = v.r.readBlocks(from).slice();
      if (v.csum) put32(b, 16, xattrBlockChecksum(v.csumSeed, to, b));
      v.tx.put(to, b);
      for (const ino of names) {
        const inode = v.readInode(ino);
        inode.fileAcl = to;
        v.writeInode(ino, inode);
      }
      v.freeLater(from, 1);
    });
    out.blocks++;
    v.checkpoint();
  }
}

/** Moves every file block at or past `end` (or in `hole`) below it, committing as the journal fills. */
export function moveBlocks(v: Volume, end: number, keptGroups: number, hole?: Hole): MoveResult {
  const out: MoveResult = { files: 0, blocks: 0 };
  const w = below(v, end, keptGroups, hole);
  const inodes = [...usedInodes(v, 0, keptGroups)];
  moveXattrBlocks(v, w, end, hole, inodes, out);
  for (const ino of inodes) {
    // The resize inode's blocks are the reserved GDT blocks (the switch redoes its lists); the journal
    // moves on its own; bad blocks stay.
    if (ino === RESIZE_INO || ino === v.sb.s_journal_inum || ino === BAD_BLOCKS_INO) continue;
    const inode = v.readInode(ino);
    if (!hasBlockMap(inode)) continue;
    const m = mapping(v.r, ino, inode, true);
    const pastRuns = m.runs.flatMap((r) => outside(r.pblk, r.len, end, hole));
    const pastMeta = m.metaBlocks.filter((b) => outside(b, 1, end, hole).length);
    if (!pastRuns.length && !pastMeta.length) continue;
    v.runOp(() => {
      if (pastRuns.length) {
        // Each block past the end gets a new home below it, its content copied there as new data.
        const moved = new Map<number, number>();
        for (const [from, n] of pastRuns) {
          let at = from;
          for (const t of w.allocBlocks(end - 1, n)) {
            const data = v.tx.readData(at, t.len);
            v.tx.addData(t.start, v.tx.keepData(data));
            for (let k = 0; k < t.len; k++) moved.set(at + k, t.start + k);
            at += t.len;
          }
          out.blocks += n;
        }
        remapData(w, ino, inode, (b) => moved.get(b) ?? b);
      } else
        for (const b of pastMeta) {
          const to = w.allocBlock(end - 1);
          if (!moveMapBlock(w, ino, inode, b, to)) throw new Error(`resize: block ${b} is not in inode ${ino}'s map`);
          out.blocks++;
        }
      v.writeInode(ino, inode);
    });
    out.files++;
    if (v.tx.pendingDataBytes > DATA_FLUSH_BYTES) v.writeDataEarly();
    v.checkpoint();
  }
  return out;
}
