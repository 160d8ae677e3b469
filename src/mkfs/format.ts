/**
 * The formatter: plan -> the few metadata blocks an empty ext4 needs, written into a sparse device.
 * Everything not written reads as zeros: uninitialized groups' bitmaps, inode tables (ITABLE_ZEROED is
 * honest on a fresh sparse file) and the journal body.
 */
import { Ext4Error } from '../core/errors.js';
import { put32, parseUuid, formatUuid, lo32, hi32, randomBytes } from '../core/bytes.js';
import { crc32c } from '../core/crc32c.js';
import { COMPAT } from '../ext4/features.js';
import { type Layout, type LayoutOptions, planLayout, takeRuns } from '../ext4/layout.js';
import { groupFirstBlock, groupBlocks, groupOfBlock } from '../ext4/geometry.js';
import {
  emptySuperblock,
  encodeSuperblock,
  SUPERBLOCK_OFFSET,
  STATE_VALID,
  FLAG_SIGNED_HASH,
  DEFM_ACL,
  DEFM_XATTR_USER,
  JNL_BACKUP_BLOCKS,
  CHECKSUM_TYPE_CRC32C,
  EXT4_MAGIC,
  jnlBlocksOf,
  type Superblock,
} from '../ext4/superblock.js';
import {
  encodeGroupDesc,
  groupDescChecksum,
  putGroupDescChecksum,
  BG_BLOCK_UNINIT,
  BG_INODE_UNINIT,
  BG_INODE_ZEROED,
  type GroupDesc,
} from '../ext4/group-desc.js';
import {
  inodeCsumSeed,
  emptyInode,
  type Inode,
  S_IFDIR,
  S_IFREG,
  FL_EXTENTS,
  I_BLOCK_SIZE,
  EXTRA_ISIZE,
  ROOT_INO,
  LOST_FOUND_INO,
  FIRST_INO,
  RESIZE_INO,
  JOURNAL_INO,
} from '../ext4/inode.js';
import {
  resizeDindBlock,
  resizeInodeBlockCount,
  resizeInodeSize,
  resizeListBlocks,
  reservedGdtBlock,
  RESIZE_DIND_SLOT,
  type ResizeGeometry,
} from '../ext4/resize-inode.js';
import { pushBlockParts } from '../core/zero-tail.js';
import { buildExtentTree, extentTreeBlockCount, runsToExtents, type Extent } from '../ext4/extent.js';
import { setBitRange, bitmapChecksum } from '../ext4/bitmap.js';
import { newJournalSuperblock } from '../ext4/journal.js';
import { DX_HASH_HALF_MD4 } from '../ext4/dirhash.js';
import type { BlockDevice } from '../io/device.js';
import type { TreeSource } from '../core/types.js';
import { sourceDateEpoch, storableSeconds } from '../core/time.js';
import type { Spec } from '../tree/sources/spec.js';
import { sourceWithMetadata } from '../tree/sources/overlay.js';
import { writerBuffers, type Owner, type WriterContext } from './writer.js';
import { InodeTables } from './inode-tables.js';
import { populate } from './populate.js';
import { estimateTree, type TreeEstimate } from './estimate.js';

export interface FormatOptions extends LayoutOptions {
  /** Volume label, at most 16 bytes of UTF-8. */
  label?: string;
  /** File system UUID (string or 16 bytes); random when absent. */
  uuid?: string | Uint8Array;
  /** Directory hash seed (a UUID); random when absent. */
  hashSeed?: string | Uint8Array;
  /** Creation time in UNIX seconds; default SOURCE_DATE_EPOCH, else now. */
  timestamp?: number;
  /** A tree to copy into the new file system (mkfs --from). */
  source?: TreeSource;
  /** Owner of every entry, the root directory included; default: the source's owners (root:root without a source). */
  owner?: Owner;
  /**
   * Per-path metadata for the source (an mtree spec, see `parseSpec`): applied after `owner`, so
   * its uid/gid win for the paths it names. Checked against the source before anything is written.
   */
  spec?: Spec;
}

export interface FormatResult {
  layout: Layout;
  uuid: string;
  hashSeed: string;
  timestamp: number;
  /** Bytes the formatter wrote (everything else is a hole). */
  bytesWritten: number;
  freeBlocks: number;
  freeInodes: number;
  /** Inodes used by the copied tree. */
  inodesUsed: number;
  /** Bytes of file data written. */
  dataBytes: number;
}

function uuidOption(v: string | Uint8Array | undefined, what: string): Uint8Array {
  if (v === undefined) {
    const b = randomBytes(16);
    b[6] = (b[6]! & 0x0f) | 0x40; // version 4
    b[8] = (b[8]! & 0x3f) | 0x80; // RFC 4122 variant
    return new Uint8Array(b);
  }
  if (typeof v !== 'string') {
    if (v.length !== 16) throw new Ext4Error('BAD_UUID', `${what} must be 16 bytes`);
    return v;
  }
  const u = parseUuid(v);
  if (!u) throw new Ext4Error('BAD_UUID', `bad ${what} "${v}": expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`);
  return u;
}

/** Resolves the creation time: explicit option, then SOURCE_DATE_EPOCH, then the clock. */
export function resolveTimestamp(t: number | undefined): number {
  if (t !== undefined) return storableSeconds(t);
  return sourceDateEpoch() ?? Math.floor(Date.now() / 1000);
}

/** Lays out `n` blocks from the first free block at or after `goal`, in as many runs as needed. */
function allocRuns(l: Layout, goal: number, n: number): { start: number; len: number }[] {
  return takeRuns(l, goal, n);
}
function allocOne(l: Layout, goal: number): number {
  return allocRuns(l, goal, 1)[0]!.start;
}
function groupFree(l: Layout, g: number): number {
  const s = groupFirstBlock(l, g);
  const n = groupBlocks(l, g);
  return n - l.used.countIn(s, s + n);
}

/** The group mkfs puts the journal in: the middle of the disk, rounded to a flex group, whichever neighbour is emptiest. */
function journalGoal(l: Layout): number {
  let group = groupOfBlock(l, Math.floor((l.blocksCount - l.firstDataBlock) / 2));
  const logFlex = 1 << l.logGroupsPerFlex;
  let start: number;
  if (group > logFlex) {
    group &= ~(logFlex - 1);
    while (group < l.groupCount && groupFree(l, group) === 0) group++;
    if (group === l.groupCount) group = 0;
    start = group;
  } else start = group > 0 ? group - 1 : group;
  const end = group + 1 < l.groupCount ? group + 1 : group;
  group = start;
  for (let i = start + 1; i <= end; i++) if (groupFree(l, i) > groupFree(l, group)) group = i;
  return groupFirstBlock(l, group);
}

/** Extents for runs laid end to end from logical block 0. */
function extentsOf(runs: { start: number; len: number }[]): Extent[] {
  let lblk = 0;
  return runsToExtents(runs.map((r) => ({ lblk: (lblk += r.len) - r.len, pblk: r.start, len: r.len })));
}

/**
 * Writes sorted, non-overlapping pieces, joining runs of exactly adjacent pieces into one write each
 * (group 0's superblock, descriptors, reserved GDT, bitmaps and tables sit side by side).
 */
/** Writes `parts` back to back from `pos`: one gathered write where the device has it, else one buffer. */
function writeParts(dev: BlockDevice, pos: number, parts: readonly Uint8Array[]): void {
  if (parts.length === 1) dev.write(pos, parts[0]!);
  else if (dev.writev) dev.writev(pos, parts);
  else {
    const buf = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let off = 0;
    for (const p of parts) {
      buf.set(p, off);
      off += p.length;
    }
    dev.write(pos, buf);
  }
}

function writeCoalesced(dev: BlockDevice, writes: readonly { pos: number; data: Uint8Array }[]): void {
  let i = 0;
  while (i < writes.length) {
    let j = i + 1;
    let end = writes[i]!.pos + writes[i]!.data.length;
    while (j < writes.length && writes[j]!.pos === end) end += writes[j++]!.data.length;
    writeParts(
      dev,
      writes[i]!.pos,
      writes.slice(i, j).map((w) => w.data),
    );
    i = j;
  }
}

/**
 * Writes the primary reserved GDT blocks, the resize inode's lists (ext4/resize-inode.ts): one
 * gathered write of each block's few entries and a shared zero tail, so no multi-MiB buffer is built.
 * (Writing only the entries would leave the tails as holes, which read as zeros too, but 1,024 small
 * writes measured three times slower than one gathered write, and the fsync after them slower too.)
 * Returns bytes written.
 */
function writeReservedGdt(dev: BlockDevice, rg: ResizeGeometry): number {
  const parts: Uint8Array[] = [];
  for (const list of resizeListBlocks(rg)) pushBlockParts(parts, list);
  writeParts(dev, reservedGdtBlock(rg, 0) * rg.blockSize, parts);
  return rg.reservedGdtBlocks * rg.blockSize;
}

/** The resize inode's layout inputs of a new file system. */
function resizeGeometryOfLayout(l: Layout): ResizeGeometry {
  return {
    blockSize: l.blockSize,
    firstDataBlock: l.firstDataBlock,
    blocksPerGroup: l.blocksPerGroup,
    descBlocks: l.descBlocks,
    reservedGdtBlocks: l.reservedGdtBlocks,
    superGroups: l.superGroups,
  };
}

/** Blocks mkfs gives lost+found: 16 KiB, at least 2 and at most 12 blocks. */
const lostFoundBlocks = (bs: number): number => Math.min(12, Math.max(2, 16384 / bs));

/**
 * Whether a tree of estimate `est` fits layout `l`, and what `l` has free. `planned`: `l` is a plan
 * whose root, lost+found, resize inode and journal are not allocated yet (they are counted here).
 */
export function treeFits(
  l: Layout,
  est: TreeEstimate,
  planned = false,
): { fits: boolean; freeBlocks: number; freeInodes: number } {
  let base = 0;
  if (planned) {
    base = 1 + lostFoundBlocks(l.blockSize);
    if (l.features.compat & COMPAT.resize_inode) base += 1;
    if (l.features.compat & COMPAT.has_journal) base += l.journalBlocks + 1;
  }
  const freeBlocks = l.blocksCount - l.firstDataBlock - l.used.total() - base;
  const freeInodes = l.inodesCount - FIRST_INO;
  return { fits: est.inodes <= freeInodes && est.blocks <= freeBlocks, freeBlocks, freeInodes };
}

/**
 * Writes a fresh file system into `dev`, which must already have its final size (a hole). `source` is
 * the tree as the writer sees it: `opts.source` with `opts.owner` and `opts.spec` laid over it
 * (tree/sources/overlay.ts) unless the caller did that already.
 */
export function formatDevice(
  dev: BlockDevice,
  opts: FormatOptions,
  layout?: Layout,
  source: TreeSource | undefined = sourceWithMetadata(opts.source, opts),
): FormatResult {
  // The plan is consumed (allocations are added to it), so a caller's plan is used once.
  const l = layout ?? planLayout(opts);
  if (dev.size < l.sizeBytes && dev.size < l.blocksCount * l.blockSize)
    throw new Ext4Error(
      'BAD_SIZE',
      `device holds ${dev.size} bytes, the file system needs ${l.blocksCount * l.blockSize}`,
    );
  const bs = l.blockSize;
  const uuid = uuidOption(opts.uuid, 'uuid');
  const hashSeed = uuidOption(opts.hashSeed, 'hash seed');
  const ts = resolveTimestamp(opts.timestamp);
  const label = new TextEncoder().encode(opts.label ?? '');
  if (label.length > 16) throw new Ext4Error('BAD_OPTION', `label "${opts.label}" is longer than 16 bytes`);
  const csumSeed = crc32c(0xffffffff, uuid);
  const isz = l.inodeSize;
  const extraIsize = isz > 128 ? EXTRA_ISIZE : 0;
  const hasJournal = (l.features.compat & COMPAT.has_journal) !== 0;
  const hasResize = (l.features.compat & COMPAT.resize_inode) !== 0;

  // Allocation, in mkfs's order: root, lost+found, resize inode, journal.
  const g0 = groupFirstBlock(l, 0);
  const rootBlock = allocOne(l, g0);
  const lpfCount = lostFoundBlocks(bs);
  const lpfBlocks: number[] = [];
  for (let i = 0; i < lpfCount; i++) lpfBlocks.push(allocOne(l, i === 0 ? g0 : lpfBlocks[i - 1]! + 1));
  const dindBlock = hasResize
    ? allocOne(l, l.firstDataBlock + l.descBlocks + l.reservedGdtBlocks + 2 + l.inodeBlocksPerGroup)
    : 0;
  let journalExtents: Extent[] = [];
  const journalTree: number[] = [];
  if (hasJournal) {
    const runs = allocRuns(l, journalGoal(l), l.journalBlocks);
    journalExtents = extentsOf(runs);
    const treeCount = extentTreeBlockCount(journalExtents.length, bs);
    const first = runs[0]!.start;
    for (let i = 0; i < treeCount; i++) {
      const prefer = first - 1 - i;
      journalTree.push(
        prefer >= l.firstDataBlock && l.used.isFree(prefer, 1) ? (l.used.add(prefer, 1), prefer) : allocOne(l, first),
      );
    }
  }

  const writes: { pos: number; data: Uint8Array }[] = [];
  const put = (block: number, data: Uint8Array) => writes.push({ pos: block * bs, data });
  // s_overhead_clusters as mkfs counts it: every block in use except the root and lost+found
  // directories, the resize inode's DIND and the journal's extent tree blocks.
  const overhead = l.used.total() - 1 - lpfCount - (hasResize ? 1 : 0) - journalTree.length;

  const time = { sec: ts, nsec: 0 };
  const inodes = new InodeTables(l, dev, csumSeed, extraIsize);
  const writeInode = (ino: number, inode: Inode) => inodes.set(ino, inode, (inode.mode & 0xf000) === S_IFDIR);
  for (let ino = 1; ino <= FIRST_INO; ino++) {
    // Reserved inodes are written empty (checksummed); the bad-blocks inode carries the times.
    const inode = emptyInode();
    if (ino === 1) Object.assign(inode, { atime: time, ctime: time, mtime: time });
    writeInode(ino, inode);
  }
  // The primary reserved GDT blocks (about 4 MiB at most sizes) depend only on the geometry: write
  // them first and let the host disk start on them while the tree is read and built.
  const rg = resizeGeometryOfLayout(l);
  let earlyBytes = 0;
  if (hasResize && l.reservedGdtBlocks > 0) {
    earlyBytes = writeReservedGdt(dev, rg);
    dev.startFlush?.();
  }
  let est: TreeEstimate | undefined;
  if (source) {
    // Say so up front, with the numbers, when the tree cannot fit.
    est = estimateTree(source, bs, isz);
    const { freeBlocks, freeInodes, fits } = treeFits(l, est);
    if (!fits)
      throw new Ext4Error(
        'NO_SPACE',
        `the source needs about ${est.blocks} blocks of ${bs} bytes and ${est.inodes} inodes; a ${l.sizeBytes}-byte file system has ${freeBlocks} blocks and ${freeInodes} inodes free`,
      );
  }
  const ctx: WriterContext = {
    l,
    dev,
    csumSeed,
    hashSeed,
    extraIsize,
    now: time,
    owner: opts.owner,
    inodes,
    put,
    // File data goes after group 0's metadata and the base directories, like mkfs.ext4 -d.
    cursor: l.firstDataBlock,
    dataBytes: 0,
    ...writerBuffers(est !== undefined, est),
    // A handful of early write-backs per tree, none for small ones.
    flushEvery: est ? Math.max(32 << 20, Math.ceil(est.dataBytes / 8)) : 0,
  };
  const tree = populate(ctx, source, rootBlock, lpfBlocks);
  // File data is all written now: let the host disk take it while the tables are built.
  if (ctx.dataBytes >= 1 << 20) dev.startFlush?.();
  inodes.set(ROOT_INO, tree.root, true, tree.rootXattrs);
  inodes.set(LOST_FOUND_INO, tree.lostFound, true, tree.lostFoundXattrs);

  if (hasResize) {
    put(dindBlock, resizeDindBlock(rg));
    const iblock = new Uint8Array(I_BLOCK_SIZE);
    put32(iblock, RESIZE_DIND_SLOT * 4, dindBlock);
    writeInode(RESIZE_INO, {
      ...emptyInode(),
      mode: S_IFREG | 0o600,
      size: resizeInodeSize(bs),
      atime: time,
      ctime: time,
      mtime: time,
      crtime: time,
      linksCount: 1,
      blocks: (resizeInodeBlockCount(rg) * bs) / 512,
      block: iblock,
      extraIsize,
    });
  }

  let journalIBlock: Uint8Array = new Uint8Array(I_BLOCK_SIZE);
  if (hasJournal) {
    const tree = buildExtentTree(journalExtents, bs, journalTree, inodeCsumSeed(csumSeed, JOURNAL_INO, 0));
    for (const t of tree.blocks) put(t.block, t.data);
    journalIBlock = tree.iBlock;
    put(journalExtents[0]!.pblk, newJournalSuperblock(bs, l.journalBlocks, uuid));
    writeInode(JOURNAL_INO, {
      ...emptyInode(),
      mode: S_IFREG | 0o600,
      size: l.journalBlocks * bs,
      atime: time,
      ctime: time,
      mtime: time,
      crtime: time,
      linksCount: 1,
      blocks: ((l.journalBlocks + journalTree.length) * bs) / 512,
      flags: FL_EXTENTS,
      block: journalIBlock,
      extraIsize,
    });
  }
  // Inode tables: numbered densely from 1, each group's used part is a prefix; all but the last written.
  inodes.finish();
  const maxIno = inodes.next - 1;
  const usedInGroup = (g: number) => inodes.usedIn(g);

  // Group descriptors, bitmaps and counts.
  const gdt = new Uint8Array(l.descBlocks * bs);
  let freeBlocks = 0;
  const metaPerSuper = 1 + l.descBlocks + l.reservedGdtBlocks;
  const superSet = new Set(l.superGroups);
  const ipg = l.inodesPerGroup;
  for (let g = 0; g < l.groupCount; g++) {
    const start = groupFirstBlock(l, g);
    const n = groupBlocks(l, g);
    const usedHere = l.used.countIn(start, start + n);
    const free = n - usedHere;
    freeBlocks += free;
    const ownMeta = superSet.has(g) ? metaPerSuper : 0;
    const usedInodes = usedInGroup(g);
    let flags = BG_INODE_ZEROED;
    if (usedInodes === 0) flags |= BG_INODE_UNINIT;
    if (g !== l.groupCount - 1 && usedHere === ownMeta) flags |= BG_BLOCK_UNINIT;
    const d: GroupDesc = {
      blockBitmap: l.blockBitmap[g]!,
      inodeBitmap: l.inodeBitmap[g]!,
      inodeTable: l.inodeTable[g]!,
      freeBlocks: free,
      freeInodes: ipg - usedInodes,
      usedDirs: inodes.dirs[g]!,
      flags,
      excludeBitmap: 0,
      blockBitmapCsum: 0,
      inodeBitmapCsum: 0,
      itableUnused: ipg - usedInodes,
      checksum: 0,
    };
    if (!(flags & BG_BLOCK_UNINIT)) {
      const bm = new Uint8Array(bs);
      l.used.forEachIn(start, start + n, (s, e) => setBitRange(bm, s - start, e - start));
      setBitRange(bm, n, bs * 8);
      d.blockBitmapCsum = bitmapChecksum(csumSeed, bm, l.blocksPerGroup);
      put(d.blockBitmap, bm);
    }
    if (!(flags & BG_INODE_UNINIT)) {
      const im = new Uint8Array(bs);
      setBitRange(im, 0, usedInodes);
      setBitRange(im, ipg, bs * 8);
      d.inodeBitmapCsum = bitmapChecksum(csumSeed, im, ipg);
      put(d.inodeBitmap, im);
    }
    const off = g * l.descSize;
    encodeGroupDesc(gdt, off, l.descSize, d);
    putGroupDescChecksum(gdt, off, groupDescChecksum(csumSeed, g, gdt, off, l.descSize));
  }
  for (const g of l.superGroups) put(groupFirstBlock(l, g) + 1, gdt);

  // Superblock, then its backups (which differ only in s_block_group_nr, and so in checksum).
  const sb: Superblock = emptySuperblock();
  const freeInodes = l.inodesCount - maxIno;
  const set = (v: Partial<Superblock>) => Object.assign(sb, v);
  set({
    s_inodes_count: l.inodesCount,
    s_blocks_count_lo: lo32(l.blocksCount),
    s_blocks_count_hi: hi32(l.blocksCount),
    s_r_blocks_count_lo: lo32(l.reservedBlocks),
    s_r_blocks_count_hi: hi32(l.reservedBlocks),
    s_free_blocks_count_lo: lo32(freeBlocks),
    s_free_blocks_count_hi: hi32(freeBlocks),
    s_free_inodes_count: freeInodes,
    s_first_data_block: l.firstDataBlock,
    s_log_block_size: l.logBlockSize,
    s_log_cluster_size: l.logBlockSize,
    s_blocks_per_group: l.blocksPerGroup,
    s_clusters_per_group: l.blocksPerGroup,
    s_inodes_per_group: ipg,
    s_wtime: lo32(ts),
    s_wtime_hi: hi32(ts),
    s_max_mnt_count: 0xffff,
    s_magic: EXT4_MAGIC,
    s_state: STATE_VALID,
    s_errors: 1,
    s_lastcheck: lo32(ts),
    s_lastcheck_hi: hi32(ts),
    s_rev_level: 1,
    s_first_ino: FIRST_INO,
    s_inode_size: isz,
    s_feature_compat: l.features.compat,
    s_feature_incompat: l.features.incompat,
    s_feature_ro_compat: l.features.roCompat,
    s_reserved_gdt_blocks: l.reservedGdtBlocks,
    s_journal_inum: hasJournal ? JOURNAL_INO : 0,
    s_def_hash_version: DX_HASH_HALF_MD4,
    s_jnl_backup_type: hasJournal ? JNL_BACKUP_BLOCKS : 0,
    s_desc_size: l.descSize,
    s_default_mount_opts: DEFM_XATTR_USER | DEFM_ACL,
    s_mkfs_time: lo32(ts),
    s_mkfs_time_hi: hi32(ts),
    s_min_extra_isize: extraIsize,
    s_want_extra_isize: extraIsize,
    // mkfs on x86 (signed char) marks the directory hash signed; the kernel then hashes the same way.
    s_flags: FLAG_SIGNED_HASH,
    s_log_groups_per_flex: l.logGroupsPerFlex,
    s_checksum_type: CHECKSUM_TYPE_CRC32C,
    s_overhead_clusters: overhead,
  });
  sb.s_uuid = uuid;
  sb.s_hash_seed = hashSeed;
  sb.s_volume_name = new Uint8Array(16);
  sb.s_volume_name.set(label);
  if (hasJournal) sb.s_jnl_blocks = jnlBlocksOf(journalIBlock, l.journalBlocks * bs);

  let total =
    writes.reduce((a, w) => a + w.data.length, 0) +
    l.superGroups.length * 1024 +
    ctx.dataBytes +
    earlyBytes +
    inodes.bytesWritten;
  set({ s_kbytes_written_lo: lo32(Math.ceil(total / 1024)), s_kbytes_written_hi: hi32(Math.ceil(total / 1024)) });
  for (const g of l.superGroups) {
    sb.s_block_group_nr = g & 0xffff;
    const bytes = encodeSuperblock(sb);
    writes.push({ pos: g === 0 ? SUPERBLOCK_OFFSET : groupFirstBlock(l, g) * bs, data: bytes });
  }

  writes.sort((a, b) => a.pos - b.pos);
  writeCoalesced(dev, writes);
  total = writes.reduce((a, w) => a + w.data.length, 0) + earlyBytes + inodes.bytesWritten;
  return {
    layout: l,
    uuid: formatUuid(uuid),
    hashSeed: formatUuid(hashSeed),
    timestamp: ts,
    bytesWritten: total + ctx.dataBytes,
    freeBlocks,
    freeInodes,
    inodesUsed: maxIno - FIRST_INO,
    dataBytes: ctx.dataBytes,
  };
}
