/**
 * The kernel's clean-up at mount of orphan inodes (files unlinked or being truncated while open when
 * the system stopped), as `recover` and `--recover` do it after a journal replay: the classic list
 * (s_last_orphan, linked through i_dtime) and the orphan file. An orphan with no links left is deleted,
 * one still linked is cut back to its size (an interrupted truncation). needs_recovery is cleared.
 */
import { Ext4Error } from '../core/errors.js';
import { put32, u32 } from '../core/bytes.js';
import { INCOMPAT, RO_COMPAT } from '../ext4/features.js';
import { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, type Timestamp } from '../ext4/inode.js';
import { ORPHAN_BLOCK_MAGIC, orphanBlockChecksum, orphanEntries } from '../ext4/orphan.js';
import { FL_ENCRYPT } from '../ext4/inode.js';
import type { Volume } from './volume.js';
import { truncateFile } from '../fs/content.js';
import { deleteInode } from './inodes.js';

/** What was done to one orphan: deleted, or cut back to `size` (its size: an interrupted truncation). */
export type OrphanReport = (ino: number, deleted: boolean, size: number) => void;

/** Cleans up every orphan of the open volume (inside an operation); returns how many there were. */
export function cleanOrphans(v: Volume, now: Timestamp, report?: OrphanReport): number {
  const sb = v.sb;
  let count = 0;
  const seen = new Set<number>();
  const clean = (ino: number) => {
    if (seen.has(ino) || ino < 1 || ino > sb.s_inodes_count)
      throw new Ext4Error('CORRUPT', `orphan inode ${ino} is listed twice or lies outside the inode table`, {
        inode: ino,
      });
    seen.add(ino);
    const i = v.readInode(ino);
    const next = i.dtime;
    if (i.linksCount === 0) deleteInode(v, ino, i, now);
    else {
      const t = i.mode & S_IFMT;
      // Encrypted contents are not cut back in place: their tail is ciphertext.
      if ((t === S_IFREG || t === S_IFDIR || t === S_IFLNK) && !(i.flags & FL_ENCRYPT))
        truncateFile(v, ino, i, i.size, true);
      i.dtime = 0;
      v.writeInode(ino, i);
    }
    report?.(ino, i.linksCount === 0, i.size);
    count++;
    return next;
  };
  // The classic list, linked through i_dtime.
  for (let ino = sb.s_last_orphan; ino;) ino = clean(ino);
  // The orphan file: blocks of inode numbers, each block with a tail (magic, checksum).
  if (sb.s_feature_ro_compat & RO_COMPAT.orphan_present && sb.s_orphan_file_inum) {
    const oino = sb.s_orphan_file_inum;
    const oi = v.readInode(oino);
    const bs = v.bs;
    const seed = v.csum ? v.r.inodeSeed(oino, oi.generation) : undefined;
    for (const run of v.r.blockRuns(oino, oi))
      for (let k = 0; k < run.len; k++) {
        const pblk = run.pblk + k;
        const b = v.r.readBlocks(pblk);
        if (u32(b, bs - 8) !== ORPHAN_BLOCK_MAGIC)
          throw new Ext4Error('CORRUPT', `orphan file block ${pblk} has a bad magic number`, { block: pblk });
        const listed = orphanEntries(b);
        if (!listed.length) continue;
        for (const o of listed) clean(u32(b, o));
        const w = v.tx.modify(pblk);
        for (const o of listed) put32(w, o, 0);
        if (seed !== undefined) put32(w, bs - 4, orphanBlockChecksum(seed, pblk, w));
      }
    sb.s_feature_ro_compat &= ~RO_COMPAT.orphan_present;
  }
  sb.s_last_orphan = 0;
  sb.s_feature_incompat &= ~INCOMPAT.needs_recovery;
  // The kernel counts free blocks and inodes from the descriptors at mount: the superblock's were
  // left behind by the journal (it never keeps them current).
  v.recountFree();
  v.sbChanged = true;
  return count;
}
