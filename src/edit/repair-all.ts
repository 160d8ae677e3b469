/**
 * `check --repair=all` (what `e2fsck -y` does), and `repairImage`, the library's entry to both repairs
 * (`mode: 'preen'`, the default, is repair.ts's `e2fsck -p`).
 *
 * First what the preen does first (repair.ts, reused): a dirty journal recovered, or an orphan list
 * cleaned up. Then rounds, in e2fsck's pass order: the check runs on the open edit as it stands (its
 * blocks sealed and read through a read-only view, repair-view.ts), and the fixers stage their writes
 * in that same edit: pass 1's inodes (repair-inodes.ts), pass 1D's clones of blocks claimed twice
 * (repair-clone.ts), pass 2's directory entries, blocks, '.'/'..' and htree indexes (repair-dirs.ts),
 * passes 3 and 4's connectivity (repair-lostfound.ts), pass 3A's names held twice (repair-dupnames.ts); once a round finds nothing of those, the
 * preen's own fixes (link counts, dtimes, inode checksums, and, when no inode's blocks are in doubt,
 * bitmaps and counts). Then the check again, until it finds the image clean, a round fixes nothing, or
 * a round finds what the one before it found (nothing new fixed), at most MAX_ROUNDS: what is left is
 * listed, status 4.
 *
 * The whole repair is ONE journal transaction (the editor's atomic commit): a crash leaves, after
 * recovery, the image as it was or repaired. It is committed only when the pending state is not worse
 * by our check than the image was (a repair that made things worse is dropped, nothing written). When
 * the journal cannot hold it (NO_SPACE, nothing written), it is made again with one transaction per
 * round, each leaving the state its round's check found and its fixes made; a crash then leaves an
 * image some rounds into the repair, which a second repair finishes. Without a journal the blocks are
 * written in place at the end, with the editor's warning.
 */
import { Ext4Error } from '../core/errors.js';
import { Ext4Reader } from '../fs/reader.js';
import { checkDevice, type CheckResult, type Problem, type ProblemCode } from '../check/check.js';
import { Volume } from './volume.js';
import {
  repairImage as preenImage,
  applyFixes,
  beginRepair,
  checkFile,
  repairResult,
  preenFixes,
  summaryWrong,
  withInodeFix,
  type RepairOptions as PreenOptions,
  type RepairResult,
} from './repair.js';
import { PendingView } from './repair-view.js';
import { fixEntries, fixDirShapes } from './repair-dirs.js';
import { fixConnectivity } from './repair-lostfound.js';
import { fixDuplicateNames } from './repair-dupnames.js';
import { fixInodes } from './repair-inodes.js';
import { fixSharedBlocks } from './repair-clone.js';
import { resizeInodeFixes, rewriteResizeInode } from './repair-resize-inode.js';
import { fixedTimeOf, opTime } from './inodes.js';

export type { RepairResult, RepairStatus } from './repair.js';

/** `preen`: what e2fsck -p fixes, else nothing written (repair.ts). `all`: what e2fsck -y fixes. */
export type RepairMode = 'preen' | 'all';

export interface RepairOptions extends PreenOptions {
  mode?: RepairMode;
}

/** Rounds of check and fixes at most (each fix class needs one; a chain of them a few). */
export const MAX_ROUNDS = 12;

/**
 * Problems of pass 1 that leave an inode's blocks in doubt: while one is left, the bitmaps are not
 * rewritten from what the check found in use (blocks the inode may still hold would be called free).
 */
const BLOCKS_IN_DOUBT: ReadonlySet<ProblemCode> = new Set<ProblemCode>([
  'INODE_MODE',
  'INODE_MAP',
  'INODE_FLAGS',
  'INODE_EXTRA_SIZE',
  'BLOCK_RANGE',
  'BLOCK_CLAIMED_TWICE',
  'BLOCK_IS_METADATA',
  'XATTR',
  'GROUP_DESC',
  'GROUP_METADATA_OVERLAP',
  'RESIZE_INODE',
  'SUPERBLOCK',
]);

/**
 * Repairs an image file: as `e2fsck -p` (`mode: 'preen'`, the default, repair.ts) or as `e2fsck -y`
 * (`mode: 'all'`; see the module comment). Throws (nothing written) when the image may not be written
 * or checked at all (e2fsck's exit 8).
 */
export function repairImage(imagePath: string, opts: RepairOptions = {}): RepairResult {
  const { mode, ...rest } = opts;
  if (mode === undefined || mode === 'preen') return preenImage(imagePath, rest);
  if (mode !== 'all') throw new Ext4Error('BAD_OPTION', `repair mode ${String(mode)}: 'preen' or 'all'`);
  return repairAll(imagePath, rest);
}

function repairAll(imagePath: string, opts: PreenOptions): RepairResult {
  const start = beginRepair(imagePath, opts);
  const { lock, recovered } = start;
  const fixed = [...start.fixed];
  try {
    if (start.stop) return { status: 4, recovered, fixed: [], remaining: [start.stop], remainingCount: 1 };
    const before = checkFile(imagePath);
    if (before.clean && !before.warnings.length && !summaryWrong(imagePath))
      return { status: recovered ? 1 : 0, recovered, fixed, remaining: [], remainingCount: 0 };
    let made: Problem[];
    try {
      made = rounds(imagePath, opts, before, false);
    } catch (e) {
      if (!(e instanceof Ext4Error) || e.code !== 'NO_SPACE') throw e;
      made = rounds(imagePath, opts, before, true);
    }
    fixed.push(...made);
    return repairResult(imagePath, fixed, recovered);
  } finally {
    lock.release();
  }
}

/**
 * The rounds, in one edit committed at the end (or, `perRound`, one commit a round). Returns the fixes
 * made; none when the result would be worse than `before` (then nothing is written).
 */
function rounds(imagePath: string, opts: PreenOptions, before: CheckResult, perRound: boolean): Problem[] {
  const v = Volume.open(imagePath, { ...opts, atomic: true, repairing: true });
  const fixed: Problem[] = [];
  const seen = new Set<string>();
  const report = (p: Problem) => {
    const key = `${p.code}|${p.text}`;
    if (seen.has(key)) return;
    seen.add(key);
    fixed.push(p);
  };
  try {
    let last = '';
    let res: CheckResult | undefined;
    for (let round = 1; round <= MAX_ROUNDS; round++) {
      res = checkPending(v);
      if (res.clean && !res.warnings.length) break;
      const sig = signature(res);
      if (sig === last) break;
      last = sig;
      // A pass's fixes once the passes before it find nothing (as e2fsck orders them): what a
      // directory block holds decides what is unattached; the structure decides counts and bitmaps.
      let n = fixInodes(v, res, report);
      if (!n) n = fixSharedBlocks(v, res, report);
      if (!n) n = fixEntries(v, res, report) + fixDirShapes(v, res, report);
      if (!n) n = fixConnectivity(v, res, report);
      if (!n) n = fixDuplicateNames(v, res, report);
      if (!n) n = preenRound(v, res, report);
      if (!n) break;
      if (perRound && v.changed) v.commit();
    }
    res = checkPending(v);
    // The superblock's counts and state (the preen's fixes of a clean check).
    if (res.clean && !res.warnings.length) preenRound(v, res, report);
    if (!res.clean && res.problemCount > before.problemCount && !perRound) {
      v.discard();
      return [];
    }
    if (v.changed) v.commit();
    return fixed;
  } finally {
    v.close();
  }
}

/** The open edit checked as it stands (its pending checksums and descriptors sealed first). */
function checkPending(v: Volume): CheckResult {
  v.sealForCheck();
  return checkDevice(new PendingView(v), { keepFixes: true });
}

/** The preen's fixes of what this round's check found (repair.ts); returns how many problems they fix. */
function preenRound(v: Volume, res: CheckResult, report: (p: Problem) => void): number {
  // The resize inode first, in a round of its own, recreated as e2fsck -y recreates it (also where a
  // preen stops on it): a new double-indirect block is allocated, which the bitmaps this round's check
  // computed do not know of; the next round's check counts it.
  const resize = [...res.warnings, ...res.problems].filter((p) => resizeInodeFixes(res, p, true));
  if (resize.length) {
    v.runOp(() => rewriteResizeInode(v, res, opTime(fixedTimeOf(undefined))));
    resize.forEach(report);
    return resize.length;
  }
  // With an inode's blocks in doubt neither the bitmaps nor the counts (the superblock's are summed
  // from the groups') are rewritten: what is left stays as e2fsck would find it.
  if (res.problems.some((p) => BLOCKS_IN_DOUBT.has(p.code) && !preenFixes(res, p))) return 0;
  const fixes = res;
  const mine = res.problems.filter((p) => preenFixes(fixes, p));
  const warnings = res.warnings.filter((w) => w.code === 'GROUP_DESC_CHECKSUM' && w.group !== undefined);
  const out = applyFixes(v, { ...fixes, warnings }, Ext4Reader.open(new PendingView(v), { verifyChecksums: false }));
  for (const w of warnings) report(w);
  for (const p of mine) report(withInodeFix(p, res.inodeFixes!));
  // What applyFixes adds past the check's findings: the superblock's counts and state.
  const extra = out.slice(warnings.length + res.problems.length);
  extra.forEach(report);
  return mine.length + warnings.length + extra.length;
}

/** What a round found, to tell a round that found the same as the one before (no progress). */
function signature(res: CheckResult): string {
  return [...res.warnings, ...res.problems].map((p) => `${p.code}|${p.text}`).join('\n') + `#${res.problemCount}`;
}
