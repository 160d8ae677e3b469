/**
 * A file system opened for writing: superblock and group descriptors, the block and inode allocators
 * over the on-disk bitmaps (uninitialized groups included), inode records, and the commit that writes
 * an edit's changed blocks (new file data first, then metadata).
 *
 * Everything an edit changes lives in blocks of the shared BlockCache (descriptors in their GDT block,
 * bitmaps, inode tables), so rolling back a failed operation is restoring blocks. The few counters
 * kept outside blocks are saved and restored with them (`beginOp` / `rollbackOp`).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Ext4Error } from '../ext4/errors.js';
import { u32, put32, lo32, hi32, isZero } from '../ext4/bytes.js';
import { COMPAT, INCOMPAT, RO_COMPAT, READ_INCOMPAT, WRITE_INCOMPAT, WRITE_RO_COMPAT } from '../ext4/features.js';
import {
  encodeSuperblock,
  freeBlocksCount,
  SUPERBLOCK_OFFSET,
  STATE_VALID,
  type Superblock,
} from '../ext4/superblock.js';
import {
  encodeGroupDesc,
  groupDescChecksum,
  groupDescCrc16,
  putGroupDescChecksum,
  BG_BLOCK_UNINIT,
  BG_INODE_UNINIT,
  type GroupDesc,
} from '../ext4/group-desc.js';
import {
  encodeInode,
  setInodeChecksum,
  decodeInode,
  type Inode,
  GOOD_OLD_INODE_SIZE,
  FL_HUGE_FILE,
} from '../ext4/inode.js';
import { setBit, clearBit, setBitRange, testBit, countBits, bitmapChecksum } from '../ext4/bitmap.js';
import { hasDirTail, setDirBlockTail } from '../ext4/dirent.js';
import { Ext4Reader, type ReaderOptions } from '../fs/reader.js';
import { groupOfBlock, groupFirstBlock, groupBlocks, groupOfInode } from '../ext4/geometry.js';
import { FileDevice, type BlockDevice } from '../io/device.js';
import type { DataPiece } from '../io/cache.js';
import { JournalLog, writeBlocks } from './journal-log.js';
import { MMP_MAGIC, MMP_SEQ_CLEAN, MMP_SEQ_FSCK, MMP_CHECKSUM_OFFSET, mmpBlock, mmpChecksum } from '../ext4/mmp.js';
import { lockForWrite, type ImageLock, type LockOptions } from '../host/lock.js';

export const STATE_ERROR = 0x2;

const FEATURE_WHY: Record<string, string> = {
  bigalloc: 'allocation in clusters (bigalloc)',
  casefold: 'case-insensitive directories (casefold)',
  encrypt: 'encrypted directories (encrypt)',
  verity: 'verity-protected files (verity)',
  quota: 'quota accounting (quota), which every change would leave stale',
  compression: 'compression',
  dirdata: 'dirdata',
  journal_dev: 'an external journal device',
  shared_blocks: 'shared blocks',
  has_snapshot: 'snapshots',
  replica: 'replicas',
  readonly: 'the read-only flag',
};

export interface VolumeOptions extends Pick<ReaderOptions, 'onWarning'> {
  /** fsync at every step the crash safety depends on (default true). */
  sync?: boolean;
  /**
   * Internal: opened by `recover` after the journal was replayed, to clean up orphan inodes and clear
   * needs_recovery (which are otherwise refused).
   */
  recovering?: boolean;
  /**
   * The whole edit (until commit) as one journal transaction: an edit too large for the journal is
   * refused at commit, nothing written. Without it an edit that grows past half the journal is
   * committed in several transactions, each at a point where the file system is consistent.
   */
  atomic?: boolean;
  /** The writer's lock on the image file (src/host/lock.ts): how long to wait for another process. */
  lock?: LockOptions;
}

/** A saved position of the volume's counters, restored when an operation fails. */
interface Mark {
  freeBlocks: number;
  freeInodes: number;
  frees: number;
  roCompat: number;
  incompat: number;
  dirtyGroups: number;
}

export class Volume {
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
  /** Free block and inode counts changed by the open edit (applied to the superblock at commit). */
  private freeBlocksDelta = 0;
  private freeInodesDelta = 0;
  /** Blocks freed by the open edit: released at commit, so no new data lands in them before then. */
  private frees: { start: number; len: number }[] = [];
  /** Feature bits the edit needs set (large_file, huge_file, dir_nlink). */
  private roCompatAdd = 0;
  private incompatAdd = 0;
  /** Descriptors the edit changed (encoded at commit), and their values before the operation. */
  private readonly dirtyGd = new Map<number, GroupDesc>();
  private gdUndo: Map<number, GroupDesc | undefined> | undefined;
  /** Inodes and directory leaves whose checksums are computed at commit. */
  private readonly pendingInodes = new Set<number>();
  private readonly pendingLeaves = new Map<number, number>();
  /** Per group: no free block (inode) before this bit; found lazily, forgotten when anything is freed. */
  private readonly blockHint = new Map<number, number>();
  private readonly inodeHint = new Map<number, number>();
  /** Groups whose bitmaps changed: their checksums are refreshed at commit. */
  private dirtyGroups: number[] = [];
  private readonly dirtySet = new Set<number>();
  private mark: Mark | undefined;
  private readonly sync: boolean;
  private mmpBlock = 0;
  /** The journal edits commit through (undefined: the file system has none). */
  private readonly journal: JournalLog | undefined;
  private closed = false;
  private lock: ImageLock | undefined;
  private readonly recovering: boolean;
  private readonly atomic: boolean;
  /** The superblock's own fields changed (orphan list, needs_recovery): it is written at commit. */
  sbChanged = false;
  /** The superblock a sealed commit writes (the volume's own is updated once it is written). */
  private sealedSb: Superblock | undefined;
  /** Bytes written by commits (for s_kbytes_written). */
  bytesWritten = 0;

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
    this.sync = opts.sync !== false;
    this.recovering = opts.recovering === true;
    this.atomic = opts.atomic === true;
    this.checkWritable();
    this.journal = JournalLog.open(this);
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
      v.claimMmp();
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
    v.claimMmp();
    return v;
  }

  private checkWritable(): void {
    const sb = this.sb;
    checkEditableFeatures(sb, this.name, this.recovering);
    if (sb.s_feature_compat & COMPAT.has_journal && !sb.s_journal_inum)
      throw new Ext4Error(
        'UNSUPPORTED_FEATURE',
        `${this.name}: the journal is on an external device, which is not supported`,
      );
    if (this.recovering) return;
    if (sb.s_feature_incompat & INCOMPAT.needs_recovery)
      throw new Ext4Error(
        'NEEDS_RECOVERY',
        `${this.name}: the journal needs recovery (the image is mounted, or was not cleanly unmounted); recover it first (\`ext4-workdisk recover\`, or --recover)`,
      );
    if (sb.s_state & STATE_ERROR || !(sb.s_state & STATE_VALID)) {
      const journaled = (sb.s_feature_compat & COMPAT.has_journal) !== 0;
      if (sb.s_state & STATE_ERROR)
        throw new Ext4Error(
          'NEEDS_CHECK',
          `${this.name}: the file system is marked as having errors; check it first (e2fsck)`,
        );
      throw new Ext4Error(
        journaled ? 'NEEDS_CHECK' : 'IN_USE',
        `${this.name}: the file system was not cleanly unmounted${journaled ? '' : ' (or is mounted)'}; check it first (e2fsck)`,
      );
    }
    if (sb.s_last_orphan || sb.s_feature_ro_compat & RO_COMPAT.orphan_present)
      throw new Ext4Error(
        'NEEDS_RECOVERY',
        `${this.name}: the file system has orphan inodes to clean up (it was not cleanly unmounted); recover it first (\`ext4-workdisk recover\`, or --recover)`,
      );
  }

  /** MMP: refuse an image another node (or fsck) holds, and mark it held while editing. */
  private claimMmp(): void {
    if (!(this.sb.s_feature_incompat & INCOMPAT.mmp)) return;
    const blk = mmpBlock(this.sb);
    const b = this.r.readBlocks(blk).slice();
    if (u32(b, 0) !== MMP_MAGIC) throw new Ext4Error('CORRUPT', `${this.name}: bad MMP block ${blk}`, { block: blk });
    if (u32(b, 4) !== MMP_SEQ_CLEAN)
      throw new Ext4Error('IN_USE', `${this.name}: multiple-mount protection says the file system is in use`);
    this.writeMmp(blk, b, MMP_SEQ_FSCK);
    this.mmpBlock = blk;
  }

  private writeMmp(blk: number, b: Uint8Array, seq: number): void {
    put32(b, 4, seq);
    const now = Math.floor(Date.now() / 1000);
    put32(b, 8, lo32(now));
    put32(b, 12, hi32(now));
    b.fill(0, 0x10, 0x50);
    b.set(new TextEncoder().encode(os.hostname()).subarray(0, 63), 0x10);
    if (this.csum) put32(b, MMP_CHECKSUM_OFFSET, mmpChecksum(this.csumSeed, b));
    this.dev.write(blk * this.bs, b);
    this.dev.sync();
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
    return freeBlocksCount(this.sb) + this.freeBlocksDelta;
  }
  get freeInodes(): number {
    return this.sb.s_free_inodes_count + this.freeInodesDelta;
  }

  // ---- descriptors ----

  /** A copy of descriptor `g` as the edit has it. */
  gd(g: number): GroupDesc {
    return { ...(this.dirtyGd.get(g) ?? this.r.groupDesc(g)) };
  }

  /**
   * Changes descriptor `g`. The edit keeps it decoded (and the reader sees it so); it is encoded into
   * its block, with its checksum, once at commit.
   */
  setGd(g: number, d: GroupDesc): void {
    if (this.gdUndo && !this.gdUndo.has(g)) this.gdUndo.set(g, this.dirtyGd.get(g));
    const copy = { ...d };
    this.dirtyGd.set(g, copy);
    this.r.rememberGroupDesc(g, copy);
  }

  /** Encodes the changed descriptors into their blocks. */
  private flushGd(): void {
    const ds = this.r.descSize;
    for (const [g, d] of [...this.dirtyGd].sort((a, b) => a[0] - b[0])) {
      const { block, offset } = this.r.descLocation(g);
      const b = this.r.cache.modify(block);
      encodeGroupDesc(b, offset, ds, d);
      let c = 0;
      if (this.csum) c = groupDescChecksum(this.csumSeed, g, b, offset, ds);
      else if (this.sb.s_feature_ro_compat & RO_COMPAT.gdt_csum) c = groupDescCrc16(this.sb.s_uuid, g, b, offset, ds);
      putGroupDescChecksum(b, offset, c);
      d.checksum = c;
    }
    this.dirtyGd.clear();
  }

  private touchGroup(g: number): void {
    if (this.dirtySet.has(g)) return;
    this.dirtySet.add(g);
    this.dirtyGroups.push(g);
  }

  // ---- bitmaps ----

  /** The block bitmap of group `g` as it is (computed for an uninitialized group); read-only. */
  blockBitmap(g: number): Uint8Array {
    const gd = this.r.groupDesc(g);
    if (gd.flags & BG_BLOCK_UNINIT && this.hasGroupCsum) return this.initialBlockBitmap(g);
    return this.r.readBlocks(gd.blockBitmap);
  }

  private initialBlockBitmap(g: number): Uint8Array {
    const b = new Uint8Array(this.bs);
    const first = this.groupFirstBlock(g);
    for (const [s, len] of this.r.groupMetaRanges(g).all) setBitRange(b, s - first, s - first + len);
    setBitRange(b, this.groupBlocks(g), this.bs * 8);
    return b;
  }

  /** The block bitmap of group `g`, initialized on disk first when the group was uninitialized. */
  private blockBitmapForWrite(g: number): Uint8Array {
    const gd = this.gd(g);
    if (gd.flags & BG_BLOCK_UNINIT && this.hasGroupCsum) {
      const init = this.initialBlockBitmap(g);
      // A safety net: what the computed bitmap leaves free must be what the descriptor counts.
      if (this.groupBlocks(g) - countBits(init, this.groupBlocks(g)) !== gd.freeBlocks)
        throw new Ext4Error(
          'CORRUPT',
          `group ${g} is marked uninitialized but its free count (${gd.freeBlocks}) disagrees with its metadata`,
          { group: g },
        );
      this.r.cache.put(gd.blockBitmap, init);
      gd.flags &= ~BG_BLOCK_UNINIT;
      this.setGd(g, gd);
    }
    this.touchGroup(g);
    return this.r.cache.modify(gd.blockBitmap);
  }

  private inodeBitmapForWrite(g: number): Uint8Array {
    const gd = this.gd(g);
    if (gd.flags & BG_INODE_UNINIT && this.hasGroupCsum) {
      const init = new Uint8Array(this.bs);
      setBitRange(init, this.ipg, this.bs * 8);
      this.r.cache.put(gd.inodeBitmap, init);
      gd.flags &= ~BG_INODE_UNINIT;
      this.setGd(g, gd);
    }
    this.touchGroup(g);
    return this.r.cache.modify(gd.inodeBitmap);
  }

  // ---- block allocation ----

  /**
   * Allocates `count` blocks, as few runs as the free space allows, starting the search at `goal`
   * (the kernel's habit: near the inode, after the file's last block). Each piece is the first run at
   * least as long as what is still needed, or else the longest free run there is.
   */
  allocBlocks(goal: number, count: number): { start: number; len: number }[] {
    if (count <= 0) return [];
    if (count > this.freeBlocks)
      throw new Ext4Error('NO_SPACE', `${this.name}: ${count} blocks needed, ${Math.max(0, this.freeBlocks)} free`);
    const out: { start: number; len: number }[] = [];
    let remaining = count;
    let at = Math.min(Math.max(goal, this.firstDataBlock), this.blocksCount - 1);
    while (remaining > 0) {
      const run = this.findFreeRun(at, Math.min(remaining, this.bpg));
      if (!run) throw new Ext4Error('NO_SPACE', `${this.name}: no free blocks left (${remaining} more needed)`);
      const len = Math.min(run.len, remaining);
      this.markBlocks(run.start, len);
      const last = out[out.length - 1];
      if (last && last.start + last.len === run.start) last.len += len;
      else out.push({ start: run.start, len });
      remaining -= len;
      at = run.start + len;
      if (at >= this.blocksCount) at = this.firstDataBlock;
    }
    return out;
  }

  /** Allocates one block near `goal`. */
  allocBlock(goal: number): number {
    return this.allocBlocks(goal, 1)[0]!.start;
  }

  /** The first free run of at least `want` blocks from `goal` on (wrapping once), else the longest. */
  private findFreeRun(goal: number, want: number): { start: number; len: number } | undefined {
    const g0 = this.groupOfBlock(goal);
    let best: { start: number; len: number } | undefined;
    for (let k = 0; k <= this.groupCount; k++) {
      const g = (g0 + k) % this.groupCount;
      const free = this.r.groupDesc(g).freeBlocks;
      if (free === 0 || (best && free <= best.len)) continue;
      const first = this.groupFirstBlock(g);
      const n = this.groupBlocks(g);
      // The goal's group is searched from the goal first, and from its start on the last lap; never
      // before the group's first free block.
      const bm = this.blockBitmap(g);
      const low = this.firstFree(this.blockHint, g, bm, n);
      const from = Math.max(low, k === 0 ? goal - first : 0);
      const to = k === this.groupCount ? goal - first : n;
      if (from >= to) continue;
      const run = scanFree(bm, from, to, want);
      if (run && (!best || run.len > best.len)) best = { start: first + run.start, len: run.len };
      if (best && best.len >= want) return best;
    }
    return best;
  }

  private markBlocks(start: number, len: number): void {
    while (len > 0) {
      const g = this.groupOfBlock(start);
      const first = this.groupFirstBlock(g);
      const n = Math.min(len, first + this.groupBlocks(g) - start);
      const bm = this.blockBitmapForWrite(g);
      for (let i = start - first; i < start - first + n; i++)
        if (testBit(bm, i))
          throw new Ext4Error('CORRUPT', `block ${first + i} is already in use`, { block: first + i });
      setBitRange(bm, start - first, start - first + n);
      const gd = this.gd(g);
      gd.freeBlocks -= n;
      this.setGd(g, gd);
      this.freeBlocksDelta -= n;
      start += n;
      len -= n;
    }
  }

  /** Frees blocks at commit (never reused by this edit, so no new data overwrites what they held). */
  freeLater(start: number, len: number): void {
    if (len <= 0) return;
    if (start < this.firstDataBlock || start + len > this.blocksCount)
      throw new Ext4Error('CORRUPT', `cannot free blocks ${start}+${len}: outside the file system`, { block: start });
    this.frees.push({ start, len });
  }

  /** The first clear bit of a group's bitmap at or after its remembered hint (which moves up to it). */
  private firstFree(hints: Map<number, number>, g: number, bm: Uint8Array, n: number): number {
    const i = scanFree(bm, hints.get(g) ?? 0, n, 1)?.start ?? n;
    hints.set(g, i);
    return i;
  }

  private releaseFrees(): void {
    this.blockHint.clear();
    const frees = this.frees.sort((a, b) => a.start - b.start);
    this.frees = [];
    for (let k = 1; k < frees.length; k++)
      if (frees[k]!.start < frees[k - 1]!.start + frees[k - 1]!.len)
        throw new Ext4Error('CORRUPT', `block ${frees[k]!.start} freed twice`, { block: frees[k]!.start });
    for (let { start, len } of frees) {
      while (len > 0) {
        const g = this.groupOfBlock(start);
        const first = this.groupFirstBlock(g);
        const n = Math.min(len, first + this.groupBlocks(g) - start);
        if (this.r.groupDesc(g).flags & BG_BLOCK_UNINIT && this.hasGroupCsum)
          throw new Ext4Error('CORRUPT', `block ${start} lies in an uninitialized group and cannot be in use`, {
            block: start,
          });
        const bm = this.blockBitmapForWrite(g);
        for (let i = start - first; i < start - first + n; i++) {
          if (!testBit(bm, i))
            throw new Ext4Error('CORRUPT', `block ${first + i} is freed but was not in use`, { block: first + i });
          clearBit(bm, i);
          // A freed block's new content (if an earlier operation changed it) is of no use any more.
          this.r.cache.overlay.delete(first + i);
        }
        const gd = this.gd(g);
        gd.freeBlocks += n;
        this.setGd(g, gd);
        this.freeBlocksDelta += n;
        start += n;
        len -= n;
      }
    }
  }

  // ---- inode allocation ----

  /**
   * Allocates an inode: in `goalGroup` when it has room, else the next group that has. Directories
   * directly under the root are spread over the flex groups with the most free inodes and blocks, like
   * the kernel's Orlov allocator; everything else stays near its parent.
   */
  allocInode(parentIno: number, isDir: boolean): number {
    if (this.freeInodes <= 0) throw new Ext4Error('NO_SPACE', `${this.name}: no free inodes`);
    let goal = this.groupOfInode(parentIno);
    if (isDir && parentIno === 2) goal = this.spreadGroup();
    for (let k = 0; k < this.groupCount; k++) {
      const g = (goal + k) % this.groupCount;
      const gd = this.r.groupDesc(g);
      if (gd.freeInodes === 0) continue;
      const ino = this.takeInode(g, isDir);
      if (ino !== undefined) return ino;
    }
    throw new Ext4Error('NO_SPACE', `${this.name}: no free inodes`);
  }

  /** The group to put a new top-level directory in: the emptiest flex group with room, by inodes and blocks. */
  private spreadGroup(): number {
    const flex = this.sb.s_feature_incompat & INCOMPAT.flex_bg ? 1 << this.sb.s_log_groups_per_flex : 1;
    const flexCount = Math.ceil(this.groupCount / flex);
    // Group 0 first on ties, which keeps small images compact.
    let best = 0;
    let bestScore = -1;
    const avgInodes = this.freeInodes / flexCount;
    const avgBlocks = this.freeBlocks / flexCount;
    for (let f = 0; f < flexCount && flexCount > 1; f++) {
      let inodes = 0;
      let blocks = 0;
      let dirs = 0;
      for (let g = f * flex; g < Math.min(this.groupCount, (f + 1) * flex); g++) {
        const gd = this.r.groupDesc(g);
        inodes += gd.freeInodes;
        blocks += gd.freeBlocks;
        dirs += gd.usedDirs;
      }
      if (inodes < avgInodes || blocks < avgBlocks) continue;
      const score = inodes + blocks / 64 - dirs * 16;
      if (score > bestScore) {
        bestScore = score;
        best = f * flex;
      }
    }
    return best;
  }

  private takeInode(g: number, isDir: boolean): number | undefined {
    const bm = this.inodeBitmapForWrite(g);
    const first = Math.max(g === 0 ? this.sb.s_first_ino - 1 : 0, this.firstFree(this.inodeHint, g, bm, this.ipg));
    const run = scanFree(bm, first, this.ipg, 1);
    if (!run) throw new Ext4Error('CORRUPT', `group ${g} counts free inodes but its bitmap has none`, { group: g });
    const idx = run.start;
    setBit(bm, idx);
    // The kernel also sets up the block bitmap of a group it starts using (ext4_new_inode).
    if (this.r.groupDesc(g).flags & BG_BLOCK_UNINIT && this.hasGroupCsum) this.blockBitmapForWrite(g);
    const gd = this.gd(g);
    gd.freeInodes--;
    if (isDir) gd.usedDirs++;
    if (this.hasGroupCsum && idx >= this.ipg - gd.itableUnused) gd.itableUnused = this.ipg - idx - 1;
    this.setGd(g, gd);
    this.freeInodesDelta--;
    return g * this.ipg + idx + 1;
  }

  /** Releases inode `ino` (its record must already be cleared by the caller). */
  freeInode(ino: number, isDir: boolean): void {
    const g = this.groupOfInode(ino);
    const idx = (ino - 1) % this.ipg;
    const bm = this.inodeBitmapForWrite(g);
    if (!testBit(bm, idx)) throw new Ext4Error('CORRUPT', `inode ${ino} is freed but was not in use`, { inode: ino });
    clearBit(bm, idx);
    this.inodeHint.delete(g);
    const gd = this.gd(g);
    gd.freeInodes++;
    if (isDir) gd.usedDirs = Math.max(0, gd.usedDirs - 1);
    this.setGd(g, gd);
    this.freeInodesDelta++;
  }

  // ---- inode records ----

  readInode(ino: number): Inode {
    return this.r.inode(ino);
  }

  /** Writes `inode` over its record (bytes past the known fields, in-inode xattrs among them, are kept). */
  writeInode(ino: number, inode: Inode): void {
    const { block, offset } = this.r.inodeLocation(ino);
    const b = this.r.cache.modify(block);
    encodeInode(b, offset, this.inodeSize, inode);
    this.sealInode(ino);
  }

  /** Writes a new inode's whole record: zeros past the fields (no stale attributes), then `inode`. */
  initInode(ino: number, inode: Inode): void {
    const { block, offset } = this.r.inodeLocation(ino);
    const b = this.r.cache.modify(block);
    b.fill(0, offset, offset + this.inodeSize);
    encodeInode(b, offset, this.inodeSize, inode);
    this.sealInode(ino);
  }

  /** The raw record of inode `ino` for in-place changes (in-inode xattrs); call sealInode after. */
  inodeRecordForWrite(ino: number): { buf: Uint8Array; offset: number } {
    const { block, offset } = this.r.inodeLocation(ino);
    return { buf: this.r.cache.modify(block), offset };
  }

  /**
   * The inode's checksum is due: computed once at commit, however often the inode changes before
   * (reads of blocks this process changed are not verified, so nothing sees it stale).
   */
  sealInode(ino: number): void {
    if (this.csum) this.pendingInodes.add(ino);
  }

  /** A directory leaf block whose csum tail is due (computed at commit, like inode checksums). */
  sealLeafLater(block: number, seed: number): void {
    this.pendingLeaves.set(block, seed);
  }

  private sealPending(): void {
    const cache = this.r.cache;
    for (const ino of this.pendingInodes) {
      const { block, offset } = this.r.inodeLocation(ino);
      if (cache.overlay.has(block)) setInodeChecksum(this.csumSeed, ino, cache.modify(block), offset, this.inodeSize);
    }
    for (const [block, seed] of this.pendingLeaves)
      if (cache.overlay.has(block)) {
        const b = cache.modify(block);
        if (hasDirTail(b, this.bs)) setDirBlockTail(b, this.bs, seed);
      }
    this.pendingInodes.clear();
    this.pendingLeaves.clear();
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
    if (!(this.sb.s_feature_ro_compat & bit)) this.roCompatAdd |= bit;
  }
  needIncompat(bit: number): void {
    if (!(this.sb.s_feature_incompat & bit)) this.incompatAdd |= bit;
  }

  /** Sets the superblock's free counts to the sums of the descriptors' (as they will be at commit). */
  recountFree(): void {
    let blocks = 0;
    let inodes = 0;
    for (let g = 0; g < this.groupCount; g++) {
      const d = this.dirtyGd.get(g) ?? this.r.groupDesc(g);
      blocks += d.freeBlocks;
      inodes += d.freeInodes;
    }
    // The deltas of this edit are in the descriptors already: the counts take the sums as they stand.
    this.freeBlocksDelta = blocks - freeBlocksCount(this.sb);
    this.freeInodesDelta = inodes - this.sb.s_free_inodes_count;
    this.sbChanged = true;
  }

  // ---- operations and commit ----

  beginOp(): void {
    this.r.cache.beginOp();
    this.gdUndo = new Map();
    this.mark = {
      freeBlocks: this.freeBlocksDelta,
      freeInodes: this.freeInodesDelta,
      frees: this.frees.length,
      roCompat: this.roCompatAdd,
      incompat: this.incompatAdd,
      dirtyGroups: this.dirtyGroups.length,
    };
  }

  endOp(): void {
    this.r.cache.endOp();
    this.mark = undefined;
    this.gdUndo = undefined;
  }

  rollbackOp(): void {
    const m = this.mark;
    this.r.cache.rollbackOp();
    for (const [g, before] of this.gdUndo ?? []) {
      if (before) this.dirtyGd.set(g, before);
      else this.dirtyGd.delete(g);
    }
    this.gdUndo = undefined;
    this.r.forgetGroupDesc();
    for (const [g, d] of this.dirtyGd) this.r.rememberGroupDesc(g, d);
    this.blockHint.clear();
    this.inodeHint.clear();
    if (!m) return;
    this.freeBlocksDelta = m.freeBlocks;
    this.freeInodesDelta = m.freeInodes;
    this.frees.length = m.frees;
    this.roCompatAdd = m.roCompat;
    this.incompatAdd = m.incompat;
    for (const g of this.dirtyGroups.splice(m.dirtyGroups)) this.dirtySet.delete(g);
    this.mark = undefined;
  }

  /** True when the open edit changed anything. */
  get changed(): boolean {
    return this.r.cache.changed || this.frees.length > 0 || this.dirtyGd.size > 0 || this.sbChanged;
  }

  /**
   * Turns the open edit into final blocks: frees released, bitmap checksums and descriptors refreshed,
   * the superblock's counts, features and times updated. Returns the data pieces and metadata blocks
   * to write; nothing is written yet.
   */
  seal(now: number): { data: DataPiece[]; meta: Map<number, Uint8Array> } {
    this.releaseFrees();
    this.sealPending();
    for (const g of this.dirtyGroups) {
      const gd = this.gd(g);
      if (this.csum) {
        if (!(gd.flags & BG_BLOCK_UNINIT))
          gd.blockBitmapCsum = bitmapChecksum(this.csumSeed, this.r.readBlocks(gd.blockBitmap), this.bpg);
        if (!(gd.flags & BG_INODE_UNINIT))
          gd.inodeBitmapCsum = bitmapChecksum(this.csumSeed, this.r.readBlocks(gd.inodeBitmap), this.ipg);
      }
      this.setGd(g, gd);
    }
    this.dirtyGroups = [];
    this.dirtySet.clear();
    this.flushGd();
    // A copy: the volume's superblock takes it only once the commit is written.
    const sb: Superblock = { ...this.sb };
    this.sealedSb = sb;
    const free = freeBlocksCount(sb) + this.freeBlocksDelta;
    sb.s_free_blocks_count_lo = lo32(free);
    if (sb.s_feature_incompat & INCOMPAT['64bit']) sb.s_free_blocks_count_hi = hi32(free);
    sb.s_free_inodes_count += this.freeInodesDelta;
    sb.s_feature_ro_compat |= this.roCompatAdd;
    sb.s_feature_incompat |= this.incompatAdd;
    sb.s_wtime = lo32(now);
    sb.s_wtime_hi = hi32(now) & 0xff;
    this.freeBlocksDelta = 0;
    this.freeInodesDelta = 0;
    this.roCompatAdd = 0;
    this.incompatAdd = 0;
    const cache = this.r.cache;
    const data = cache.takeData();
    const bytes = data.reduce((a, p) => a + p.data.length, 0) + (cache.overlay.size + 1) * this.bs;
    const kb = sb.s_kbytes_written_lo + sb.s_kbytes_written_hi * 0x1_0000_0000 + Math.ceil(bytes / 1024);
    sb.s_kbytes_written_lo = lo32(kb);
    sb.s_kbytes_written_hi = hi32(kb);
    // The superblock lives at byte 1024: in block 1 with 1 KiB blocks, inside block 0 otherwise.
    const sbBlock = Math.floor(SUPERBLOCK_OFFSET / this.bs);
    const sbb = cache.modify(sbBlock);
    sbb.set(encodeSuperblock(sb), SUPERBLOCK_OFFSET - sbBlock * this.bs);
    this.bytesWritten += bytes;
    return { data, meta: cache.overlay };
  }

  /**
   * Writes the open edit. With a journal: as one jbd2 transaction (see journal-log.ts), so a crash
   * leaves the old or the new file system. Without one: new file data first, made durable, then every
   * changed metadata block, made durable; a crash during that second step can leave a mix that e2fsck
   * repairs. A commit that cannot be made (a change larger than the journal) drops the edit and
   * leaves the image as it was.
   */
  commit(now: { sec: number; nsec: number } = clock()): void {
    if (this.closed) throw new Ext4Error('IO_ERROR', `${this.name} is closed`);
    if (!this.changed) return;
    const journal = this.journal;
    const { data, meta } = this.seal(now.sec);
    if (journal) {
      const { need, room } = journal.fits(meta.size);
      if (need > room) {
        this.discard();
        throw new Ext4Error(
          'NO_SPACE',
          `${this.name}: this change needs ${need} journal blocks and the journal holds ${room}; make it in smaller batches (nothing was written)`,
        );
      }
      journal.commit(this.dev, data, meta, this.sync, now);
    } else {
      writeBlocks(this.dev, this.bs, data);
      if (this.sync && data.length) this.dev.sync();
      writeBlocks(
        this.dev,
        this.bs,
        [...meta].map(([block, d]) => ({ block, data: d })),
      );
      if (this.sync) this.dev.sync();
    }
    this.r.cache.dataWritten();
    this.r.cache.overlayWritten();
    if (this.sealedSb) Object.assign(this.sb, this.sealedSb);
    this.sealedSb = undefined;
    this.sbChanged = false;
  }

  /**
   * Called where the file system is consistent (after an operation; between the entries of a tree copy
   * or removal): when the open edit has grown past half the journal, it is committed now as one
   * transaction and the edit goes on in the next, the way the kernel closes transactions. An operation
   * that fails later rolls back to this point. Never with `atomic`, nor without a journal.
   */
  checkpoint(): void {
    const journal = this.journal;
    if (!journal || this.atomic || this.closed) return;
    // Blocks the commit would write: the overlay, descriptor blocks, the superblock, the bitmaps of
    // deferred frees (counted by group when the quick bound says it matters).
    const base = this.r.cache.overlay.size + this.dirtyGd.size + 1;
    const half = journal.fits(0).room / 2;
    if (journal.fits(base + this.frees.length).need <= half) return;
    const freedGroups = new Set(this.frees.map((f) => this.groupOfBlock(f.start)));
    if (journal.fits(base + freedGroups.size).need <= half) return;
    const inOp = this.mark !== undefined;
    if (inOp) this.endOp();
    this.commit();
    if (inOp) this.beginOp();
  }

  /**
   * Writes the pending new file data now (large files: memory stays bounded). It goes only into blocks
   * that were free before the edit, so the image's file system is unchanged until commit.
   */
  writeDataEarly(): void {
    const data = this.r.cache.takeData();
    writeBlocks(this.dev, this.bs, data);
    this.r.cache.dataWritten();
    this.bytesWritten += data.reduce((a, p) => a + p.data.length, 0);
  }

  /** Drops the open edit (nothing of it is written). */
  discard(): void {
    this.r.cache.discard();
    this.dirtyGd.clear();
    this.r.forgetGroupDesc();
    this.blockHint.clear();
    this.inodeHint.clear();
    this.pendingInodes.clear();
    this.pendingLeaves.clear();
    this.frees = [];
    this.freeBlocksDelta = 0;
    this.freeInodesDelta = 0;
    this.roCompatAdd = 0;
    this.incompatAdd = 0;
    this.dirtyGroups = [];
    this.dirtySet.clear();
    this.sbChanged = false;
    this.sealedSb = undefined;
    // The superblock object may carry nothing of the edit: counts live in the deltas until seal().
  }

  /** Releases MMP and the device. An open edit that was not committed is dropped. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.mmpBlock) {
        const b = this.dev.read(this.mmpBlock * this.bs, this.bs);
        this.writeMmp(this.mmpBlock, b, MMP_SEQ_CLEAN);
      }
    } finally {
      this.dev.close();
      this.lock?.release();
    }
  }
}

/**
 * In bits [from, to) of a bitmap: the first run of at least `want` clear bits (its length capped at
 * `want`: the rest of a long free stretch is not measured), else the longest shorter one.
 */
function scanFree(b: Uint8Array, from: number, to: number, want: number): { start: number; len: number } | undefined {
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

/**
 * The loop device a host file is attached to while that device is mounted (Linux /sys and
 * /proc/self/mountinfo), else undefined. A mounted image must not be edited behind the kernel's back.
 */
export function mountedLoop(imagePath: string): string | undefined {
  let real: string;
  let st: fs.Stats;
  try {
    real = fs.realpathSync(imagePath);
    st = fs.statSync(real);
  } catch {
    return undefined;
  }
  let loops: string[];
  try {
    loops = fs.readdirSync('/sys/block').filter((n) => n.startsWith('loop'));
  } catch {
    return undefined;
  }
  let mountinfo: string | undefined;
  for (const loop of loops) {
    // Detached loop devices have no backing_file: asked without an exception, which costs more.
    const backingFile = path.join('/sys/block', loop, 'loop', 'backing_file');
    if (!fs.existsSync(backingFile)) continue;
    let backing: string;
    try {
      backing = fs.readFileSync(backingFile, 'utf8').trim();
    } catch {
      continue;
    }
    let same = backing === real;
    if (!same) {
      try {
        const b = fs.statSync(backing);
        same = b.ino === st.ino && b.dev === st.dev;
      } catch {
        same = false;
      }
    }
    if (!same) continue;
    let devno = '';
    try {
      devno = fs.readFileSync(path.join('/sys/block', loop, 'dev'), 'utf8').trim();
    } catch {
      continue;
    }
    if (mountinfo === undefined) {
      try {
        mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8');
      } catch {
        return undefined;
      }
    }
    if (mountinfo.split('\n').some((l) => l.split(' ')[2] === devno)) return `/dev/${loop}`;
  }
  return undefined;
}

function clock(): { sec: number; nsec: number } {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}

/**
 * Refuses features the editor cannot keep consistent. Recovery only frees orphan inodes and clears a
 * flag, which needs no understanding of encrypted names, case-folding or verity; clusters (bigalloc) and
 * quota usage it still cannot keep right.
 */
export function checkEditableFeatures(sb: Superblock, name: string, recovering = false): void {
  const names = (word: Record<string, number>, bits: number) =>
    Object.entries(word)
      .filter(([, b]) => bits & b)
      .map(([n]) => n);
  const incompatOk = recovering ? READ_INCOMPAT : WRITE_INCOMPAT;
  const roOk = recovering ? WRITE_RO_COMPAT | RO_COMPAT.verity : WRITE_RO_COMPAT;
  const badIncompat = sb.s_feature_incompat & ~incompatOk;
  const badRo = sb.s_feature_ro_compat & ~roOk;
  if (badIncompat || badRo) {
    const bad = [...names(INCOMPAT, badIncompat), ...names(RO_COMPAT, badRo)];
    const what = bad.length ? bad.map((n) => FEATURE_WHY[n] ?? n).join(', ') : 'unknown features';
    throw new Ext4Error(
      'UNSUPPORTED_FEATURE',
      `${name}: ${recovering ? 'recovery' : 'editing'} is not supported with ${what}`,
    );
  }
}
