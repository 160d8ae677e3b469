/**
 * The htree index of a directory (e2fsck pass 2's checks of it): the root's info, every index block's
 * count and limit, hashes in order within a node, each leaf referenced once, and every name in a leaf
 * hashing into the range its index gives that leaf. Leaves the index does not reach are reported too.
 */
import { Ext4Error } from '../core/errors.js';
import { INCOMPAT } from '../ext4/features.js';
import type { Inode } from '../ext4/inode.js';
import type { BlockRun } from '../fs/blockmap.js';
import { dirHash } from '../ext4/dirhash.js';
import {
  DX_NODE_COUNT_OFFSET,
  decodeDxRootInfo,
  dxRootInfoValid,
  dxLimit,
  dxRootCountOffset,
  readDxEntries,
} from '../ext4/htree.js';
import type { CheckContext } from './context.js';

/** The collision bit: the next leaf goes on with the same hash as this one ends with. */
const CONTINUED = 1;
/** A hash without its collision bit, as an unsigned number. */
const H = (x: number) => (x & ~CONTINUED) >>> 0;

export function checkHtree(ctx: CheckContext, ino: number, i: Inode, runs: readonly BlockRun[]): void {
  const p = ctx.problems;
  const r = ctx.r;
  const bs = ctx.bs;
  const blocks = Math.ceil(i.size / bs);
  const bad = (text: string, block?: number) => p.add('DIR_HTREE', `directory ${ino}: ${text}`, { inode: ino, block });
  const rootP = r.physicalBlock(runs, 0);
  if (rootP === undefined) return bad('its htree root is a hole');
  let root: Uint8Array;
  try {
    root = r.dirBlock(ino, i, 0, rootP).buf;
  } catch {
    return; // reported with the directory's blocks
  }
  const info = decodeDxRootInfo(root);
  const levels = info.levels;
  if (!dxRootInfoValid(info, ctx.has(INCOMPAT.large_dir)))
    return bad('its htree root info is not valid (hash version, info length or depth)', rootP);
  const version = r.dirHashVersion(root);
  const seed = ctx.sb.s_hash_seed;
  const seen = new Set<number>([0]);
  /** Leaves and the hash range [lo, hi] their names must fall in. */
  const leaves: { lblk: number; lo: number; hi: number }[] = [];
  const walk = (buf: Uint8Array, countOffset: number, lblk: number, level: number, lo: number, hi: number) => {
    let entries;
    try {
      const d = readDxEntries(buf, countOffset);
      if (d.count === 0 || d.limit !== dxLimit(bs, countOffset, ctx.raw.csum))
        return bad(`htree block ${lblk} has count ${d.count}, limit ${d.limit}`);
      entries = d.entries;
    } catch (e) {
      return p.fromError('DIR_HTREE', e, { inode: ino });
    }
    for (let k = 0; k < entries.length; k++) {
      const from = k === 0 ? lo : H(entries[k]!.hash);
      if (k > 0 && from < (k === 1 ? lo : H(entries[k - 1]!.hash)))
        return bad(`htree block ${lblk}: hashes out of order`);
      if (k > 0 && from > hi) return bad(`htree block ${lblk}: hash 0x${from.toString(16)} past its range`);
      const next = entries[k + 1];
      // Up to the next entry's hash (inclusive of it when that leaf goes on with the same hash).
      const to = next ? (next.hash & CONTINUED ? H(next.hash) : H(next.hash) - 1) : hi;
      const child = entries[k]!.block;
      if (child === 0 || child >= blocks) return bad(`htree block ${lblk} points at block ${child} of ${blocks}`);
      if (seen.has(child)) return bad(`htree block ${child} is referenced twice`);
      seen.add(child);
      if (level === levels) {
        leaves.push({ lblk: child, lo: from, hi: to });
        continue;
      }
      const cp = r.physicalBlock(runs, child);
      if (cp === undefined) return bad(`htree node ${child} is a hole`);
      let node;
      try {
        node = r.dirBlock(ino, i, child, cp);
      } catch {
        continue; // reported with the directory's blocks
      }
      if (!node.dx) return bad(`htree node ${child} is not an index block`, cp);
      walk(node.buf, DX_NODE_COUNT_OFFSET, child, level + 1, from, to);
    }
  };
  walk(root, dxRootCountOffset(root), 0, 0, 0, 0xffffffff);
  for (const leaf of leaves) {
    const pblk = r.physicalBlock(runs, leaf.lblk);
    if (pblk === undefined) {
      bad(`htree leaf ${leaf.lblk} is a hole`);
      continue;
    }
    let entries;
    try {
      entries = r.dirBlock(ino, i, leaf.lblk, pblk, true).entries;
    } catch (e) {
      if (!(e instanceof Ext4Error) || e.code === 'IO_ERROR') throw e;
      continue; // reported with the directory's blocks
    }
    for (const e of entries) {
      if (!e.inode) continue;
      const h = H(dirHash(e.name, version, seed).hash);
      if (h < leaf.lo || h > leaf.hi) {
        bad(
          `the name ${JSON.stringify(Buffer.from(e.name).toString('latin1'))} in htree leaf ${leaf.lblk} hashes outside the leaf's range`,
          pblk,
        );
        break;
      }
    }
  }
  // Every block of the directory is the root, an index node or a leaf the index reaches.
  for (let b = 1; b < blocks; b++)
    if (!seen.has(b) && r.physicalBlock(runs, b) !== undefined) {
      bad(`block ${b} is not reached by the htree index`);
      break;
    }
}
