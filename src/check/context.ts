/**
 * What the passes of `check` share: two readers over one block cache (one verifying checksums, whose
 * errors become problems; one not, to read on past them), the file system's geometry, where its fixed
 * metadata lies, and which blocks the inodes claim.
 */
import { Ext4Error } from '../core/errors.js';
import { INCOMPAT, RO_COMPAT } from '../ext4/features.js';
import type { GroupDesc } from '../ext4/group-desc.js';
import { Ext4Reader } from '../fs/reader.js';
import { groupFirstBlock, groupBlocks, groupOfBlock, inodeTableBlocks } from '../ext4/geometry.js';
import type { BlockDevice } from '../io/device.js';
import { decodeSuperblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE } from '../ext4/superblock.js';
import { MAX_LISTED, Problems } from './problems.js';
import { lowestBit, popcount } from './bits.js';
import { InodeTable } from './inode-table.js';

/** The most directory blocks listed for reading ahead (the list's memory is bounded). */
export const MAX_READ_AHEAD_LIST = 1 << 24;

/** A run of fixed metadata (superblock, descriptors, reserved descriptors, bitmaps, inode tables). */
export interface MetaRun {
  start: number;
  len: number;
  /** The group whose metadata it is, and what it is. */
  group: number;
  what: string;
}

/**
 * What pass 5 found a group should hold, kept for a repair (only the parts found wrong are set): its
 * bitmaps as what is in use (the bits of its blocks or inodes; padding is the writer's), its counts,
 * its itable_unused, and the uninitialized flags to clear.
 */
export interface GroupFix {
  blockBitmap?: Uint8Array;
  inodeBitmap?: Uint8Array;
  freeBlocks?: number;
  freeInodes?: number;
  usedDirs?: number;
  itableUnused?: number;
  /** BG_BLOCK_UNINIT and BG_INODE_UNINIT bits to clear. */
  clearFlags: number;
}

/**
 * What passes 1 and 4 found an inode's record should hold, kept for a repair: its link count as the
 * directories count it, its deletion time cleared (in use) or set (deleted, e2fsck -p's "zero dtime"),
 * its checksum recomputed.
 */
export interface InodeFix {
  links?: number;
  dtime?: 'clear' | 'set';
  /** Its checksum only (e2fsck -p's "passes checks, but checksum does not match"). */
  checksum?: boolean;
  /**
   * --repair=all's (a preen stops on these): the inode to clear (a bad mode, a map that cannot be
   * read, a feature flag the file system lacks), inode flags to clear, i_blocks and i_size as its map
   * gives them, a deletion time an orphan list left (cleared, or set when no link is left).
   */
  clear?: boolean;
  clearFlags?: number;
  blocks?: number;
  size?: number;
  lowDtime?: boolean;
  /** Its attribute block, outside the file system, dropped (e2fsck -y's "i_file_acl ... should be zero"). */
  dropXattrBlock?: boolean;
}

/**
 * What pass 2 found wrong with one directory entry or block, kept for a repair (`check --repair=all`):
 * the entry at byte `offset` of directory block `block` (physical) of directory `dir` is to be cleared
 * (it names an inode it cannot), given file type `fileType`, or have its name's bad bytes replaced;
 * a whole block that cannot be read (`salvage`: its bad entries dropped; its checksum resealed).
 */
export interface EntryFix {
  dir: number;
  block: number;
  offset: number;
  fix: 'clear' | 'type' | 'name' | 'salvage';
  fileType?: number;
}

/**
 * What passes 2 and 3 found wrong with a directory's place in the tree, kept for a repair: its '.'
 * and '..' to rewrite (`dots`), its '..' to point at its parent (`dotdot`), the directory to hang
 * under /lost+found (`reconnect`: the top of a subtree the root does not reach), or its index to
 * clear (`unindex`).
 */
export interface DirFix {
  dir: number;
  fix: 'dots' | 'dotdot' | 'reconnect' | 'unindex';
  parent?: number;
}

/**
 * What a rewrite of the resize inode from the layout repairs, kept for a repair (resize-inode.ts).
 */
export interface ResizeInodeFix {
  /** e2fsck -p fixes (or does not look at) everything found: a preen may rewrite it. */
  preen: boolean;
  /** Its DIND block lies in the file system outside the fixed metadata: a rewrite keeps it. */
  keepDind: boolean;
}

export class CheckContext {
  readonly problems = new Problems();
  /** Set by a caller that repairs: pass 5 keeps here, by group, what the groups it finds wrong should hold. */
  fixes: Map<number, GroupFix> | undefined;
  /** Set with `fixes`: by inode, what passes 1 and 4 find its record should hold. */
  inodeFixes: Map<number, InodeFix> | undefined;
  /** With `fixes`: the resize inode is to be rewritten from the layout (resize-inode.ts). */
  resizeInodeFix: ResizeInodeFix | undefined;
  /** Set with `fixes`: pass 2's entries and blocks to fix (EntryFix). */
  entryFixes: EntryFix[] | undefined;
  /** Set with `fixes`: passes 2 and 3's directories to fix (DirFix). */
  dirFixes: DirFix[] | undefined;
  /** Set with `fixes`: attribute blocks whose reference count is wrong, and the count they should hold. */
  refcountFixes: Map<number, number> | undefined;
  /**
   * Set with `fixes`: by inode, its blocks that were claimed before it claimed them (by metadata, an
   * inode scanned earlier, or itself): what a repair clones for it (e2fsck pass 1D). Not kept with
   * bigalloc, where clusters would have to be cloned.
   */
  sharedClaims: Map<number, number[]> | undefined;
  readonly r: Ext4Reader;
  readonly raw: Ext4Reader;
  readonly bs: number;
  readonly bpg: number;
  readonly ipg: number;
  readonly groupCount: number;
  readonly blocksCount: number;
  readonly firstData: number;
  readonly inodesCount: number;
  readonly firstIno: number;
  /** Blocks per allocation cluster (bigalloc), else 1. */
  readonly ratio: number;
  readonly groupCsum: boolean;
  readonly inodes: InodeTable;
  /** Orphan inodes: on the orphan list (linked through dtime) or listed in the orphan file. */
  readonly orphans = new Set<number>();
  /** Fixed metadata, sorted by start. */
  meta: MetaRun[] = [];
  /** Per group, a bitmap of the clusters the inodes claim (made when first needed). */
  private readonly claims: (Uint8Array | undefined)[] = [];
  /** The blocks directories keep their entries in (pass 1), read ahead in order by pass 2. */
  dirBlocks: number[] = [];
  private dirBlocksSorted = false;

  /**
   * Before directory block `pblk` is read: when it is not cached, it and the directory blocks that
   * follow it closely are read in one request (a tree's directories sit near each other).
   */
  readAheadDir(pblk: number): void {
    const cache = this.raw.cache;
    if (cache.has(pblk)) return;
    if (!this.dirBlocksSorted) {
      this.dirBlocks.sort((a, b) => a - b);
      this.dirBlocksSorted = true;
    }
    const list = this.dirBlocks;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid]! < pblk) lo = mid + 1;
      else hi = mid;
    }
    let end = pblk + 1;
    for (let k = lo + 1; k < list.length && list[k]! - pblk < 64 && list[k]! <= end + 8; k++) end = list[k]! + 1;
    cache.prefetch(pblk, Math.min(end, this.blocksCount) - pblk);
  }

  /** Attribute blocks and how many inodes name each. */
  readonly xattrRefs = new Map<number, number>();
  /** Inodes that hold an attribute's value (ea_inode), as the attributes read name them. */
  readonly eaValueInodes = new Set<number>();
  /** Every inode's attributes could be read: an EA inode missing from the set above is unattached. */
  eaValuesComplete = true;
  /**
   * e2fsck's test for inodes an orphan list left behind (a deletion time below the inode count is a
   * list link), off when mkfs's own time is that low (a clock near the epoch would trip it).
   */
  readonly lowDtimeCheck: boolean;

  /** Records a directory entry's or block's fix (a repair's; bounded like the problem list). */
  fixEntry(f: EntryFix): void {
    if (this.entryFixes && this.entryFixes.length < MAX_LISTED) this.entryFixes.push(f);
  }

  /** Records a directory's fix (a repair's). */
  fixDir(f: DirFix): void {
    if (this.dirFixes && this.dirFixes.length < MAX_LISTED) this.dirFixes.push(f);
  }

  /** Records what inode `ino`'s record should hold (a repair's; nothing kept for a plain check). */
  fixInode(ino: number, fix: InodeFix): void {
    if (this.inodeFixes) this.inodeFixes.set(ino, { ...this.inodeFixes.get(ino), ...fix });
  }

  constructor(
    dev: BlockDevice,
    sbChecksumOk: boolean,
    /** The journal's committed transactions are replayed in memory first (the image is not changed). */
    readonly replayed: boolean,
  ) {
    const raw = Ext4Reader.open(dev, { verifyChecksums: false, replayJournal: replayed });
    this.raw = raw;
    // The verifying reader shares the cache; a superblock whose checksum fails is read without checks.
    this.r = sbChecksumOk ? Ext4Reader.open(dev, { cache: raw.cache }) : raw;
    const sb = raw.sb;
    this.bs = raw.blockSize;
    this.bpg = sb.s_blocks_per_group;
    this.ipg = sb.s_inodes_per_group;
    this.inodes = new InodeTable(this.ipg);
    this.groupCount = raw.groupCount;
    this.blocksCount = raw.blocksCount;
    this.firstData = sb.s_first_data_block;
    this.inodesCount = sb.s_inodes_count;
    this.firstIno = sb.s_rev_level === 0 ? 11 : sb.s_first_ino;
    this.ratio = sb.s_feature_ro_compat & RO_COMPAT.bigalloc ? 2 ** (sb.s_log_cluster_size - sb.s_log_block_size) : 1;
    this.groupCsum = (sb.s_feature_ro_compat & (RO_COMPAT.metadata_csum | RO_COMPAT.gdt_csum)) !== 0;
    this.lowDtimeCheck = !(sb.s_mkfs_time && sb.s_mkfs_time < sb.s_inodes_count);
  }

  get sb() {
    return this.raw.sb;
  }
  has(incompat: number): boolean {
    return (this.sb.s_feature_incompat & incompat) !== 0;
  }
  hasRo(ro: number): boolean {
    return (this.sb.s_feature_ro_compat & ro) !== 0;
  }
  get flexBg(): boolean {
    return this.has(INCOMPAT.flex_bg);
  }

  /** Descriptor `g` as stored (read once, without checksum checks: pass 0 reports those). */
  gd(g: number): GroupDesc {
    return this.raw.groupDesc(g);
  }

  groupFirstBlock(g: number): number {
    return groupFirstBlock(this.raw.geo, g);
  }
  groupBlocks(g: number): number {
    return groupBlocks(this.raw.geo, g);
  }
  groupOfBlock(b: number): number {
    return groupOfBlock(this.raw.geo, b);
  }
  inodeTableBlocks(): number {
    return inodeTableBlocks(this.raw.geo);
  }

  /** The fixed metadata run holding block `b`, if any (binary search). */
  metaAt(b: number): MetaRun | undefined {
    let lo = 0;
    let hi = this.meta.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.meta[mid]!.start <= b) lo = mid + 1;
      else hi = mid;
    }
    const m = this.meta[lo - 1];
    return m && b < m.start + m.len ? m : undefined;
  }

  /** The first fixed metadata run overlapping [b, b + len), if any. */
  metaOverlapping(b: number, len: number): MetaRun | undefined {
    const at = this.metaAt(b);
    if (at) return at;
    let lo = 0;
    let hi = this.meta.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.meta[mid]!.start < b) lo = mid + 1;
      else hi = mid;
    }
    const next = this.meta[lo];
    return next && next.start < b + len ? next : undefined;
  }

  /**
   * Records that inode `ino` uses blocks [start, start + len): out of range, fixed metadata or already
   * claimed by another inode is a problem (each block reported once).
   */
  claim(start: number, len: number, ino: number, what: string): void {
    if (start < this.firstData || start + len > this.blocksCount || len <= 0) {
      this.problems.add('BLOCK_RANGE', `inode ${ino}: ${what} ${start}..${start + len - 1} outside the file system`, {
        inode: ino,
        block: start,
      });
      return;
    }
    const m = this.metaOverlapping(start, len);
    if (m) {
      this.problems.add(
        'BLOCK_IS_METADATA',
        `inode ${ino}: ${what} ${Math.max(start, m.start)} is the ${m.what} of group ${m.group}`,
        { inode: ino, block: Math.max(start, m.start) },
      );
      if (this.sharedClaims)
        for (let b = Math.max(start, m.start); b < start + len; b++) if (this.metaAt(b)) this.keepShared(ino, b, 1);
    }
    let dup = -1;
    let dupCount = 0;
    // shared_blocks: files may share blocks (deduplicated images).
    const shared = this.hasRo(RO_COMPAT.shared_blocks);
    const ratio = this.ratio;
    for (let b = start; b < start + len;) {
      const g = this.groupOfBlock(b);
      const first = this.groupFirstBlock(g);
      const end = Math.min(start + len, first + this.groupBlocks(g));
      let bm = this.claims[g];
      if (!bm) this.claims[g] = bm = new Uint8Array(Math.ceil(this.bpg / ratio / 8));
      const from = Math.floor((b - first) / ratio);
      const to = Math.floor((end - 1 - first) / ratio) + 1;
      if (ratio === 1) {
        // A byte of the bitmap at a time: its bits already set are blocks claimed before.
        for (let c = from; c < to;) {
          const k = c >>> 3;
          const lo = c & 7;
          const hi = Math.min(8, lo + to - c);
          const mask = (0xff >>> (8 - (hi - lo))) << lo;
          const taken = bm[k]! & mask;
          if (taken && !shared) {
            if (dup < 0) dup = first + k * 8 + lowestBit(taken);
            dupCount += popcount(taken);
            if (this.sharedClaims) this.keepShared(ino, first + k * 8, taken);
          }
          bm[k]! |= mask;
          c += hi - lo;
        }
      } else
        // Clusters: two files may not share one either (bigalloc gives each its own), but consecutive
        // runs of one file may share the cluster where one ends and the next begins.
        for (let c = from; c < to; c++) {
          const bit = 1 << (c & 7);
          if (bm[c >>> 3]! & bit) {
            if (!shared && !this.ownClusterEdge(ino, first + c * ratio)) {
              if (dup < 0) dup = first + c * ratio;
              dupCount++;
            }
          } else bm[c >>> 3]! |= bit;
        }
      b = end;
    }
    if (dupCount)
      this.problems.add(
        'BLOCK_CLAIMED_TWICE',
        `inode ${ino}: ${what} ${dup}${dupCount > 1 ? ` and ${dupCount - 1} more` : ''} already in use by another inode or by metadata`,
        { inode: ino, block: dup },
      );
    this.lastClaimIno = ino;
    this.lastClaimCluster = Math.floor((start + len - 1 - this.firstData) / ratio);
  }

  /** Records the blocks of byte `bits` (block `base` is its bit 0) as claimed before `ino` claimed them. */
  private keepShared(ino: number, base: number, bits: number): void {
    let list = this.sharedClaims!.get(ino);
    if (!list) this.sharedClaims!.set(ino, (list = []));
    for (let bit = 0; bit < 8; bit++) if (bits & (1 << bit)) list.push(base + bit);
  }

  /** bigalloc: the inode that claimed last, and the cluster its claim ended in. */
  private lastClaimIno = -1;
  private lastClaimCluster = -1;
  private ownClusterEdge(ino: number, clusterStart: number): boolean {
    const c = Math.floor((clusterStart - this.firstData) / this.ratio);
    return this.lastClaimIno === ino && this.lastClaimCluster === c;
  }

  /** The clusters of group `g` the inodes claim (undefined: none). */
  claimed(g: number): Uint8Array | undefined {
    return this.claims[g];
  }
}

/** Opens the checking context; an image that is not ext2/3/4 at all fails (the caller exits 8). */
export function openContext(dev: BlockDevice, replay = false): CheckContext {
  let sbOk = true;
  if (dev.size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE)
    throw new Ext4Error('BAD_MAGIC', 'image is too small to hold an ext2/3/4 superblock');
  try {
    decodeSuperblock(dev.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE), { verify: true });
  } catch (e) {
    if (!(e instanceof Ext4Error) || e.code !== 'BAD_CHECKSUM') throw e;
    sbOk = false;
  }
  const ctx = new CheckContext(dev, sbOk, replay);
  if (!sbOk) ctx.problems.add('SUPERBLOCK_CHECKSUM', 'the superblock checksum does not match its contents');
  return ctx;
}
