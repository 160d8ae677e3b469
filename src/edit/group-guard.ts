/**
 * What the editor checks of a group before it writes into it, so that a damaged image is refused
 * (NEEDS_CHECK) rather than made worse. Each group is checked once per volume, the first time the edit
 * allocates from it, frees into it or writes one of its inodes: the cost grows with the groups an edit
 * touches, never with the image.
 *
 * - Its descriptor, as the kernel checks every descriptor at mount (ext4_check_descriptors in
 *   fs/ext4/super.c): the block bitmap, the inode bitmap and the whole inode table lie inside the file
 *   system (inside the group itself without flex_bg) and not on the superblock or the descriptor blocks.
 *   Beyond the kernel: not on any superblock copy or descriptor block (reserved ones included), not on
 *   a block the bad blocks inode lists (e2fsprogs' f_badtable, whose new inode went into such a
 *   block), and not on each other, where writing one would overwrite the other (f_overfsblks).
 * - Its block bitmap, before the allocator trusts what it calls free: the metadata lying in the group
 *   (superblock and descriptor copies, the bitmaps and inode tables of its flex group's members) is
 *   marked in use, or a new file's data would land on it.
 * - What an edit is about to use: a block it frees (a file's old content, which the edit may then
 *   allocate again) is marked in use, and an inode it takes looks unused (no links, or a deletion time,
 *   or all zeros; records the group never initialized are not looked at).
 *
 * (A block a directory already holds is not handed to it again: fs/dir.ts, where it grows.) What no
 * per-group look can find, a block in use by another inode that the bitmap calls free (e2fsprogs'
 * f_ind_inode_collision), is what `--check` is for: the full check first.
 */
import { Ext4Error } from '../core/errors.js';
import { isZero } from '../core/bytes.js';
import { INCOMPAT } from '../ext4/features.js';
import { testBit } from '../ext4/bitmap.js';
import { decodeInode, BAD_BLOCKS_INO as BAD_INO } from '../ext4/inode.js';
import { groupFixedMeta, groupFirstBlock, groupBlocks, groupOfBlock, inodeTableBlocks } from '../ext4/geometry.js';
import { mapping } from '../fs/blockmap.js';
import type { Ext4Reader } from '../fs/reader.js';

/** A piece of a group's metadata: where it starts, how many blocks, what it is. */
interface Piece {
  start: number;
  len: number;
  what: string;
}

const ADVICE = 'check the file system first (ext4-workdisk check, e2fsck)';

export class GroupGuard {
  /** Groups whose descriptor passed. */
  private readonly descOk = new Set<number>();
  /** Groups whose block bitmap was found to mark their metadata in use. */
  private readonly bitmapOk = new Set<number>();
  private readonly tableBlocks: number;
  /** Groups per flex group (1 without flex_bg). */
  private readonly flex: number;
  /** The blocks the bad blocks inode lists, read at the first group checked. */
  private bad: { start: number; len: number }[] | undefined;

  constructor(
    private readonly r: Ext4Reader,
    private readonly name: string,
  ) {
    this.tableBlocks = inodeTableBlocks(r.geo);
    const sb = r.sb;
    this.flex =
      sb.s_feature_incompat & INCOMPAT.flex_bg && sb.s_log_groups_per_flex < 31 ? 2 ** sb.s_log_groups_per_flex : 1;
  }

  private refuse(text: string, context: { group?: number; block?: number; inode?: number }): never {
    throw new Ext4Error('NEEDS_CHECK', `${this.name}: ${text}; ${ADVICE}`, context);
  }

  /** Group `g`'s bitmaps and inode table as its descriptor places them. */
  private pieces(g: number): Piece[] {
    const d = this.r.groupDesc(g);
    return [
      { start: d.blockBitmap, len: 1, what: 'block bitmap' },
      { start: d.inodeBitmap, len: 1, what: 'inode bitmap' },
      { start: d.inodeTable, len: this.tableBlocks, what: 'inode table' },
    ];
  }

  /** Refuses group `g` when its descriptor places its bitmaps or inode table where they cannot be. */
  group(g: number): void {
    if (this.descOk.has(g)) return;
    const r = this.r;
    const geo = r.geo;
    const flexBg = (r.sb.s_feature_incompat & INCOMPAT.flex_bg) !== 0;
    // Without flex_bg a group's metadata lies inside it; with flex_bg anywhere in the file system.
    const low = flexBg ? r.sb.s_first_data_block : groupFirstBlock(geo, g);
    const high = flexBg ? r.blocksCount : groupFirstBlock(geo, g) + groupBlocks(geo, g);
    const ps = this.pieces(g);
    for (const p of ps) {
      const where = `group ${g}'s ${p.what} (block ${p.start}${p.len > 1 ? `-${p.start + p.len - 1}` : ''})`;
      if (!(p.start >= low && p.start + p.len <= high))
        this.refuse(`${where} lies outside ${flexBg ? 'the file system' : 'the group'}`, { group: g, block: p.start });
      const bad = this.badOverlap(p.start, p.len);
      if (bad !== undefined)
        this.refuse(`${where} lies on a block the bad blocks inode lists (${bad})`, { group: g, block: bad });
      const fixed = this.fixedOverlap(p.start, p.len);
      if (fixed !== undefined)
        this.refuse(`${where} overlaps a superblock or descriptor block (${fixed})`, {
          group: g,
          block: fixed,
        });
    }
    for (let i = 0; i < ps.length; i++)
      for (let j = i + 1; j < ps.length; j++) {
        const a = ps[i]!;
        const b = ps[j]!;
        if (a.start < b.start + b.len && b.start < a.start + a.len)
          this.refuse(`group ${g}'s ${a.what} (block ${a.start}) overlaps its ${b.what} (block ${b.start})`, {
            group: g,
            block: Math.max(a.start, b.start),
          });
      }
    this.descOk.add(g);
  }

  /** The first block of [start, start+len) the bad blocks inode lists, if any. */
  private badOverlap(start: number, len: number): number | undefined {
    for (const b of this.badBlocks())
      if (start < b.start + b.len && b.start < start + len) return Math.max(b.start, start);
    return undefined;
  }

  /**
   * The runs of the bad blocks inode (inode 1): empty on nearly every image. Its record is read without
   * its checksum (e2fsck looks at the list, not at that), its whole map whatever its size says; a map it cannot read refuses the edit.
   */
  private badBlocks(): { start: number; len: number }[] {
    if (this.bad) return this.bad;
    const r = this.r;
    const { block, offset } = r.inodeLocation(BAD_INO);
    const i = decodeInode(r.readBlocks(block), offset, r.inodeSize);
    this.bad = [];
    if (i.blocks || i.size)
      try {
        this.bad = mapping(r, BAD_INO, i, true).runs.map((x) => ({ start: x.pblk, len: x.len }));
      } catch (e) {
        if (!(e instanceof Ext4Error)) throw e;
        this.refuse(`the bad blocks inode's block list cannot be read (${e.message})`, { inode: BAD_INO });
      }
    return this.bad;
  }

  /** The first block of [start, start+len) that is a superblock copy or descriptor block, if any. */
  private fixedOverlap(start: number, len: number): number | undefined {
    const geo = this.r.geo;
    const last = groupOfBlock(geo, start + len - 1);
    for (let g = groupOfBlock(geo, start); g <= last; g++)
      for (const [s, n] of groupFixedMeta(geo, g)) if (start < s + n && s < start + len) return Math.max(s, start);
    return undefined;
  }

  /**
   * Refuses group `g` when its block bitmap `bitmap()` (read only when the group was not checked yet) calls free a block of the metadata lying in the group: what the allocator would hand out next.
   */
  blockBitmap(g: number, bitmap: () => Uint8Array): void {
    if (this.bitmapOk.has(g)) return;
    this.group(g);
    const bm = bitmap();
    const geo = this.r.geo;
    const first = groupFirstBlock(geo, g);
    const end = first + groupBlocks(geo, g);
    const check = (start: number, len: number, what: string) => {
      const s = Math.max(start, first);
      const e = Math.min(start + len, end);
      for (let b = s; b < e; b++)
        if (!testBit(bm, b - first))
          this.refuse(`group ${g}'s block bitmap marks block ${b} (${what}) free`, { group: g, block: b });
    };
    for (const [s, n] of groupFixedMeta(geo, g)) check(s, n, 'a superblock or descriptor block');
    for (const b of this.badBlocks()) check(b.start, b.len, 'listed in the bad blocks inode');
    const f0 = g - (g % this.flex);
    for (let h = f0; h < Math.min(f0 + this.flex, this.r.groupCount); h++)
      for (const p of this.pieces(h))
        if (p.start < end && p.start + p.len > first) check(p.start, p.len, `group ${h}'s ${p.what}`);
    this.bitmapOk.add(g);
  }

  /** Refuses freeing blocks [start, start+n) of group `g` when its bitmap `bm` calls one of them free. */
  inUse(g: number, bm: Uint8Array, start: number, n: number): void {
    const first = groupFirstBlock(this.r.geo, g);
    let i = start - first;
    const end = i + n;
    while (i < end) {
      // Whole bytes in use first: a large file's old content is freed a run at a time.
      if ((i & 7) === 0 && i + 8 <= end && bm[i >>> 3] === 0xff) {
        i += 8;
        continue;
      }
      if (!testBit(bm, i))
        this.refuse(`block ${first + i} is in use but group ${g}'s block bitmap marks it free`, {
          group: g,
          block: first + i,
        });
      i++;
    }
  }

  /** Refuses taking inode `ino` (free in its bitmap) when its record looks in use. */
  unusedInode(ino: number): void {
    const r = this.r;
    const { block, offset } = r.inodeLocation(ino);
    const b = r.readBlocks(block);
    if (isZero(b, offset, r.inodeSize)) return;
    const i = decodeInode(b, offset, r.inodeSize);
    if (i.linksCount === 0 || i.dtime !== 0) return;
    this.refuse(
      `inode ${ino} is free in its group's bitmap but its record is in use (${i.linksCount} link(s), no deletion time)`,
      { group: Math.floor((ino - 1) / r.sb.s_inodes_per_group), inode: ino },
    );
  }
}
