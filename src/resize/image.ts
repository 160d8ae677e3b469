/**
 * `resize`: the front. Growing an image file's file system to the file's size (after `truncate -s`) or
 * to a given size (the file extended with ftruncate, sparse), in steps that each commit a consistent
 * file system (plan.ts, grow.ts); shrinking it to a smaller size or its minimum (shrink-image.ts), the
 * file cut after; the minimum itself (--print-min). Refused before anything is written: a shrink below
 * the minimum (NO_SPACE) or needing what is not implemented yet, a file cut below its file system,
 * past 2^32 blocks without 64bit, a size the host file system cannot hold, and whatever the editor
 * refuses (mounted, in use, needs recovery or a check, bigalloc and other features it cannot keep).
 */
import * as fs from 'node:fs';
import { Ext4Error } from '../core/errors.js';
import { INCOMPAT } from '../ext4/features.js';
import {
  blocksCount,
  decodeSuperblock,
  reservedBlocksCount,
  EXT4_MAGIC,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
} from '../ext4/superblock.js';
import { inodeTableBlocks } from '../ext4/geometry.js';
import { Volume } from '../edit/volume.js';
import { JournalLog } from '../edit/journal-log.js';
import { recoverJournal } from '../edit/recover.js';
import { fixedTimeOf, opTime } from '../edit/inodes.js';
import { lockForWrite, type LockOptions } from '../host/lock.js';
import { planGrow, type GrowStep } from './plan.js';
import { applyStep } from './grow.js';
import { hasResizeInode } from './groups.js';
import { FileDevice } from '../io/device.js';
import { Ext4Reader } from '../fs/reader.js';
import { lockForRead } from '../host/lock.js';
import { floorBlocks, minimumBlocks } from './shrink-plan.js';
import { applyShrink, prepareShrink } from './shrink-image.js';
import { shrinkInput } from './shrink-input.js';

export interface ResizeOptions {
  /** fsync at every step the crash safety depends on (default true). */
  sync?: boolean;
  /** Recover a journal that needs it first (as the editing commands' --recover) instead of refusing. */
  recover?: boolean;
  /** The time written as the superblock's write time (default SOURCE_DATE_EPOCH, else the clock). */
  timestamp?: number;
  onWarning?: (message: string) => void;
  lock?: LockOptions;
  /** Internal (tests): at most this many reserved GDT blocks taken per step (default: what half the journal holds). */
  maxReservedPerStep?: number;
}

export interface ResizeResult {
  image: string;
  blockSize: number;
  /** Blocks before and after (equal: nothing to do). */
  oldBlocks: number;
  newBlocks: number;
  oldGroups: number;
  newGroups: number;
  /** Transactions committed (steps): more than one when the reserved GDT blocks run out or the journal is small. */
  steps: number;
  /** The grow turned meta_bg on (and dropped resize_inode). */
  toMetaBg: boolean;
  /** Reserved GDT blocks left for later grows. */
  reservedGdtBlocks: number;
  /** The image file was extended (ftruncate). */
  fileExtended: boolean;
  /** Bytes of metadata written outside the journal. */
  bytesWritten: number;
  /** A shrink: inodes moved out of the removed groups (they have new numbers). */
  inodesMoved?: number;
  /** A shrink: files whose blocks moved below the new end, and how many blocks. */
  filesMoved?: number;
  blocksMoved?: number;
  /** A shrink: kept groups whose bitmaps or inode table moved below the new end. */
  tablesMoved?: number;
}

/** A file cut below its file system cannot be read whole: the shrink must come before the cut. */
function refuseCut(image: string, bs: number, have: number, fileSize: number): never {
  throw new Ext4Error(
    'UNSUPPORTED_FEATURE',
    `${image}: the file (${fileSize} bytes) is shorter than its file system (${have} blocks of ${bs} bytes, ${have * bs} bytes); shrink with 'resize IMAGE SIZE' (it cuts the file itself) instead of cutting the file first`,
  );
}

/** The size a shrink to the minimum goes to (resize2fs -P's figure) and the smallest a given size may be. */
export interface MinimumSize {
  image: string;
  blockSize: number;
  /** Blocks and bytes now. */
  blocks: number;
  bytes: number;
  /** The size `--min` shrinks to, in blocks and bytes: resize2fs -P's estimate, or more where our shrink needs it. */
  minBlocks: number;
  minBytes: number;
  /** The smallest size a shrink to a given size may go to (below it NO_SPACE), in blocks and bytes. */
  floorBlocks: number;
  floorBytes: number;
}

/** The smallest size the file system of `image` can be shrunk to; reads only (a dirty journal replayed in memory). */
export function minimumSize(image: string, opts: { onWarning?: (message: string) => void } = {}): MinimumSize {
  if (!fs.existsSync(image)) throw new Ext4Error('NOT_FOUND', `${image}: no such file`, { path: image });
  const lock = lockForRead(image);
  const dev = FileDevice.open(image);
  try {
    const r = Ext4Reader.open(dev, { replayJournal: true, onWarning: opts.onWarning });
    const bs = r.blockSize;
    const input = shrinkInput(r);
    const min = minimumBlocks(input);
    const floor = floorBlocks(input);
    return {
      image,
      blockSize: bs,
      blocks: r.blocksCount,
      bytes: r.blocksCount * bs,
      minBlocks: min,
      minBytes: min * bs,
      floorBlocks: floor,
      floorBytes: floor * bs,
    };
  } finally {
    dev.close();
    lock.release();
  }
}

/**
 * A file shorter than its file system (cut by `truncate -s` below it) cannot be opened as it is:
 * what it would take is a shrink, refused as one before the reader runs off the end of the file.
 */
function refuseCutShort(image: string, fileSize: number): void {
  const head = new Uint8Array(SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE);
  const fd = fs.openSync(image, 'r');
  try {
    if (fs.readSync(fd, head, 0, head.length, 0) < head.length) return;
  } finally {
    fs.closeSync(fd);
  }
  const sb = decodeSuperblock(head.subarray(SUPERBLOCK_OFFSET), { verify: false });
  if (sb.s_magic !== EXT4_MAGIC || sb.s_log_block_size > 6) return;
  const bs = 1024 << sb.s_log_block_size;
  const have = blocksCount(sb);
  if (fileSize < have * bs) refuseCut(image, bs, have, fileSize);
}

/** Blocks the file system is to have: SIZE's whole blocks, or the file's whole pages (as resize2fs takes it). */
function targetBlocks(sizeBytes: number | undefined, fileSize: number, bs: number): number {
  if (sizeBytes === undefined) {
    const blocks = Math.floor(fileSize / bs);
    return bs < 4096 ? blocks - (blocks % (4096 / bs)) : blocks;
  }
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0)
    throw new Ext4Error('BAD_SIZE', `size must be a positive whole number of bytes, got ${sizeBytes}`);
  return Math.floor(sizeBytes / bs);
}

/**
 * Grows the file system of image file `image` to `sizeBytes` (default: the file's size); `'min'` or a
 * size below the file system's asks for a shrink (refused with NO_SPACE and the minimum when what is in
 * use does not fit).
 */
export function resizeImage(
  image: string,
  sizeBytes: number | 'min' | undefined,
  opts: ResizeOptions = {},
): ResizeResult {
  const st = fs.statSync(image, { throwIfNoEntry: false });
  if (!st) throw new Ext4Error('NOT_FOUND', `${image}: no such file`, { path: image });
  const sync = opts.sync !== false;
  const now = opTime(fixedTimeOf(opts.timestamp));
  const lock = lockForWrite(image, opts.lock);
  try {
    if (sizeBytes !== 'min') refuseCutShort(image, st.size);
    if (opts.recover || lock.tookOverFrom)
      recoverJournal(image, { sync, onWarning: opts.onWarning, deadWriter: lock.tookOverFrom });
    return growLocked(image, sizeBytes, { ...opts, sync }, now);
  } finally {
    lock.release();
  }
}

function growLocked(
  image: string,
  sizeBytes: number | 'min' | undefined,
  opts: ResizeOptions & { sync: boolean },
  now: { sec: number; nsec: number },
): ResizeResult {
  const volOpts = { sync: opts.sync, onWarning: opts.onWarning, lock: opts.lock };
  let v = Volume.open(image, volOpts);
  try {
    const r = v.r;
    const bs = r.blockSize;
    const fileSize = v.dev.size;
    const old = r.blocksCount;
    const want = sizeBytes === 'min' ? minimumBlocks(shrinkInput(r)) : targetBlocks(sizeBytes, fileSize, bs);
    if (want < old) {
      // Refused before anything is written: NO_SPACE (with the minimum) when the data does not fit.
      const plan = prepareShrink(v, want);
      const done = applyShrink(image, v, plan, () => (v = Volume.open(image, volOpts)), {
        sync: opts.sync,
        now,
        onWarning: opts.onWarning,
      });
      return {
        image,
        blockSize: bs,
        oldBlocks: old,
        newBlocks: plan.after.blocksCount,
        oldGroups: plan.before.groupCount,
        newGroups: plan.after.groupCount,
        steps: done.steps,
        toMetaBg: false,
        reservedGdtBlocks: plan.after.reservedGdtBlocks,
        fileExtended: false,
        bytesWritten: 0,
        inodesMoved: done.inodesMoved,
        filesMoved: done.filesMoved,
        blocksMoved: done.blocksMoved,
        tablesMoved: done.tablesMoved,
      };
    }
    const result: ResizeResult = {
      image,
      blockSize: bs,
      oldBlocks: old,
      newBlocks: old,
      oldGroups: r.groupCount,
      newGroups: r.groupCount,
      steps: 0,
      toMetaBg: false,
      reservedGdtBlocks: r.sb.s_reserved_gdt_blocks,
      fileExtended: false,
      bytesWritten: 0,
    };
    if (want === old) return result;
    const journal = JournalLog.open(r, image);
    const steps: GrowStep[] = planGrow(r.geo, {
      target: want,
      resizeInode: hasResizeInode(r),
      is64: (r.sb.s_feature_incompat & INCOMPAT['64bit']) !== 0,
      inodeTableBlocks: inodeTableBlocks(r.geo),
      // A step's transaction holds the reserved GDT blocks it takes, and a few dozen more.
      maxReservedPerStep:
        opts.maxReservedPerStep ?? (journal ? Math.max(1, Math.floor(journal.fits(0).room / 4)) : undefined),
    });
    if (!steps.length) return result;
    const final = steps[steps.length - 1]!.after;
    if (!journal)
      opts.onWarning?.('this image has no journal: a crash while growing it can leave it needing a check (e2fsck)');

    // The file: as long as the grown file system, the new region a hole (so it reads as zeros).
    const oldBytes = old * bs;
    const newBytes = final.blocksCount * bs;
    const finalSize = Math.max(fileSize, newBytes);
    resizeFile(v, image, finalSize);
    let zeroFrom = Math.max(oldBytes, fileSize);
    if (fileSize > oldBytes && (sizeBytes === undefined || sizeBytes === 'min' || newBytes >= fileSize)) {
      // What lies past the old end belongs to nothing: cut it off, so the new region is a hole.
      resizeFile(v, image, oldBytes);
      resizeFile(v, image, finalSize);
      zeroFrom = oldBytes;
    }
    result.fileExtended = finalSize > fileSize;
    const reservedPercent = (reservedBlocksCount(r.sb) * 100.0) / old;

    for (let k = 0; k < steps.length; k++) {
      if (k > 0) {
        v.close();
        v = Volume.open(image, volOpts);
      }
      const res = applyStep(
        {
          r: v.r,
          dev: v.dev,
          name: image,
          journal: k === 0 ? journal : JournalLog.open(v.r, image),
          sync: opts.sync,
          now,
          zeroing: { zeroFrom },
          reservedPercent,
        },
        steps[k]!,
      );
      result.bytesWritten += res.bytesWritten;
      result.steps++;
    }
    result.newBlocks = final.blocksCount;
    result.newGroups = final.groupCount;
    result.toMetaBg = steps.some((s) => s.toMetaBg);
    result.reservedGdtBlocks = final.reservedGdtBlocks;
    return result;
  } finally {
    v.close();
  }
}

/** Sets the file's size; a size the host file system cannot hold is TOO_LARGE (nothing else changed). */
function resizeFile(v: Volume, image: string, size: number): void {
  if (v.dev.size === size) return;
  try {
    v.dev.truncate(size);
  } catch (e) {
    const code = (e as { cause?: { code?: string } }).cause?.code ?? (e as { code?: string }).code;
    if (code === 'EFBIG' || code === 'EINVAL')
      throw new Ext4Error('TOO_LARGE', `${image}: the host file system cannot hold a file of ${size} bytes`, {
        path: image,
      });
    if (code === 'ENOSPC') throw new Ext4Error('NO_SPACE', `${image}: no space on the host to grow the file`);
    throw e;
  }
}
