/**
 * Moving the journal below a shrink's new end (mkfs.ext4 puts it mid-disk). The journal is empty
 * whenever the editor opens an image (it is recovered or refused otherwise), so only its superblock
 * carries anything: a copy of it is written as new data into blocks that were free; then one
 * transaction, logged in the old journal, points the journal inode and the superblock's backup of its
 * map (s_jnl_blocks) at the new blocks and frees the old ones. While that transaction is written and
 * checkpointed, every write to the old journal is mirrored to the same place in the new one
 * (MirrorDevice): a crash at any point finds the same log whichever inode a replay reads (the old one,
 * or the new one if its table block reached home before the crash), so recovery finishes the switch.
 * The edit runs on its own volume over the mirroring device and is closed after this one commit.
 */
import { be32 } from '../core/bytes.js';
import { jnlBlocksOf } from '../ext4/superblock.js';
import { updateJournalSuperblock } from '../ext4/journal.js';
import { mapping, remapData } from '../fs/blockmap.js';
import type { Volume } from '../edit/volume.js';
import type { BlockDevice } from '../io/device.js';
import type { Ext4Reader } from '../fs/reader.js';
import { below } from './move-blocks.js';

/** Sequence numbers the new journal skips past the old one's (any later number will do). */
const SEQUENCE_GAP = 16;

/** A device whose writes to the old journal's blocks also go to the new journal's (block for block). */
export class MirrorDevice implements BlockDevice {
  /** Old journal block to new; set once the new blocks are chosen. */
  mirror = new Map<number, number>();

  constructor(
    private readonly inner: BlockDevice,
    private readonly bs: number,
  ) {}

  get size(): number {
    return this.inner.size;
  }
  read(position: number, length: number): Uint8Array {
    return this.inner.read(position, length);
  }
  write(position: number, data: Uint8Array): void {
    this.inner.write(position, data);
    const first = Math.floor(position / this.bs);
    const last = Math.ceil((position + data.length) / this.bs);
    for (let b = first; b < last; b++) {
      const to = this.mirror.get(b);
      if (to === undefined) continue;
      const from = Math.max(position, b * this.bs);
      const upto = Math.min(position + data.length, (b + 1) * this.bs);
      this.inner.write(to * this.bs + (from - b * this.bs), data.subarray(from - position, upto - position));
    }
  }
  truncate(size: number): void {
    this.inner.truncate(size);
  }
  sync(): void {
    this.inner.sync();
  }
  close(): void {
    this.inner.close();
  }
}

/** Whether the journal of `r` has any block at or past `end`. */
export function journalPastEnd(r: Ext4Reader, end: number): boolean {
  const ino = r.sb.s_journal_inum;
  if (!ino) return false;
  const m = mapping(r, ino, r.inode(ino), true);
  return m.runs.some((x) => x.pblk + x.len > end) || m.metaBlocks.some((b) => b >= end);
}

/**
 * Moves the journal below `end`, committed; `v` is a volume opened on `dev` (the caller closes it, and
 * opens the image again for what follows: this edit's log is the old journal).
 */
export function moveJournal(
  v: Volume,
  dev: MirrorDevice,
  end: number,
  keptGroups: number,
  now: { sec: number; nsec: number },
): void {
  const ino = v.sb.s_journal_inum;
  const inode = v.readInode(ino);
  const m = mapping(v.r, ino, inode, true);
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
    dev.mirror = to;
  });
  v.commit(now);
}
