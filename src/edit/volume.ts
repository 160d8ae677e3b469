/**
 * A file system opened for writing: opening it (refused when mounted, host/mounts.ts; when its features
 * or state forbid it, guard.ts; when another node holds it, mmp.ts), its geometry and inode records, and
 * the open edit, whose parts each live in their own module: the transaction (transaction.ts: changed
 * blocks, pending data, the one undo log), the descriptors and counts (groups.ts), the block and inode
 * allocators (balloc.ts, ialloc.ts) and the commit (commit.ts). Edit modules change blocks through
 * `tx` only.
 */
import * as fs from 'node:fs';
import { Ext4Error } from '../core/errors.js';
import { isZero } from '../core/bytes.js';
import { COMPAT, RO_COMPAT } from '../ext4/features.js';
import { freeBlocksCount, type Superblock } from '../ext4/superblock.js';
import { encodeInode, decodeInode, type Inode, GOOD_OLD_INODE_SIZE, FL_HUGE_FILE } from '../ext4/inode.js';
import { Ext4Reader, type ReaderOptions } from '../fs/reader.js';
import { groupOfBlock, groupFirstBlock, groupBlocks, groupOfInode } from '../ext4/geometry.js';
import { FileDevice, type BlockDevice } from '../io/device.js';
import { mountedLoop } from '../host/mounts.js';
import { JournalLog } from './journal-log.js';
import { Transaction } from './transaction.js';
import { GroupTable, type EditCounts, type EditVolume } from './groups.js';
import { BlockAllocator, type Run } from './balloc.js';
import { InodeAllocator } from './ialloc.js';
import { Committer, type CommitVolume } from './commit.js';
import { checkWritable } from './guard.js';
import { GroupGuard } from './group-guard.js';
import { claimMmp, releaseMmp } from './mmp.js';
import { lockForWrite, type ImageLock, type LockOptions } from '../host/lock.js';
import { fixedTimeOf } from '../core/time.js';
import type { Timestamp } from '../core/types.js';

export interface VolumeOptions extends Pick<ReaderOptions, 'onWarning'> {
  /** fsync at every step the crash safety depends on (default true). */
  sync?: boolean;
  /**
   * Internal: opened by `recover` after the journal was replayed, to clean up orphan inodes and clear
   * needs_recovery (which are otherwise refused).
   */
  recovering?: boolean;
  /** Internal: opened by a repair (repair.ts), which may open a file system marked with errors. */
  repairing?: boolean;
  /**
   * The whole edit (until commit) as one journal transaction: an edit too large for the journal is
   * refused at commit, nothing written. Without it an edit that grows past half the journal is
   * committed in several transactions, each at a point where the file system is consistent.
   */
  atomic?: boolean;
  /** The writer's lock on the image file (src/host/lock.ts): how long to wait for another process. */
  lock?: LockOptions;
  /**
   * The time commits stamp (the superblock's write time, the journal's commit block), as the edit's
   * own times: given, else SOURCE_DATE_EPOCH, else the clock. Fixed, the same edit gives the same bytes.
   */
  timestamp?: number | Timestamp;
}

export class Volume implements EditVolume, CommitVolume {
  readonly r: Ext4Reader;
  readonly bs: number;
  readonly ipg: number;
  readonly bpg: number;
  readonly groupCount: number;
  readonly firstDataBlock: number;
  readonly inodeSize: number;
  readonly csum: boolean;
  readonly csumSeed: number;
  readonly sb: Superblock;
  /** The time commits stamp when the edit has a fixed one (VolumeOptions.timestamp). */
  private readonly fixedTime: Timestamp | undefined;
  /** The open edit's changed blocks, pending data and undo log. */
  readonly tx: Transaction;
  /** Descriptors as the edit has them. */
  readonly groups: GroupTable;
  /** What is checked of a group before the edit writes into it (group-guard.ts). */
  readonly guard: GroupGuard;
  /** Free counts and feature bits changed by the open edit (applied to the superblock at commit). */
  readonly counts: EditCounts = { freeBlocks: 0, freeInodes: 0, roCompat: 0, incompat: 0 };
  readonly balloc: BlockAllocator;
  readonly ialloc: InodeAllocator;
  private readonly committer: Committer;
  private mmpBlock = 0;
  private closed = false;
  private lock: ImageLock | undefined;
  /** The superblock's own fields changed (orphan list, needs_recovery): it is written at commit. */
  sbChanged = false;

  private constructor(
    readonly dev: BlockDevice,
    readonly name: string,
    opts: VolumeOptions,
  ) {
    // Recovering: the journal has just been replayed; the reader's needs_recovery warning would mislead.
    this.r = Ext4Reader.open(dev, { onWarning: opts.recovering ? undefined : opts.onWarning });
    const sb = this.r.sb;
    this.sb = sb;
    this.bs = this.r.blockSize;
    this.ipg = sb.s_inodes_per_group;
    this.bpg = sb.s_blocks_per_group;
    this.groupCount = this.r.groupCount;
    this.firstDataBlock = sb.s_first_data_block;
    this.inodeSize = this.r.inodeSize;
    this.csum = this.r.csum;
    this.csumSeed = this.r.csumSeed;
    checkWritable(sb, name, opts.recovering === true, opts.repairing === true);
    this.guard = new GroupGuard(this.r, name);
    // Every commit writes through the journal inode's map: its group's descriptor is checked first.
    if (sb.s_feature_compat & COMPAT.has_journal && sb.s_journal_inum)
      this.guard.group(groupOfInode(this.r.geo, sb.s_journal_inum));
    const journal = JournalLog.open(this.r, name);
    this.tx = new Transaction(this.r.cache);
    this.groups = new GroupTable(this.r, this.tx);
    this.balloc = new BlockAllocator(this);
    this.ialloc = new InodeAllocator(this, this.balloc);
    this.fixedTime = fixedTimeOf(opts.timestamp);
    this.committer = new Committer(this, journal, {
      sync: opts.sync !== false,
      atomic: opts.atomic === true,
      onWarning: opts.onWarning,
    });
  }

  /**
   * Opens an image file for editing. Refused before anything is written: features the editor cannot
   * keep consistent, a journal that needs recovery, a file system marked with errors or holding orphan
   * inodes, and an image that is mounted or in use (MMP).
   */
  static open(imagePath: string, opts: VolumeOptions = {}): Volume {
    const st = fs.statSync(imagePath, { throwIfNoEntry: false });
    if (!st) throw new Ext4Error('NOT_FOUND', `${imagePath}: no such file`, { path: imagePath });
    if (st.isDirectory()) throw new Ext4Error('IO_ERROR', `${imagePath} is a directory`, { path: imagePath });
    const mounted = mountedLoop(imagePath);
    if (mounted)
      throw new Ext4Error('IN_USE', `${imagePath} is mounted (through ${mounted}); unmount it before editing`, {
        path: imagePath,
      });
    const lock = lockForWrite(imagePath, opts.lock);
    let dev: FileDevice | undefined;
    try {
      dev = FileDevice.open(imagePath, true);
      const v = new Volume(dev, imagePath, opts);
      v.lock = lock;
      v.mmpBlock = claimMmp(dev, v.r, imagePath);
      return v;
    } catch (e) {
      dev?.close();
      lock.release();
      throw e;
    }
  }

  /** Opens a device that is already open (in-memory images, tests). */
  static openDevice(dev: BlockDevice, opts: VolumeOptions = {}): Volume {
    const v = new Volume(dev, 'image', opts);
    v.mmpBlock = claimMmp(dev, v.r, v.name);
    return v;
  }

  // ---- geometry ----

  /** The goal block for an inode's data: its group's start (the kernel's habit; flex_bg packs nearby). */
  inodeGoal(ino: number): number {
    return groupFirstBlock(this.r.geo, groupOfInode(this.r.geo, ino));
  }

  groupOfBlock(block: number): number {
    return groupOfBlock(this.r.geo, block);
  }
  groupFirstBlock(g: number): number {
    return groupFirstBlock(this.r.geo, g);
  }
  groupBlocks(g: number): number {
    return groupBlocks(this.r.geo, g);
  }
  groupOfInode(ino: number): number {
    return groupOfInode(this.r.geo, ino);
  }
  get hasGroupCsum(): boolean {
    return this.csum || (this.sb.s_feature_ro_compat & RO_COMPAT.gdt_csum) !== 0;
  }
  get blocksCount(): number {
    return this.r.blocksCount;
  }
  get freeBlocks(): number {
    return freeBlocksCount(this.sb) + this.counts.freeBlocks;
  }
  get freeInodes(): number {
    return this.sb.s_free_inodes_count + this.counts.freeInodes;
  }

  // ---- allocation (balloc.ts, ialloc.ts) ----

  /** Allocates `count` blocks near `goal`, in as few runs as the free space allows. */
  allocBlocks(goal: number, count: number): Run[] {
    return this.balloc.alloc(goal, count);
  }

  /** Allocates one block near `goal`. */
  allocBlock(goal: number): number {
    return this.balloc.alloc(goal, 1)[0]!.start;
  }

  /** Frees blocks at commit (never reused by this edit, so no new data overwrites what they held). */
  freeLater(start: number, len: number): void {
    this.balloc.freeLater(start, len);
  }

  /** Allocates an inode near its parent (new top-level directories spread out). */
  allocInode(parentIno: number, isDir: boolean): number {
    return this.ialloc.alloc(parentIno, isDir);
  }

  /** Releases inode `ino` (its record must already be cleared by the caller). */
  freeInode(ino: number, isDir: boolean): void {
    this.ialloc.free(ino, isDir);
  }

  // ---- inode records ----

  readInode(ino: number): Inode {
    return this.r.inode(ino);
  }

  /** Writes `inode` over its record (bytes past the known fields, in-inode xattrs among them, are kept). */
  writeInode(ino: number, inode: Inode): void {
    const { block, offset } = this.inodeForWrite(ino);
    const b = this.tx.modifyRange(block, offset, this.inodeSize);
    encodeInode(b, offset, this.inodeSize, inode);
    this.sealInode(ino);
  }

  /** Writes a new inode's whole record: zeros past the fields (no stale attributes), then `inode`. */
  initInode(ino: number, inode: Inode): void {
    const { block, offset } = this.inodeForWrite(ino);
    const b = this.tx.modifyRange(block, offset, this.inodeSize);
    b.fill(0, offset, offset + this.inodeSize);
    encodeInode(b, offset, this.inodeSize, inode);
    this.sealInode(ino);
  }

  /** The raw record of inode `ino` for in-place changes (in-inode xattrs); call sealInode after. */
  inodeRecordForWrite(ino: number): { buf: Uint8Array; offset: number } {
    const { block, offset } = this.inodeForWrite(ino);
    return { buf: this.tx.modify(block), offset };
  }

  /** Where inode `ino`'s record lies, its group checked first (its table may not cover a bitmap). */
  private inodeForWrite(ino: number): { block: number; offset: number } {
    const loc = this.r.inodeLocation(ino);
    this.guard.group(groupOfInode(this.r.geo, ino));
    return loc;
  }

  /** The inode's checksum is due at commit. */
  sealInode(ino: number): void {
    this.committer.sealInode(ino);
  }

  /** A directory leaf block whose csum tail is due at commit. */
  sealLeafLater(block: number, seed: number): void {
    this.committer.sealLeafLater(block, seed);
  }

  /** i_extra_isize for new inodes: what the superblock asks for, or 32 (the kernel's size of the fields). */
  get newExtraIsize(): number {
    if (this.inodeSize <= GOOD_OLD_INODE_SIZE) return 0;
    const want = this.sb.s_want_extra_isize || this.sb.s_min_extra_isize || 32;
    return Math.min(want, this.inodeSize - GOOD_OLD_INODE_SIZE) & ~3;
  }

  /** The generation an inode number reused now gets (one more than its last life's). */
  nextGeneration(ino: number): number {
    const { block, offset } = this.r.inodeLocation(ino);
    const b = this.r.readBlocks(block);
    if (isZero(b, offset, this.inodeSize)) return 0;
    return (decodeInode(b, offset, this.inodeSize).generation + 1) >>> 0;
  }

  /** i_blocks in 512-byte units (huge_file inodes count fs blocks). */
  blocks512(i: Inode): number {
    return i.flags & FL_HUGE_FILE ? i.blocks * (this.bs / 512) : i.blocks;
  }

  /** Sets i_blocks to `n` 512-byte units in the encoding the kernel picks (48 bits need huge_file). */
  setBlocks512(i: Inode, n: number): void {
    i.flags &= ~FL_HUGE_FILE;
    if (n > 0xffffffff && !(this.sb.s_feature_ro_compat & RO_COMPAT.huge_file))
      throw new Ext4Error('TOO_LARGE', 'a file this large needs the huge_file feature, which the image does not have');
    if (n < 2 ** 48) i.blocks = n;
    else {
      i.flags |= FL_HUGE_FILE;
      i.blocks = Math.ceil(n / (this.bs / 512));
    }
  }

  /** Adds `n` 512-byte units (negative: removes) to i_blocks. */
  addBlocks512(i: Inode, n: number): void {
    this.setBlocks512(i, Math.max(0, this.blocks512(i) + n));
  }

  // ---- features ----

  needRoCompat(bit: number): void {
    if (this.sb.s_feature_ro_compat & bit) return;
    this.tx.saveFields(this.counts);
    this.counts.roCompat |= bit;
  }
  needIncompat(bit: number): void {
    if (this.sb.s_feature_incompat & bit) return;
    this.tx.saveFields(this.counts);
    this.counts.incompat |= bit;
  }

  /** Sets the superblock's free counts to the sums of the descriptors' (as they will be at commit). */
  recountFree(): void {
    const { blocks, inodes } = this.groups.sumFree();
    // The deltas of this edit are in the descriptors already: the counts take the sums as they stand.
    this.tx.saveFields(this.counts);
    this.counts.freeBlocks = blocks - freeBlocksCount(this.sb);
    this.counts.freeInodes = inodes - this.sb.s_free_inodes_count;
    this.sbChanged = true;
  }

  // ---- operations and commit ----

  /** Starts an operation: what it changes is rolled back if it fails. */
  beginOp(): void {
    this.tx.begin();
  }

  endOp(): void {
    this.tx.end();
  }

  rollbackOp(): void {
    this.tx.rollback();
  }

  /** Runs one operation: all of it, or (on any error, passed on as an Ext4Error) none of it. */
  runOp<T>(fn: () => T): T {
    this.beginOp();
    try {
      const out = fn();
      this.endOp();
      return out;
    } catch (e) {
      this.rollbackOp();
      throw opError(e);
    }
  }

  /** True when the open edit changed anything. */
  get changed(): boolean {
    return this.tx.changed || this.balloc.pendingFrees.length > 0 || this.groups.size > 0 || this.sbChanged;
  }

  /** Bytes written by commits (for s_kbytes_written). */
  get bytesWritten(): number {
    return this.committer.bytesWritten;
  }

  /** Writes the open edit (commit.ts). */
  commit(now: { sec: number; nsec: number } = this.fixedTime ?? clock()): void {
    if (this.closed) throw new Ext4Error('IO_ERROR', `${this.name} is closed`);
    this.committer.commit(now);
  }

  /** Seals what is due at commit into the open edit's blocks, writing nothing (a repair's check; commit.ts). */
  sealForCheck(): void {
    this.committer.sealForCheck();
  }

  /** Commits here when the open edit has grown past half the journal (commit.ts). */
  checkpoint(): void {
    if (!this.closed) this.committer.checkpoint(() => this.fixedTime ?? clock());
  }

  /** Writes the pending new file data now (large files: memory stays bounded). */
  writeDataEarly(): void {
    this.committer.writeDataEarly();
  }

  /** Drops the open edit (nothing of it is written). */
  discard(): void {
    this.tx.discard();
    this.groups.discard();
    this.balloc.discard();
    this.ialloc.discard();
    this.committer.discard();
    const c = this.counts;
    c.freeBlocks = c.freeInodes = c.roCompat = c.incompat = 0;
    this.sbChanged = false;
    // The superblock object may carry nothing of the edit: counts live in `counts` until seal().
  }

  /** Releases MMP and the device. An open edit that was not committed is dropped. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.mmpBlock) releaseMmp(this.dev, this.r, this.mmpBlock);
    } finally {
      this.dev.close();
      this.lock?.release();
    }
  }
}

/** An operation's failure as an Ext4Error (anything else becomes IO_ERROR, with it as the cause). */
export function opError(e: unknown): Ext4Error {
  if (e instanceof Ext4Error) return e;
  return new Ext4Error('IO_ERROR', `${(e as Error).message ?? String(e)}`, { cause: e });
}

function clock(): { sec: number; nsec: number } {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}
