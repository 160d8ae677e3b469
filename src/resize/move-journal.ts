/**
 * Moving the journal below a shrink's new end (mkfs.ext4 puts it mid-disk). The journal is empty
 * whenever the editor opens an image (it is recovered or refused otherwise), so only its superblock
 * carries anything: a copy of it, marked empty (s_start 0) with a later sequence, is written as new
 * data into blocks that were free; then one transaction, logged in the old journal, points the journal
 * inode and the superblock's backup of its map (s_jnl_blocks) at the new blocks and frees the old ones.
 * A crash before that commit leaves the old journal in use; after it, a replay (which finds the journal
 * through the inode as it still is on disk: the old one) finishes the switch, and the new journal is
 * empty and valid. The caller reopens the image afterwards: the open edit's log is the old one.
 */
import { be32 } from '../core/bytes.js';
import { jnlBlocksOf } from '../ext4/superblock.js';
import { updateJournalSuperblock } from '../ext4/journal.js';
import { mapping, remapData } from '../fs/blockmap.js';
import type { Volume } from '../edit/volume.js';
import { below } from './move-blocks.js';

/** Sequence numbers the new journal skips past the old one's (any later number will do). */
const SEQUENCE_GAP = 16;

/** Moves the journal below `end` when any of it lies at or past it; true when it moved (committed). */
export function moveJournal(v: Volume, end: number, keptGroups: number, now: { sec: number; nsec: number }): boolean {
  const ino = v.sb.s_journal_inum;
  if (!ino) return false;
  const inode = v.readInode(ino);
  const m = mapping(v.r, ino, inode, true);
  if (!m.runs.some((r) => r.pblk + r.len > end) && !m.metaBlocks.some((b) => b >= end)) return false;
  const w = below(v, end, keptGroups);
  v.runOp(() => {
    const n = m.runs.reduce((a, r) => a + r.len, 0);
    // In the middle of what stays, as mkfs places it.
    const goal = v.groupFirstBlock(Math.floor((keptGroups - 1) / 2));
    const to = new Map<number, number>();
    const fresh = w.allocBlocks(goal, n);
    let k = 0;
    let at = 0;
    for (const r of m.runs)
      for (let i = 0; i < r.len; i++) {
        const t = fresh[k]!;
        to.set(r.pblk + i, t.start + at);
        if (++at === t.len) {
          k++;
          at = 0;
        }
      }
    const first = m.runs.find((r) => r.lblk === 0)!;
    const jsb = v.tx.readData(first.pblk, 1).slice();
    updateJournalSuperblock(jsb, { s_start: 0, s_sequence: (be32(jsb, 0x18) + SEQUENCE_GAP) >>> 0 });
    v.tx.addData(to.get(first.pblk)!, v.tx.keepData(jsb));
    remapData(w, ino, inode, (b) => to.get(b) ?? b);
    v.writeInode(ino, inode);
    v.sb.s_jnl_blocks = jnlBlocksOf(inode.block, inode.size);
    v.sbChanged = true;
  });
  v.commit(now);
  return true;
}
