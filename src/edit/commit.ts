/**
 * The commit of an open edit: sealing it into final blocks (frees released, inode, directory leaf,
 * bitmap and descriptor checksums computed once, the superblock's counts, features and times), then
 * writing them. With a journal: as one jbd2 transaction (see journal-log.ts), so a crash leaves the old
 * or the new file system. Without one: new file data first, made durable, then every changed metadata
 * block, made durable; a crash during that second step can leave a mix that e2fsck repairs.
 * Also the checkpoints that split an edit too large for half the journal into several transactions.
 */
import { Ext4Error } from '../core/errors.js';
import { lo32, hi32 } from '../core/bytes.js';
import { COMPAT } from '../ext4/features.js';
import {
  encodeSuperblock,
  freeBlocksCount,
  setFreeBlocksCount,
  SUPERBLOCK_OFFSET,
  type Superblock,
} from '../ext4/superblock.js';
import { setInodeChecksum } from '../ext4/inode.js';
import { hasDirTail, setDirBlockTail } from '../ext4/dirent.js';
import type { Ext4Reader } from '../fs/reader.js';
import type { BlockDevice } from '../io/device.js';
import type { EditCounts, GroupTable } from './groups.js';
import type { BlockAllocator } from './balloc.js';
import type { DataPiece, Transaction } from './transaction.js';
import { writeBlocks, type JournalLog } from './journal-log.js';

/** What the commit needs of the volume. */
export interface CommitVolume {
  readonly name: string;
  readonly dev: BlockDevice;
  readonly r: Ext4Reader;
  readonly sb: Superblock;
  readonly tx: Transaction;
  readonly groups: GroupTable;
  readonly balloc: BlockAllocator;
  readonly counts: EditCounts;
  /** The superblock's own fields changed (orphan list, needs_recovery): it is written at commit. */
  sbChanged: boolean;
  readonly changed: boolean;
  groupOfBlock(block: number): number;
  discard(): void;
}

export interface CommitOptions {
  /** fsync at every step the crash safety depends on. */
  sync: boolean;
  /** The whole edit as one journal transaction (no checkpoints). */
  atomic: boolean;
  onWarning?: (message: string) => void;
}

export class Committer {
  /** Inodes and directory leaves whose checksums are computed at commit. */
  private readonly pendingInodes = new Set<number>();
  private readonly pendingLeaves = new Map<number, number>();
  /** The superblock a sealed commit writes (the volume's own is updated once it is written). */
  private sealedSb: Superblock | undefined;
  /** Bytes written by commits (for s_kbytes_written). */
  bytesWritten = 0;

  constructor(
    private readonly v: CommitVolume,
    /** The journal edits commit through (undefined: the file system has none). */
    private readonly journal: JournalLog | undefined,
    private readonly opts: CommitOptions,
  ) {}

  /**
   * The inode's checksum is due: computed once at commit, however often the inode changes before
   * (reads of blocks this process changed are not verified, so nothing sees it stale).
   */
  sealInode(ino: number): void {
    if (this.v.r.csum) this.pendingInodes.add(ino);
  }

  /** A directory leaf block whose csum tail is due (computed at commit, like inode checksums). */
  sealLeafLater(block: number, seed: number): void {
    this.pendingLeaves.set(block, seed);
  }

  private sealPending(): void {
    const { r, tx } = this.v;
    for (const ino of this.pendingInodes) {
      const { block, offset } = r.inodeLocation(ino);
      if (tx.has(block)) setInodeChecksum(r.csumSeed, ino, tx.modify(block), offset, r.inodeSize);
    }
    for (const [block, seed] of this.pendingLeaves)
      if (tx.has(block)) {
        const b = tx.modify(block);
        if (hasDirTail(b, r.blockSize)) setDirBlockTail(b, r.blockSize, seed);
      }
    this.pendingInodes.clear();
    this.pendingLeaves.clear();
  }

  /**
   * Seals into the open edit's blocks what is due at commit, without writing anything: deferred frees
   * released, inode and leaf checksums, bitmap checksums and the descriptors encoded (the superblock's
   * counts stay pending). A repair checks the edit as it stands through its blocks (repair-view.ts).
   */
  sealForCheck(): void {
    this.v.balloc.release();
    this.sealPending();
    this.v.groups.sealBitmaps();
    this.v.groups.flush();
  }

  /**
   * Turns the open edit into final blocks. Returns the data pieces and metadata blocks to write;
   * nothing is written yet.
   */
  seal(now: number): { data: DataPiece[]; meta: Map<number, Uint8Array> } {
    const v = this.v;
    const bs = v.r.blockSize;
    this.sealForCheck();
    // A copy: the volume's superblock takes it only once the commit is written.
    const sb: Superblock = { ...v.sb };
    this.sealedSb = sb;
    const c = v.counts;
    const free = freeBlocksCount(sb) + c.freeBlocks;
    setFreeBlocksCount(sb, free);
    sb.s_free_inodes_count += c.freeInodes;
    sb.s_feature_ro_compat |= c.roCompat;
    sb.s_feature_incompat |= c.incompat;
    sb.s_wtime = lo32(now);
    sb.s_wtime_hi = hi32(now) & 0xff;
    c.freeBlocks = c.freeInodes = c.roCompat = c.incompat = 0;
    const tx = v.tx;
    const data = tx.takeData();
    const bytes = data.reduce((a, p) => a + p.data.length, 0) + (tx.blocks.size + 1) * bs;
    const kb = sb.s_kbytes_written_lo + sb.s_kbytes_written_hi * 0x1_0000_0000 + Math.ceil(bytes / 1024);
    sb.s_kbytes_written_lo = lo32(kb);
    sb.s_kbytes_written_hi = hi32(kb);
    // The superblock lives at byte 1024: in block 1 with 1 KiB blocks, inside block 0 otherwise.
    const sbBlock = Math.floor(SUPERBLOCK_OFFSET / bs);
    const sbb = tx.modify(sbBlock);
    sbb.set(encodeSuperblock(sb), SUPERBLOCK_OFFSET - sbBlock * bs);
    this.bytesWritten += bytes;
    return { data, meta: tx.blocks };
  }

  /**
   * Writes the open edit. A commit that cannot be made (a change larger than the journal) drops the
   * edit and leaves the image as it was.
   */
  commit(now: { sec: number; nsec: number }): void {
    const v = this.v;
    if (!v.changed) return;
    if (!(v.sb.s_feature_compat & COMPAT.has_journal))
      this.opts.onWarning?.('this image has no journal: a crash while writing can leave it needing a check (e2fsck)');
    const journal = this.journal;
    const { data, meta } = this.seal(now.sec);
    const bs = v.r.blockSize;
    if (journal) {
      const { need, room } = journal.fits(meta.size);
      if (need > room) {
        v.discard();
        throw new Ext4Error(
          'NO_SPACE',
          `${v.name}: this change needs ${need} journal blocks and the journal holds ${room}; make it in smaller batches (nothing was written)`,
        );
      }
      journal.commit(v.dev, data, meta, this.opts.sync, now);
    } else {
      writeBlocks(v.dev, bs, data);
      if (this.opts.sync && data.length) v.dev.sync();
      writeBlocks(
        v.dev,
        bs,
        [...meta].map(([block, d]) => ({ block, data: d })),
      );
      if (this.opts.sync) v.dev.sync();
    }
    v.tx.dataWritten();
    v.tx.blocksWritten();
    if (this.sealedSb) Object.assign(v.sb, this.sealedSb);
    this.sealedSb = undefined;
    v.sbChanged = false;
  }

  /**
   * Called where the file system is consistent (after an operation; between the entries of a tree copy
   * or removal): when the open edit has grown past half the journal, it is committed now as one
   * transaction and the edit goes on in the next, the way the kernel closes transactions. An operation
   * that fails later rolls back to this point. Never with `atomic`, nor without a journal.
   */
  checkpoint(now: () => { sec: number; nsec: number }): void {
    const journal = this.journal;
    const v = this.v;
    if (!journal || this.opts.atomic) return;
    // Blocks the commit would write: the changed blocks, descriptor blocks, the superblock, the bitmaps
    // of deferred frees (counted by group when the quick bound says it matters).
    const frees = v.balloc.pendingFrees;
    const base = v.tx.blocks.size + v.groups.size + 1;
    const half = journal.fits(0).room / 2;
    if (journal.fits(base + frees.length).need <= half) return;
    if (journal.fits(base + v.balloc.pendingFreeGroups()).need <= half) return;
    const inOp = v.tx.inOp;
    if (inOp) v.tx.end();
    this.commit(now());
    if (inOp) v.tx.begin();
  }

  /**
   * Writes the pending new file data now (large files: memory stays bounded). It goes only into blocks
   * that were free before the edit, so the image's file system is unchanged until commit.
   */
  writeDataEarly(): void {
    const tx = this.v.tx;
    const data = tx.takeData();
    writeBlocks(this.v.dev, this.v.r.blockSize, data);
    tx.dataWritten();
    this.bytesWritten += data.reduce((a, p) => a + p.data.length, 0);
  }

  /** Drops what the commit was to seal. */
  discard(): void {
    this.pendingInodes.clear();
    this.pendingLeaves.clear();
    this.sealedSb = undefined;
  }
}
