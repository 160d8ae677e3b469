/**
 * `check --repair` (preen): what `e2fsck -p` fixes without asking. First, what the kernel and e2fsck do
 * before checking: a dirty journal is recovered (recover.ts), an orphan list cleaned up (orphans.ts: an
 * orphan with no links deleted, one still linked cut back to its size), each a transaction of its own.
 * Then the check, and, when it finds nothing a preen does not fix, its fixes: bitmaps against what is
 * in use, their checksums and padding, each group's free block, free inode and directory counts,
 * itable_unused and the uninitialized flags, the descriptors' checksums, the superblock's free counts
 * and error state; inodes' link counts against the directory entries naming them, the deletion time of
 * an inode in use (cleared) and of a deleted inode that has none (set), an inode's checksum; the resize
 * inode, rewritten from its layout where e2fsck -p fixes it (repair-resize-inode.ts). Anything
 * else the check finds stops the repair before it writes, as e2fsck -p stops with "UNEXPECTED
 * INCONSISTENCY": the problems are returned, status 4.
 *
 * The check's fixes are one journal transaction (the editor's commit, commit.ts): a crash leaves, after
 * recovery, the image as it was or repaired. Refusals come before anything is written: a mounted or
 * busy image, features the editor cannot keep consistent (guard.ts), MMP.
 */
import { Ext4Error } from '../core/errors.js';
import { COMPAT, INCOMPAT, RO_COMPAT } from '../ext4/features.js';
import {
  freeBlocksCount,
  decodeSuperblock,
  STATE_VALID,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
} from '../ext4/superblock.js';
import { Ext4Reader } from '../fs/reader.js';
import { FileDevice } from '../io/device.js';
import { mountedLoop } from '../host/mounts.js';
import { lockForWrite, type ImageLock } from '../host/lock.js';
import { checkDevice, type CheckResult, type InodeFix, type Problem, type ProblemCode } from '../check/check.js';
import { Volume, type VolumeOptions } from './volume.js';
import { recoverJournal } from './recover.js';
import { cleanOrphans } from './orphans.js';
import { fixedTimeOf, opTime } from './inodes.js';
import { checkEditableFeatures, STATE_ERROR } from './guard.js';
import { resizeInodeFixes, rewriteResizeInode } from './repair-resize-inode.js';

/** e2fsck's exit codes: nothing to fix, fixed, errors left uncorrected. */
export type RepairStatus = 0 | 1 | 4;

export type RepairOptions = Omit<VolumeOptions, 'atomic' | 'recovering' | 'repairing'>;

export interface RepairResult {
  status: RepairStatus;
  /** The journal was recovered (replayed, orphans cleaned up) before the check. */
  recovered: boolean;
  /** What was fixed: the check's problems (and warnings) the repair wrote away, and its own. */
  fixed: Problem[];
  /** What is left: everything the check found when it found anything a preen does not fix. */
  remaining: Problem[];
  remainingCount: number;
}

/** The check's findings a preen fixes in the group they name (pass 5's). */
const GROUP_FIXES: ReadonlySet<ProblemCode> = new Set<ProblemCode>([
  'BLOCK_BITMAP',
  'INODE_BITMAP',
  'BITMAP_CHECKSUM',
  'BITMAP_PADDING',
  'FREE_BLOCKS_GROUP',
  'FREE_INODES_GROUP',
  'USED_DIRS_GROUP',
  'ITABLE_UNUSED',
  'UNINIT_GROUP',
]);

/** The check's findings a preen fixes in the inode they name (passes 1 and 4). */
const INODE_FIXES: ReadonlySet<ProblemCode> = new Set<ProblemCode>(['LINK_COUNT', 'INODE_DTIME', 'INODE_CHECKSUM']);

/** The check's findings a preen fixes. */
export const PREEN_FIXES: ReadonlySet<ProblemCode> = new Set([...GROUP_FIXES, ...INODE_FIXES]);

/**
 * Repairs an image file as `e2fsck -p` would the problems listed above; see the module comment. Throws
 * (nothing written) when the image may not be written: IN_USE, UNSUPPORTED_FEATURE, NEEDS_RECOVERY
 * for a journal recovery cannot replay, BAD_MAGIC for what is no ext2/3/4 file system.
 */
export function repairImage(imagePath: string, opts: RepairOptions = {}): RepairResult {
  const start = beginRepair(imagePath, opts);
  const { lock, recovered } = start;
  const orphans = start.fixed;
  try {
    if (start.stop) return { status: 4, recovered, fixed: [], remaining: [start.stop], remainingCount: 1 };
    // Checked read-only first: opening the volume claims MMP (a write), which a refusal must not do.
    const res = checkFile(imagePath, true);
    const left = unfixable(res);
    if (left.length || res.problemCount > res.problems.length)
      return {
        status: 4,
        recovered,
        fixed: orphans,
        remaining: [...res.warnings, ...res.problems],
        remainingCount: res.problemCount + res.warnings.length,
      };
    if (!res.problems.length && !res.warnings.length && !summaryWrong(imagePath))
      return { status: recovered ? 1 : 0, recovered, fixed: orphans, remaining: [], remainingCount: 0 };
    const v = Volume.open(imagePath, { ...opts, atomic: true, repairing: true });
    let fixed: Problem[];
    try {
      fixed = [...orphans, ...applyFixes(v, res)];
      if (v.changed) v.commit();
    } finally {
      v.close();
    }
    return repairResult(imagePath, fixed, recovered);
  } finally {
    lock.release();
  }
}

/**
 * A repair's result: what it leaves is checked again, so a fix that did not take is reported, never
 * hidden (status 4 then; 1 when it fixed or recovered anything; 0 when there was nothing to do).
 */
export function repairResult(imagePath: string, fixed: Problem[], recovered: boolean): RepairResult {
  const after = checkFile(imagePath);
  const remaining = [...after.warnings, ...after.problems];
  return {
    status: remaining.length ? 4 : fixed.length || recovered ? 1 : 0,
    recovered,
    fixed,
    remaining,
    remainingCount: after.problemCount + after.warnings.length,
  };
}

/**
 * What both repairs (this preen, repair-all.ts) do first, under the writer's lock, which the caller
 * releases: the refusals (a mounted image, features the editor cannot keep consistent: checked before a
 * recovery would write), then a dirty journal recovered (its orphans cleaned up by recover, counted,
 * not listed) or else an orphan list cleaned up, as the kernel and e2fsck do before checking. `stop`:
 * an orphan list that cannot be followed (nothing written).
 */
export function beginRepair(
  imagePath: string,
  opts: RepairOptions,
): { lock: ImageLock; recovered: boolean; fixed: Problem[]; stop?: Problem } {
  const mounted = mountedLoop(imagePath);
  if (mounted)
    throw new Ext4Error('IN_USE', `${imagePath} is mounted (through ${mounted}); unmount it before repairing`, {
      path: imagePath,
    });
  const lock = lockForWrite(imagePath, opts.lock);
  try {
    const sb = peekSuperblock(imagePath);
    checkEditableFeatures(sb, imagePath);
    const replay = sb.s_feature_incompat & INCOMPAT.needs_recovery && sb.s_feature_compat & COMPAT.has_journal;
    const orphaned = sb.s_last_orphan !== 0 || (sb.s_feature_ro_compat & RO_COMPAT.orphan_present) !== 0;
    if (replay || lock.tookOverFrom) {
      const { recovered } = recoverJournal(imagePath, {
        sync: opts.sync,
        onWarning: opts.onWarning,
        deadWriter: lock.tookOverFrom,
      });
      return { lock, recovered, fixed: [] };
    }
    if (!orphaned) return { lock, recovered: false, fixed: [] };
    const out = cleanOrphanList(imagePath, opts);
    return out.stop
      ? { lock, recovered: false, fixed: [], stop: out.stop }
      : { lock, recovered: true, fixed: out.fixed };
  } catch (e) {
    lock.release();
    throw e;
  }
}

/**
 * The orphan list's clean-up, as recover does it after a replay (and e2fsck before its check), one
 * transaction; each orphan reported. A list that cannot be followed (an inode listed twice or out of
 * range, an orphan file block with a bad magic) stops the repair with nothing written.
 */
function cleanOrphanList(imagePath: string, opts: RepairOptions): { fixed: Problem[]; stop?: Problem } {
  const fixed: Problem[] = [];
  const v = Volume.open(imagePath, { sync: opts.sync, onWarning: opts.onWarning, recovering: true });
  try {
    v.runOp(() =>
      cleanOrphans(v, opTime(fixedTimeOf(undefined)), (ino, deleted, size) =>
        fixed.push({
          code: 'ORPHANS',
          text: deleted
            ? `orphan inode ${ino} had no links left: deleted, its blocks freed`
            : `orphan inode ${ino} (an interrupted truncation): cut back to its size ${size}`,
          inode: ino,
        }),
      ),
    );
    v.commit();
  } catch (e) {
    if (!(e instanceof Ext4Error) || e.code !== 'CORRUPT') throw e;
    return { fixed: [], stop: { code: 'ORPHANS', text: e.message, inode: e.context.inode, block: e.context.block } };
  } finally {
    v.close();
  }
  return { fixed };
}

/** The superblock as stored (the repair's refusals are decided on it before anything is opened to write). */
function peekSuperblock(imagePath: string) {
  const dev = FileDevice.open(imagePath);
  try {
    if (dev.size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE)
      throw new Ext4Error('BAD_MAGIC', `${imagePath}: too small to hold an ext2/3/4 superblock`);
    return decodeSuperblock(dev.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE));
  } finally {
    dev.close();
  }
}

export function checkFile(imagePath: string, keepFixes = false): CheckResult {
  const dev = FileDevice.open(imagePath);
  try {
    return checkDevice(dev, { keepFixes });
  } finally {
    dev.close();
  }
}

/**
 * What a clean check leaves to fix: the superblock's free counts against the descriptors' sums, and a
 * state marked with errors or not cleanly unmounted.
 */
export function summaryWrong(imagePath: string): boolean {
  const dev = FileDevice.open(imagePath);
  try {
    const r = Ext4Reader.open(dev, { verifyChecksums: false });
    const sb = r.sb;
    if (sb.s_state & STATE_ERROR || !(sb.s_state & STATE_VALID)) return true;
    let blocks = 0;
    let inodes = 0;
    for (let g = 0; g < r.groupCount; g++) {
      const d = r.groupDesc(g);
      blocks += d.freeBlocks;
      inodes += d.freeInodes;
    }
    return blocks !== freeBlocksCount(sb) || inodes !== sb.s_free_inodes_count;
  } finally {
    dev.close();
  }
}

/**
 * The findings a preen does not fix: problems outside GROUP_FIXES and INODE_FIXES (or without their
 * group's or inode's fix), warnings but descriptor checksums.
 */
function unfixable(res: CheckResult): Problem[] {
  return [
    ...res.problems.filter((p) => !preenFixes(res, p)),
    ...res.warnings.filter(
      (w) => (w.code !== 'GROUP_DESC_CHECKSUM' || w.group === undefined) && !resizeInodeFixes(res, w),
    ),
  ];
}

/** Whether the check's keepFixes hold a preen's fix of problem `p`. */
export function preenFixes(res: CheckResult, p: Problem): boolean {
  if (resizeInodeFixes(res, p)) return true;
  if (GROUP_FIXES.has(p.code)) return p.group !== undefined && res.fixes!.has(p.group);
  const f = p.inode !== undefined ? res.inodeFixes!.get(p.inode) : undefined;
  if (p.code === 'LINK_COUNT') return f?.links !== undefined;
  if (p.code === 'INODE_DTIME') return f?.dtime !== undefined;
  return p.code === 'INODE_CHECKSUM' && f?.checksum === true;
}

/**
 * Stages every fix in the volume's open edit; returns what they fix (an inode's, with what was done).
 * `raw` reads the descriptors as the fixes start from (--repair=all: the open edit's, repair-view.ts).
 */
export function applyFixes(
  v: Volume,
  res: CheckResult,
  // Descriptors are taken as stored: the volume's reader refuses those whose checksum fails.
  raw = Ext4Reader.open(v.dev, { verifyChecksums: false }),
): Problem[] {
  const inodeFixes = res.inodeFixes!;
  const fixed: Problem[] = [...res.warnings, ...res.problems.map((p) => withInodeFix(p, inodeFixes))];
  const now = opTime(fixedTimeOf(undefined));
  v.runOp(() => {
    for (const w of res.warnings) if (w.group !== undefined) v.groups.set(w.group, raw.groupDesc(w.group));
    for (const [g, f] of res.fixes!) {
      const d = { ...raw.groupDesc(g) };
      d.flags &= ~f.clearFlags;
      if (f.freeBlocks !== undefined) d.freeBlocks = f.freeBlocks;
      if (f.freeInodes !== undefined) d.freeInodes = f.freeInodes;
      if (f.usedDirs !== undefined) d.usedDirs = f.usedDirs;
      if (f.itableUnused !== undefined) d.itableUnused = f.itableUnused;
      // bigalloc is refused by the guard: a bit is a block.
      if (f.blockBitmap) writeBitmap(v.tx.modify(d.blockBitmap), f.blockBitmap, v.groupBlocks(g));
      if (f.inodeBitmap) writeBitmap(v.tx.modify(d.inodeBitmap), f.inodeBitmap, v.ipg);
      v.groups.set(g, d);
      // Their checksums are computed at commit (the descriptor's, and the bitmaps' with metadata_csum).
      v.groups.touch(g);
    }
    // Link counts, deletion times, checksums: the record only, no block or inode changes hands. It
    // is read as stored (its checksum may be what is wrong) and sealed again at commit.
    for (const [ino, f] of inodeFixes) {
      const { buf, offset } = v.inodeRecordForWrite(ino);
      if (f.links !== undefined || f.dtime !== undefined) {
        const i = v.r.decodeRecord(ino, buf, offset);
        if (f.links !== undefined) i.linksCount = f.links;
        if (f.dtime === 'clear') i.dtime = 0;
        else if (f.dtime === 'set') i.dtime = now.sec >>> 0;
        v.writeInode(ino, i);
      } else v.sealInode(ino);
    }
    rewriteResizeInode(v, res, now);
    const sum = v.groups.sumFree();
    const sb = v.sb;
    // Against the counts as they will be written: an earlier round of the same edit (--repair=all) may
    // have allocated or freed, its change to them still pending.
    const freeBlocks = freeBlocksCount(sb) + v.counts.freeBlocks;
    const freeInodes = sb.s_free_inodes_count + v.counts.freeInodes;
    if (sum.blocks !== freeBlocks || sum.inodes !== freeInodes) {
      fixed.push({
        code: 'SUPERBLOCK',
        text: `the superblock counts ${freeBlocks} free blocks and ${freeInodes} free inodes; the groups ${sum.blocks} and ${sum.inodes}`,
      });
      v.recountFree();
    }
    if (sb.s_state & STATE_ERROR || !(sb.s_state & STATE_VALID)) {
      fixed.push({
        code: 'SUPERBLOCK',
        text: `the file system was marked ${sb.s_state & STATE_ERROR ? 'as having errors' : 'not cleanly unmounted'}; checked, and marked clean`,
      });
      sb.s_state = (sb.s_state | STATE_VALID) & ~STATE_ERROR;
      v.sbChanged = true;
    }
  });
  return fixed;
}

/** An inode's problem, its text saying what its fix does. */
export function withInodeFix(p: Problem, inodeFixes: Map<number, InodeFix>): Problem {
  const f = p.inode !== undefined && INODE_FIXES.has(p.code) ? inodeFixes.get(p.inode) : undefined;
  if (!f) return p;
  const done =
    p.code === 'LINK_COUNT'
      ? `link count set to ${f.links}`
      : p.code === 'INODE_CHECKSUM'
        ? 'checksum recomputed'
        : f.dtime === 'clear'
          ? 'deletion time cleared'
          : 'deletion time set';
  return { ...p, text: `${p.text}: ${done}` };
}

/**
 * Writes the bits [0, n) of `want` into a bitmap block; the rest of the block is padding, all ones (as
 * mke2fs and e2fsck write it, and as the kernel expects past a short last group).
 */
function writeBitmap(block: Uint8Array, want: Uint8Array, n: number): void {
  const whole = n >>> 3;
  block.set(want.subarray(0, whole));
  block.fill(0xff, whole);
  for (let i = whole * 8; i < n; i++) if (!(want[i >>> 3]! & (1 << (i & 7)))) block[i >>> 3]! &= ~(1 << (i & 7));
}
