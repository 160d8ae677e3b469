/**
 * Planning a shrink, as pure arithmetic on the geometry and a few counts: the minimum (`--min`,
 * `--print-min`), the smallest a given size may be, the geometry a shrink to a given size leaves, and the
 * refusal (NO_SPACE, with that smallest size) when the data does not fit. Nothing here reads or writes.
 *
 * The minimum, in blocks, is the larger of two figures (never more than the current size): what holds
 * the data, with the room our shrink needs, and resize2fs -P's estimate, which holds more metadata back
 * with flex_bg; taking the larger keeps `--print-min` equal to resize2fs -P on every kind of image
 * measured (mkfs.ext4 defaults, 1 KiB blocks, no flex_bg, no resize_inode, meta_bg, ext2, ext3, 64bit,
 * sparse_super2, inline_data, 32 MiB to 64 GiB, empty, filled, with files deleted, grown) but a few, at
 * most 4.1% above it (where our margin for extent trees takes one more group), and always reachable.
 *
 * What holds the data is
 *
 *   first data block + M + D + B + S + E
 *
 * over the smallest number of groups G that holds the used inodes (G * inodes per group >= used) and for
 * which the sum fits in G groups, where
 * - M: the metadata of the G kept groups (superblock and descriptor copies, reserved GDT blocks, two
 *   bitmaps, an inode table each), as the file system has them now;
 * - D: the data, every block in use less the metadata of every group now (file and directory blocks,
 *   extent and indirect blocks, xattr blocks, the journal, the resize inode's own block);
 * - B: with sparse_super2, the backup that follows the last group into the last kept group;
 * - S: with flex_bg, the metadata of the groups that complete the last kept flex group (those groups
 *   go, but their tables lie packed among the kept ones' and are not counted on as room);
 * - E: room for extent trees to grow while data moves (a moved file can end up in more pieces): a
 *   five-hundredth of what the shrink removes, at most one block per used inode or per extent block's
 *   worth of data, whichever is more;
 * and the last group holds its own metadata and 50 blocks more (mkfs's rule). It also keeps every kept
 * group's bitmaps and inode table below the end where they lie now; a shrink to a given size does not
 * need that (move-tables.ts moves them), only the room they take, nor resize2fs's estimate: what holds
 * the data without the tables is the smallest a given size may be.
 *
 * resize2fs -P's estimate (as `resize2fs -d 32 -P` shows it working) starts from the same G, D and E
 * and differs in how it holds metadata back:
 * - the room of G groups is G whole groups less the metadata of every group up to the flex group
 *   boundary past G (a whole flex group more when G ends on one): room for the tables of groups a
 *   shrink may have to place; while D does not fit, it adds the groups the shortfall needs;
 * - the last group holds its own metadata (with flex_bg, when it lies in the first flex group, that of
 *   the whole held-back stretch from group 0, whose tables lie packed there: counted a second time),
 *   plus the data the groups before it cannot hold (counting, of those added at once, only the first
 *   and the newly held back), at least 50 blocks; and it ends past its own inode table.
 * Those two are what lift it up to 1.8 times what holds the data on flex_bg images whose data fits in
 * the first flex group (a 64 GiB image holding a Debian rootfs: 370216 blocks against 204829); it is
 * never below what holds the data but where that has more margin, and resize2fs -M and our shrink
 * both reach it.
 */
import { Ext4Error } from '../core/errors.js';
import { lastGroupTooShort } from '../ext4/layout.js';
import {
  type Geometry,
  backupGroupsFor,
  descsPerBlock,
  groupCountOf,
  groupFirstBlock,
  groupFixedMeta,
} from '../ext4/geometry.js';

/** What the minimum depends on besides the geometry. */
export interface ShrinkInput {
  geo: Geometry;
  /** Inodes in use (the inode count less the free ones). */
  usedInodes: number;
  /** Free blocks (the groups' counts summed). */
  freeBlocks: number;
  /** Inode table blocks per group. */
  inodeTableBlocks: number;
  /** log2 of the groups per flex group; 0 without flex_bg. */
  logGroupsPerFlex: number;
  /** The file system maps files with extents (their trees may grow as data moves). */
  extents: boolean;
  /** Per group: the block past the last of its bitmaps and inode table, wherever they lie. */
  tablesEnd: ArrayLike<number>;
  /** The file system has a resize inode (its reserved GDT blocks grow back as descriptor blocks go). */
  resizeInode: boolean;
}

/** A shrink's geometry before and after. */
export interface ShrinkPlan {
  before: Geometry;
  after: Geometry;
  /** The smallest size the file system can have, in blocks. */
  minimum: number;
}

/** Blocks of group `g`'s own metadata: fixed (superblock, descriptors) plus bitmaps and inode table. */
export function groupOverhead(geo: Geometry, g: number, itb: number): number {
  return groupFixedMeta(geo, g).reduce((a, [, n]) => a + n, 0) + 2 + itb;
}

/**
 * The minimum a shrink goes to and `--print-min` prints: resize2fs -P's estimate, so the two agree, or
 * what holds the data where that is more; never more than the current size.
 */
export function minimumBlocks(s: ShrinkInput): number {
  return Math.min(s.geo.blocksCount, Math.max(estimateBlocks(s), holdsData(s)));
}

/**
 * The smallest size a shrink to a given size may go to: what holds the data, without resize2fs's
 * held-back metadata and without kept tables past the end (they move, move-tables.ts).
 */
export function floorBlocks(s: ShrinkInput): number {
  return Math.min(minimumBlocks(s), holdsData({ ...s, tablesEnd: [] }));
}

/** Blocks in use besides every group's own metadata. */
function dataBlocks(s: ShrinkInput): number {
  let allMeta = 0;
  for (let g = 0; g < s.geo.groupCount; g++) allMeta += groupOverhead(s.geo, g, s.inodeTableBlocks);
  return Math.max(0, s.geo.blocksCount - s.freeBlocks - allMeta);
}

/** What holds the data, with the room our shrink needs (the module comment's first formula). */
function holdsData(s: ShrinkInput): number {
  const { geo, inodeTableBlocks: itb } = s;
  const count = geo.groupCount;
  const over = (g: number) => groupOverhead(geo, g, itb);
  const data = dataBlocks(s);
  const flex = 2 ** s.logGroupsPerFlex;

  let groups = Math.max(1, Math.ceil(s.usedInodes / geo.inodesPerGroup));
  let meta = 0;
  for (let g = 0; g < groups; g++) meta += over(g);
  for (;;) {
    let slack = 0;
    if (s.logGroupsPerFlex) {
      const end = Math.min(count, Math.ceil(groups / flex) * flex);
      for (let g = groups; g < end; g++) slack += over(g);
    }
    // sparse_super2's second backup in the last group follows it there (a superblock and the
    // descriptor area, which keeps its size).
    const [b0, b1] = geo.backupGroups;
    const follows =
      geo.superPolicy === 'sparse2' && groups < count && b1 === count - 1 && groups - 1 > 1 && b0 !== groups - 1;
    const backup = follows ? 1 + Math.ceil(count / descsPerBlock(geo)) + geo.reservedGdtBlocks : 0;
    let need = geo.firstDataBlock + meta + data + slack + backup;
    // The last group: its own metadata and 50 blocks more.
    const lastStart = groupFirstBlock(geo, groups - 1);
    need = Math.max(need, lastStart + over(groups - 1) + backup + 50);
    for (let g = 0; g < groups; g++) need = Math.max(need, s.tablesEnd[g] ?? 0);
    need += extentMargin(s, data, need);
    if (need >= geo.blocksCount) return geo.blocksCount;
    if (need <= groupFirstBlock(geo, groups) || groups >= count) return need;
    meta += over(groups);
    groups++;
  }
}

/** resize2fs -P's estimate (the module comment's second formula), term by term. */
export function estimateBlocks(s: ShrinkInput): number {
  const { geo } = s;
  const bpg = geo.blocksPerGroup;
  const count = geo.groupCount;
  const over = (g: number) => groupOverhead(geo, g, s.inodeTableBlocks);
  const flex = s.logGroupsPerFlex ? 2 ** s.logGroupsPerFlex : 0;
  const data = dataBlocks(s);
  // The groups whose metadata is held back: with flex_bg up to the flex group boundary past the last
  // kept group (a whole flex group more when it ends on one), the room new tables may need.
  const heldTo = (groups: number) => (flex ? Math.min(count, groups + flex - (groups % flex)) : groups);
  let groups = Math.max(1, Math.ceil(s.usedInodes / geo.inodesPerGroup));
  let held = heldTo(groups);
  // `room`: data room in the kept groups; `before`: data room in the groups before the last one.
  let room = groups * bpg;
  let before = 0;
  for (let g = 0; g < held; g++) {
    if (g < groups - 1) before += bpg - over(g);
    room = Math.max(0, room - over(g));
  }
  while (data > room) {
    const extra = Math.ceil((data - room) / bpg);
    room += extra * bpg;
    // Only the old last group and the newly held groups count towards the room before the last one.
    before += bpg - over(groups - 1);
    groups += extra;
    if (groups > count) return geo.blocksCount;
    const from = held;
    if (!flex) held = groups;
    else if (groups > held) held = heldTo(groups);
    for (let g = from; g < held; g++) {
      if (g < groups - 1) before += bpg - over(g);
      room -= over(g);
    }
    // Held metadata beyond what the added groups bring: resize2fs's unsigned room wraps, ending the search.
    if (room < 0) break;
  }
  // The last group: its metadata (with flex_bg in the first flex group, that of the whole flex group,
  // whose tables lie at its start), then the data the groups before it cannot hold, at least 50 blocks.
  let last = 0;
  for (let g = flex && groups - 1 < flex ? 0 : groups - 1; g < held; g++) last += over(g);
  last += Math.max(data - before, 50);
  let need = (groups - 1) * bpg + geo.firstDataBlock + last;
  need = Math.max(need, s.tablesEnd[groups - 1] ?? 0);
  if (need >= geo.blocksCount) return geo.blocksCount;
  return need + extentMargin(s, data, need);
}

/**
 * Room for extent trees to grow as data moves (term E): a five-hundredth of what goes past `need`, at
 * most the worst case of one extent block per inode or per extent block's worth of data.
 */
function extentMargin(s: ShrinkInput, data: number, need: number): number {
  if (!s.extents) return 0;
  // An extent block holds (block size - 12-byte header) / 12 entries.
  const perBlock = Math.floor(s.geo.blockSize / 12) - 1;
  const worst = Math.max(Math.ceil(data / perBlock), s.usedInodes);
  return Math.min(Math.floor(Math.max(0, s.geo.blocksCount - need) / 500), worst);
}

/**
 * The geometry of the file system shrunk to `target` blocks: a last group too short for its metadata
 * and 50 blocks is left out (as mkfs and the grow do); with a resize inode the descriptor blocks that
 * go turn back into reserved GDT blocks (the area keeps its size, so no kept group's layout changes, as
 * resize2fs does it), up to what the resize inode's list can hold.
 */
export function planShrink(s: ShrinkInput, target: number): ShrinkPlan {
  const before = s.geo;
  const minimum = minimumBlocks(s);
  if (target >= before.blocksCount) throw new Error(`planShrink: ${target} is not below ${before.blocksCount}`);
  const bs = before.blockSize;
  const floor = floorBlocks(s);
  if (target < floor)
    throw new Ext4Error(
      'NO_SPACE',
      `what is in use does not fit in ${target * bs} bytes (${target} blocks); the smallest this file system can be is ${floor * bs} bytes (${floor} blocks); nothing was written`,
    );
  let blocks = target;
  let after = withBlocks(before, blocks);
  const rem = (blocks - before.firstDataBlock) % before.blocksPerGroup;
  if (lastGroupTooShort(rem, groupOverhead(after, after.groupCount - 1, s.inodeTableBlocks))) {
    blocks -= rem;
    after = withBlocks(before, blocks);
    if (blocks < floor)
      throw new Ext4Error(
        'NO_SPACE',
        `${target} blocks leaves a last group of ${rem} blocks, too short to keep, and without it what is in use does not fit; the smallest this file system can be is ${floor * bs} bytes (${floor} blocks); nothing was written`,
      );
  }
  if (s.resizeInode && !before.metaBg) {
    const dpb = descsPerBlock(before);
    const gone = Math.ceil(before.groupCount / dpb) - Math.ceil(after.groupCount / dpb);
    after.reservedGdtBlocks = Math.min(before.reservedGdtBlocks + gone, bs / 4);
  }
  return { before, after, minimum };
}

function withBlocks(geo: Geometry, blocks: number): Geometry {
  const groupCount = groupCountOf(blocks, geo.firstDataBlock, geo.blocksPerGroup);
  return { ...geo, blocksCount: blocks, groupCount, backupGroups: backupGroupsFor(geo, groupCount) };
}
