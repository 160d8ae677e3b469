/**
 * The block group descriptors as the open edit has them: changed descriptors are kept decoded (the
 * reader is handed the same objects, so it sees the edit as it goes) and encoded into their blocks, with
 * their checksums, once at commit; the groups whose bitmaps changed get their bitmap checksums then.
 * Both are saved in the transaction's undo log at their first change in an operation.
 *
 * Also `EditVolume`: what the allocators need of the volume, declared here so they depend on it and
 * not on volume.ts.
 */
import type { Superblock } from '../ext4/superblock.js';
import {
  encodeGroupDesc,
  putGroupDescChecksum,
  BG_BLOCK_UNINIT,
  BG_INODE_UNINIT,
  type GroupDesc,
} from '../ext4/group-desc.js';
import { bitmapChecksum } from '../ext4/bitmap.js';
import type { Ext4Reader } from '../fs/reader.js';
import type { Transaction } from './transaction.js';
import type { GroupGuard } from './group-guard.js';

/** The edit's changes to the superblock's counts and features, applied at commit (in the undo log). */
export interface EditCounts {
  /** Free blocks and inodes gained (negative: used) by the edit. */
  freeBlocks: number;
  freeInodes: number;
  /** Feature bits the edit needs set (large_file, huge_file, dir_nlink). */
  roCompat: number;
  incompat: number;
}

/** The volume as the allocators see it: geometry, the open edit, its descriptors and counts. */
export interface EditVolume {
  readonly name: string;
  readonly bs: number;
  readonly ipg: number;
  readonly bpg: number;
  readonly groupCount: number;
  readonly firstDataBlock: number;
  readonly blocksCount: number;
  readonly sb: Superblock;
  readonly r: Ext4Reader;
  readonly tx: Transaction;
  readonly groups: GroupTable;
  /** What is checked of a group before the edit writes into it. */
  readonly guard: GroupGuard;
  readonly counts: EditCounts;
  readonly hasGroupCsum: boolean;
  readonly freeBlocks: number;
  readonly freeInodes: number;
  groupOfBlock(block: number): number;
  groupFirstBlock(g: number): number;
  groupBlocks(g: number): number;
  groupOfInode(ino: number): number;
}

export class GroupTable {
  /** Descriptors the edit changed (encoded at commit). */
  private readonly dirty = new Map<number, GroupDesc>();
  /** Groups whose bitmaps changed, in the order they did: their checksums are refreshed at commit. */
  private readonly bitmapsChanged = new Set<number>();

  constructor(
    private readonly r: Ext4Reader,
    private readonly tx: Transaction,
  ) {
    // The reader's decoded descriptors follow the restored ones.
    tx.onRollback(() => {
      r.forgetGroupDesc();
      for (const [g, d] of this.dirty) r.rememberGroupDesc(g, d);
    });
  }

  /** How many descriptors the edit changed. */
  get size(): number {
    return this.dirty.size;
  }

  /** Descriptor `g` as the edit has it (read-only: the reader's own object). */
  get(g: number): GroupDesc {
    return this.dirty.get(g) ?? this.r.groupDesc(g);
  }

  /** A copy of descriptor `g` as the edit has it, to change and `set`. */
  copy(g: number): GroupDesc {
    return cloneDesc(this.get(g));
  }

  /** Changes descriptor `g` (the reader sees it so at once). */
  set(g: number, d: GroupDesc): void {
    this.tx.saveEntry(this.dirty, g);
    const copy = cloneDesc(d);
    this.dirty.set(g, copy);
    this.r.rememberGroupDesc(g, copy);
  }

  /** Group `g`'s bitmaps are being changed. */
  touch(g: number): void {
    if (this.bitmapsChanged.has(g)) return;
    this.tx.saveEntry(this.bitmapsChanged, g);
    this.bitmapsChanged.add(g);
  }

  /** Refreshes the bitmap checksums of the groups whose bitmaps changed. */
  sealBitmaps(): void {
    const r = this.r;
    for (const g of this.bitmapsChanged) {
      const gd = this.copy(g);
      if (r.csum) {
        if (!(gd.flags & BG_BLOCK_UNINIT))
          gd.blockBitmapCsum = bitmapChecksum(r.csumSeed, r.readBlocks(gd.blockBitmap), r.sb.s_blocks_per_group);
        if (!(gd.flags & BG_INODE_UNINIT))
          gd.inodeBitmapCsum = bitmapChecksum(r.csumSeed, r.readBlocks(gd.inodeBitmap), r.sb.s_inodes_per_group);
      }
      this.set(g, gd);
    }
    this.bitmapsChanged.clear();
  }

  /** Encodes the changed descriptors into their blocks, with their checksums. */
  flush(): void {
    const r = this.r;
    const ds = r.descSize;
    for (const [g, d] of [...this.dirty].sort((a, b) => a[0] - b[0])) {
      const { block, offset } = r.descLocation(g);
      const b = this.tx.modify(block);
      encodeGroupDesc(b, offset, ds, d);
      const c = r.descChecksum(g, b, offset) ?? 0;
      putGroupDescChecksum(b, offset, c);
      d.checksum = c;
    }
    this.dirty.clear();
  }

  /** The free block and inode counts summed over the descriptors as the edit has them. */
  sumFree(): { blocks: number; inodes: number } {
    let blocks = 0;
    let inodes = 0;
    for (let g = 0; g < this.r.groupCount; g++) {
      const d = this.get(g);
      blocks += d.freeBlocks;
      inodes += d.freeInodes;
    }
    return { blocks, inodes };
  }

  /** Drops the edit's descriptors. */
  discard(): void {
    this.dirty.clear();
    this.bitmapsChanged.clear();
    this.r.forgetGroupDesc();
  }
}

/**
 * A field-by-field copy: descriptors reach here decoded, copied and patched, in several shapes, which
 * sent a spread's copy down its generic path (a hot spot of the editor's batch profile).
 */
function cloneDesc(d: GroupDesc): GroupDesc {
  return {
    blockBitmap: d.blockBitmap,
    inodeBitmap: d.inodeBitmap,
    inodeTable: d.inodeTable,
    freeBlocks: d.freeBlocks,
    freeInodes: d.freeInodes,
    usedDirs: d.usedDirs,
    flags: d.flags,
    excludeBitmap: d.excludeBitmap,
    blockBitmapCsum: d.blockBitmapCsum,
    inodeBitmapCsum: d.inodeBitmapCsum,
    itableUnused: d.itableUnused,
    checksum: d.checksum,
  };
}
