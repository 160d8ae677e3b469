/**
 * `check`: what `e2fsck -fn` tells, read-only, in TypeScript. The passes follow e2fsck's: the
 * superblock and descriptors (0), inodes and their blocks (1), directories (2), connectivity (3), link
 * counts (4), bitmaps and counts (5). Nothing is written; memory grows with what is in use (inodes
 * in use, groups with claimed blocks), not with the image's size.
 */
import { Ext4Error } from '../core/errors.js';
import { FileDevice, type BlockDevice } from '../io/device.js';
import { lockForRead, type LockOptions } from '../host/lock.js';
import { openContext, type CheckContext } from './context.js';
import { checkSuperblock, checkDescriptors, checkJournal } from './pass-groups.js';
import { checkInodes } from './pass-inodes.js';
import { checkDirectories, checkConnectivity } from './pass-dirs.js';
import { checkBitmaps } from './pass-bitmaps.js';
import type { Problem } from './problems.js';
import type { DirFix, EntryFix, GroupFix, InodeFix, ResizeInodeFix } from './context.js';

export type { Problem, ProblemCode } from './problems.js';
export type { DirFix, EntryFix, GroupFix, InodeFix, ResizeInodeFix } from './context.js';

export interface CheckResult {
  /** No problem found. */
  clean: boolean;
  /** The problems found (the first 10,000; `problemCount` counts them all). */
  problems: Problem[];
  problemCount: number;
  /** What e2fsck -n prints but does not count (a descriptor checksum it ignores, a journal to replay). */
  warnings: Problem[];
  /** What was looked at: groups, and inodes in use as e2fsck counts them (reserved ones included). */
  groups: number;
  inodesInUse: number;
  /** With `keepFixes`: what pass 5 found each wrong group should hold (context.ts, GroupFix). */
  fixes?: Map<number, GroupFix>;
  /** With `keepFixes`: what passes 1 and 4 found each wrong inode's record should hold (InodeFix). */
  inodeFixes?: Map<number, InodeFix>;
  /** With `keepFixes`: the resize inode is to be rewritten from the layout (ResizeInodeFix). */
  resizeInodeFix?: ResizeInodeFix;
  /** With `keepFixes`: pass 2's directory entries and blocks to fix (EntryFix). */
  entryFixes?: EntryFix[];
  /** With `keepFixes`: passes 2 and 3's directories to fix (DirFix). */
  dirFixes?: DirFix[];
  /** With `keepFixes`: attribute blocks' reference counts as the inodes using them count them. */
  refcountFixes?: Map<number, number>;
  /** With `keepFixes`: by inode, its blocks another claim took first (context.ts sharedClaims). */
  sharedClaims?: Map<number, number[]>;
}

export interface CheckOptions {
  /** Called as each pass starts. */
  onPass?: (pass: string) => void;
  /**
   * Check the file system as it will be once its journal is recovered: committed transactions are
   * replayed in memory first (the image is not changed), as a mount or `recover` would.
   */
  replay?: boolean;
  /** Keep what each group (pass 5) and inode (passes 1, 4) found wrong should hold (for a repair; memory grows with the damage). */
  keepFixes?: boolean;
  /** checkImage: the reader's lock on the image file (how long to wait for a writer). */
  lock?: LockOptions;
}

/**
 * Checks the file system on `dev`. A device that holds no ext2/3/4 file system, or one whose geometry
 * cannot be read at all, throws an Ext4Error (e2fsck's "could not check": exit 8 in the CLI).
 */
export function checkDevice(dev: BlockDevice, opts: CheckOptions = {}): CheckResult {
  const ctx = openContext(dev, opts.replay);
  if (opts.keepFixes) {
    ctx.fixes = new Map();
    ctx.inodeFixes = new Map();
    ctx.entryFixes = [];
    ctx.dirFixes = [];
    ctx.refcountFixes = new Map();
    if (ctx.ratio === 1) ctx.sharedClaims = new Map();
  }
  const pass = (name: string, fn: () => void) => {
    opts.onPass?.(name);
    fn();
  };
  pass('superblock', () => checkSuperblock(ctx, dev));
  pass('descriptors', () => checkDescriptors(ctx));
  pass('journal', () => checkJournal(ctx));
  pass('inodes', () => checkInodes(ctx));
  pass('directories', () => checkDirectories(ctx));
  pass('connectivity', () => checkConnectivity(ctx));
  pass('bitmaps', () => checkBitmaps(ctx));
  const p = ctx.problems;
  return {
    clean: p.count === 0,
    problems: p.list,
    problemCount: p.count,
    warnings: p.warnings,
    groups: ctx.groupCount,
    inodesInUse: inodesInUse(ctx),
    ...(ctx.fixes ? { fixes: ctx.fixes } : {}),
    ...(ctx.inodeFixes ? { inodeFixes: ctx.inodeFixes } : {}),
    ...(ctx.resizeInodeFix ? { resizeInodeFix: ctx.resizeInodeFix } : {}),
    ...(ctx.entryFixes ? { entryFixes: ctx.entryFixes } : {}),
    ...(ctx.dirFixes ? { dirFixes: ctx.dirFixes } : {}),
    ...(ctx.refcountFixes ? { refcountFixes: ctx.refcountFixes } : {}),
    ...(ctx.sharedClaims ? { sharedClaims: ctx.sharedClaims } : {}),
  };
}

/** A failed check in a few words: how many problems, and the first. */
export function problemSummary(res: CheckResult): string {
  const first = res.problems[0];
  return `${res.problemCount} problem(s)${first ? `; first: ${first.code}: ${first.text}` : ''}`;
}

/** Inodes in use as e2fsck counts them ("N/M files"): the reserved ones always, and every one in use. */
function inodesInUse(ctx: CheckContext): number {
  let n = ctx.inodes.size;
  for (let ino = 1; ino < ctx.firstIno && ino <= ctx.inodesCount; ino++) if (!ctx.inodes.has(ino)) n++;
  return n;
}

/** Checks an image file (opened read-only, under a reader's lock: no writer of ours changes it meanwhile). */
export function checkImage(path: string, opts: CheckOptions = {}): CheckResult {
  const lock = lockForRead(path, opts.lock);
  let dev: FileDevice | undefined;
  try {
    dev = FileDevice.open(path);
    return checkDevice(dev, opts);
  } catch (e) {
    if (e instanceof Ext4Error) throw e;
    throw new Ext4Error('CORRUPT', `${path}: the check stopped: ${(e as Error).message}`, { cause: e });
  } finally {
    dev?.close();
    lock.release();
  }
}
