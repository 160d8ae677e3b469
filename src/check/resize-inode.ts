/**
 * The resize inode (inode 7) as e2fsck judges it, against the one layout (ext4/resize-inode.ts).
 *
 * e2fsck looks at it twice. Its superblock checks (pass 0) want, with resize_inode: a regular file in
 * use whose only block pointer is a double-indirect block inside the file system, naming the reserved
 * GDT blocks at their slots, each listing its copies in the backup groups (e2fsck reads the first
 * quarter of the lists only); and without resize_inode: no reserved GDT blocks and no block pointer;
 * and never resize_inode with meta_bg. What fails there e2fsck -n prints but does not count (exit 0;
 * "Resize inode not valid. Recreate?") and e2fsck -p stops on: here they are warnings. Its pass 1 then
 * walks the inode's map like any file's, feature or not: a block outside the file system, i_blocks
 * other than the blocks walked, i_size short of the last one, a mode other than a regular file's are
 * problems; of those e2fsck -p fixes i_blocks, i_size and the mode (clearing it). Only the DIND block
 * is claimed: the reserved blocks and their copies are fixed metadata.
 *
 * With `keepFixes`, what a rewrite from the layout would repair is kept (ResizeInodeFix): `preen` when
 * everything found is what e2fsck -p fixes too (or what it does not look at: a list past the first
 * quarter, a stray DIND entry), so `check --repair` rewrites it; otherwise only a repair that recreates
 * it as e2fsck -y does may.
 */
import { u32 } from '../core/bytes.js';
import { COMPAT, INCOMPAT, RO_COMPAT } from '../ext4/features.js';
import {
  FL_EXTENTS,
  FL_HUGE_FILE,
  FL_INLINE_DATA,
  RESIZE_INO,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  type Inode,
} from '../ext4/inode.js';
import {
  RESIZE_DIND_SLOT,
  dindLogicalBlock,
  indirectMaxSize,
  reservedGdtBlock,
  resizeDindSlot,
  resizeGeometry,
  resizeListEntries,
  type ResizeGeometry,
} from '../ext4/resize-inode.js';
import type { CheckContext } from './context.js';
import { InodeInfo } from './inode-table.js';

/** Indirect blocks read at most while walking a damaged map (a sane one has 1 + 1,024). */
const MAX_MAP_READS = 4096;

export function checkResizeInode(ctx: CheckContext, i: Inode): void {
  const sb = ctx.sb;
  const feature = (sb.s_feature_compat & COMPAT.resize_inode) !== 0;
  const warn = (text: string) => ctx.problems.warn('RESIZE_INODE', text, { inode: RESIZE_INO });
  const problem = (text: string) => ctx.problems.add('RESIZE_INODE', text, { inode: RESIZE_INO });
  /** Something found that a preen does not fix; something found at all. */
  let stop = false;
  let found = false;
  const dind = u32(i.block, RESIZE_DIND_SLOT * 4);
  const inRange = (b: number) => b !== 0 && b >= ctx.firstData && b < ctx.blocksCount;

  // Pass 0.
  if (feature && ctx.has(INCOMPAT.meta_bg)) {
    warn('resize_inode and meta_bg are both set: they do not go together (resize_inode should be turned off)');
    stop = true;
  }
  if (!feature && sb.s_reserved_gdt_blocks) {
    warn(`there are ${sb.s_reserved_gdt_blocks} reserved GDT blocks without resize_inode; there should be none`);
    stop = true;
  }
  if (!feature && pointers(i).some((b) => b !== 0)) {
    warn('resize_inode is off but the resize inode maps blocks (it should be cleared)');
    stop = true;
  }
  const rg = resizeGeometry(ctx.raw.geo);
  if (feature) {
    const invalid = pass0Invalid(ctx, i, rg);
    if (invalid) {
      warn(`the resize inode is not valid: ${invalid} (e2fsck -y recreates it)`);
      stop = true;
    }
    // What e2fsck does not look at: a grow (ours, or the kernel's online one) relies on it all the same.
    if (!invalid && inRange(dind)) {
      const unchecked = laterListsWrong(ctx, dind, rg);
      if (unchecked) {
        warn(`the resize inode's lists are not what the layout says: ${unchecked}`);
        found = true;
      }
    }
  }

  // Pass 1: the inode as a file.
  if (i.mode && (i.mode & S_IFMT) !== S_IFREG) {
    problem(`the resize inode's mode 0o${i.mode.toString(8)} is not a regular file's`);
    found = true;
  }
  if (i.flags & (FL_EXTENTS | FL_INLINE_DATA)) {
    problem(
      `the resize inode has the ${i.flags & FL_EXTENTS ? 'extents' : 'inline data'} flag: its map is a classic one`,
    );
    stop = true;
  } else {
    const walk = mapped(i) ? walkMap(ctx, i) : { count: 0, last: -1, illegal: [], truncated: false };
    if (walk.illegal.length) {
      const shown = walk.illegal.slice(0, 3).join(', ');
      problem(
        `the resize inode names ${walk.illegal.length} block(s) outside the file system (${shown}${walk.illegal.length > 3 ? ', ...' : ''})`,
      );
      stop = true;
    }
    if (walk.truncated) {
      problem(`the resize inode maps more than ${MAX_MAP_READS} indirect blocks`);
      stop = true;
    }
    // Each block walked counts a cluster's worth under bigalloc (as e2fsck counts this inode's).
    const unit = (i.flags & FL_HUGE_FILE && ctx.hasRo(RO_COMPAT.huge_file) ? 1 : ctx.bs / 512) * ctx.ratio;
    if (!walk.truncated && i.blocks !== walk.count * unit) {
      problem(`the resize inode's i_blocks is ${i.blocks}; the blocks it maps make ${walk.count * unit}`);
      found = true;
    }
    if (walk.last >= 0 && i.size < walk.last * ctx.bs) {
      problem(`the resize inode's size ${i.size} ends before its last block (${walk.last})`);
      found = true;
    } else if (i.size > indirectMaxSize(ctx.bs)) {
      problem(`the resize inode's size ${i.size} is more than a block-mapped file can have`);
      found = true;
    }
    if (mapped(i) && inRange(dind)) ctx.claim(dind, 1, RESIZE_INO, 'double-indirect block');
  }
  if (i.mode) ctx.inodes.set(RESIZE_INO, new InodeInfo(i.mode, i.flags, i.linksCount));
  if (ctx.fixes && feature && !ctx.has(INCOMPAT.meta_bg) && (found || stop))
    ctx.resizeInodeFix = { preen: !stop, keepDind: inRange(dind) && !ctx.metaAt(dind) };
}

/**
 * Whether e2fsck reads i_block as a block map (what it walks and counts): for a regular file or a
 * directory; for a symlink only where it is no fast one; for no other mode (a cleared mode included:
 * then nothing is counted and the DIND block is not in use).
 */
function mapped(i: Inode): boolean {
  const type = i.mode & S_IFMT;
  if (type === S_IFREG || type === S_IFDIR) return true;
  if (type !== S_IFLNK) return false;
  if (!i.fileAcl) return i.blocks !== 0;
  return i.size >= 60 || (i.size > 4 && u32(i.block, 4) === 0);
}

/** i_block as its 15 block pointers. */
function pointers(i: Inode): number[] {
  return Array.from({ length: 15 }, (_, k) => u32(i.block, k * 4));
}

/** Why e2fsck's superblock checks find the resize inode not valid, or undefined. */
function pass0Invalid(ctx: CheckContext, i: Inode, rg: ResizeGeometry): string | undefined {
  const p = pointers(i);
  const other = p.findIndex((b, k) => k !== RESIZE_DIND_SLOT && b !== 0);
  if (other >= 0) return `block pointer ${other} is set (only the double-indirect one may be)`;
  const dind = p[RESIZE_DIND_SLOT]!;
  if (!dind) return 'it has no double-indirect block';
  if (!i.linksCount) return 'its link count is 0';
  // e2fsck tests the regular-file bit alone here (pass 1 looks at the whole mode).
  if (!(i.mode & S_IFREG)) return `its mode 0o${i.mode.toString(8)} is not a regular file's`;
  if (dind < ctx.firstData || dind >= ctx.blocksCount)
    return `its double-indirect block ${dind} is outside the file system`;
  return listsWrong(ctx, dind, rg, 0, Math.floor(rg.reservedGdtBlocks / 4));
}

/** The lists e2fsck does not read (past the first quarter): what is wrong in them, or undefined. */
function laterListsWrong(ctx: CheckContext, dind: number, rg: ResizeGeometry): string | undefined {
  const wrong = listsWrong(ctx, dind, rg, Math.floor(rg.reservedGdtBlocks / 4), rg.reservedGdtBlocks);
  if (wrong) return wrong;
  // Entries of the DIND block naming no reserved block (e2fsck counts them in i_blocks, nothing more).
  let table: Uint8Array;
  try {
    table = ctx.raw.readBlocks(dind);
  } catch {
    return 'its double-indirect block cannot be read';
  }
  const slots = new Set(Array.from({ length: rg.reservedGdtBlocks }, (_, k) => resizeDindSlot(rg, k)));
  for (let s = 0; s < ctx.bs / 4; s++)
    if (!slots.has(s) && u32(table, s * 4)) return `its double-indirect entry ${s} names block ${u32(table, s * 4)}`;
  return undefined;
}

/** Reserved blocks `from..to-1`: each at its DIND slot, each listing its copies (entries past them not read). */
function listsWrong(ctx: CheckContext, dind: number, rg: ResizeGeometry, from: number, to: number): string | undefined {
  if (from >= to) return undefined;
  try {
    return listsWrongIn(ctx, ctx.raw.readBlocks(dind), rg, from, to);
  } catch {
    return 'its blocks cannot be read';
  }
}

function listsWrongIn(
  ctx: CheckContext,
  table: Uint8Array,
  rg: ResizeGeometry,
  from: number,
  to: number,
): string | undefined {
  for (let k = from; k < to; k++) {
    const want = reservedGdtBlock(rg, k);
    const slot = resizeDindSlot(rg, k);
    if (u32(table, slot * 4) !== want)
      return `double-indirect entry ${slot} is ${u32(table, slot * 4)}, not reserved GDT block ${want}`;
    if (want >= ctx.blocksCount) return `reserved GDT block ${want} is outside the file system`;
    const list = ctx.raw.readBlocks(want);
    const entries = resizeListEntries(rg, k);
    const j = entries.findIndex((e, n) => u32(list, n * 4) !== e);
    if (j >= 0)
      return `reserved GDT block ${want} lists ${u32(list, j * 4)} where its copy ${entries[j]} belongs (entry ${j})`;
  }
  return undefined;
}

/**
 * The inode's classic map walked as e2fsck walks it: blocks inside the file system counted (the map
 * blocks too) and their last logical block; blocks outside it listed and not followed.
 */
function walkMap(ctx: CheckContext, i: Inode): { count: number; last: number; illegal: number[]; truncated: boolean } {
  const apb = ctx.bs / 4;
  const out = { count: 0, last: -1, illegal: [] as number[], truncated: false };
  let reads = 0;
  const visit = (b: number, depth: number, lblk: number): void => {
    if (b < ctx.firstData || b >= ctx.blocksCount) {
      out.illegal.push(b);
      return;
    }
    out.count++;
    if (!depth) {
      out.last = Math.max(out.last, lblk);
      return;
    }
    if (++reads > MAX_MAP_READS) {
      out.truncated = true;
      return;
    }
    let blk: Uint8Array;
    try {
      blk = ctx.raw.readBlocks(b);
    } catch {
      out.illegal.push(b);
      return;
    }
    const span = apb ** (depth - 1);
    for (let s = 0; s < apb && !out.truncated; s++) {
      const e = u32(blk, s * 4);
      if (e) visit(e, depth - 1, lblk + s * span);
    }
  };
  const p = pointers(i);
  for (let k = 0; k < 12; k++) if (p[k]) visit(p[k]!, 0, k);
  if (p[12]) visit(p[12], 1, 12);
  if (p[13]) visit(p[13], 2, dindLogicalBlock(ctx.bs, 0, 0));
  if (p[14]) visit(p[14], 3, 12 + apb + apb * apb);
  return out;
}
