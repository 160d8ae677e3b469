/**
 * Moving the journal below a shrink's new end (mkfs.ext4 puts it mid-disk). The journal is empty
 * whenever the editor opens an image (it is recovered or refused otherwise), so only its superblock
 * carries anything: a copy of it is written as new data into blocks that were free; then one
 * transaction, logged in the old journal, points the journal inode and the superblock's backup of its
 * map (s_jnl_blocks) at the new blocks and frees the old ones. Replays find the journal through the
 * inode as it is on disk, so the inode's table block goes home last, once every other block of the
 * transaction is durable there (DeferDevice): until then a replay reads the old journal, which holds the
 * transaction; from then on the new one, empty, and nothing is left to replay. The edit runs on its own
 * volume over that device and is closed after this one commit.
 */
import { be32 } from '../core/bytes.js';
import { jnlBlocksOf } from '../ext4/superblock.js';
import { updateJournalSuperblock } from '../ext4/journal.js';
import { mapping, remapData } from '../fs/blockmap.js';
import type { Volume } from '../edit/volume.js';
import type { BlockDevice } from '../io/device.js';
import type { Ext4Reader } from '../fs/reader.js';
import { below, outside, type Hole } from './move-blocks.js';

/** Sequence numbers the new journal skips past the old one's (any later number will do). */
const SEQUENCE_GAP = 16;

/**
 * A device that holds back the writes to one block (the inode table block of the journal inode) until
 * the next fsync has made everything written before durable; then writes it, and fsyncs again.
 */
export class DeferDevice implements BlockDevice {
  /** The block whose writes wait (-1: none). */
  held = -1;
  private pending: Uint8Array | undefined;

  constructor(
    private readonly inner: BlockDevice,
    private readonly bs: number,
  ) {}

  get size(): number {
    return this.inner.size;
  }
  read(position: number, length: number): Uint8Array {
    const out = this.inner.read(position, length);
    // A read sees the held write (as it would once written).
    if (this.pending) {
      const at = this.held * this.bs;
      const from = Math.max(position, at);
      const upto = Math.min(position + length, at + this.bs);
      if (from < upto) out.set(this.pending.subarray(from - at, upto - at), from - position);
    }
    return out;
  }
  write(position: number, data: Uint8Array): void {
    const at = this.held * this.bs;
    if (this.held < 0 || position >= at + this.bs || position + data.length <= at) {
      this.inner.write(position, data);
      return;
    }
    if (position < at) this.inner.write(position, data.subarray(0, at - position));
    if (position + data.length > at + this.bs) this.inner.write(at + this.bs, data.subarray(at + this.bs - position));
    if (!this.pending) this.pending = this.inner.read(at, this.bs).slice();
    const from = Math.max(position, at);
    const upto = Math.min(position + data.length, at + this.bs);
    this.pending.set(data.subarray(from - position, upto - position), from - at);
  }
  truncate(size: number): void {
    this.inner.truncate(size);
  }
  sync(): void {
    this.inner.sync();
    if (!this.pending) return;
    this.inner.write(this.held * this.bs, this.pending);
    this.pending = undefined;
    this.inner.sync();
  }
  close(): void {
    // Without fsyncs (--no-sync) the held write goes out here, last.
    if (this.pending) this.inner.write(this.held * this.bs, this.pending);
    this.pending = undefined;
    this.inner.close();
  }
}

/** Whether the journal of `r` has any block at or past `end` (or in `hole`). */
export function journalPastEnd(r: Ext4Reader, end: number, hole?: Hole): boolean {
  const ino = r.sb.s_journal_inum;
  if (!ino) return false;
  const m = mapping(r, ino, r.inode(ino), true);
  return (
    m.runs.some((x) => outside(x.pblk, x.len, end, hole).length) ||
    m.metaBlocks.some((b) => outside(b, 1, end, hole).length)
  );
}

/**
 * Moves the journal below `end`, committed; `v` is a volume opened on `dev` (the caller closes it, and
 * opens the image again for what follows: this edit's log is the old journal).
 */
export function moveJournal(
  v: Volume,
  dev: DeferDevice,
  end: number,
  keptGroups: number,
  now: { sec: number; nsec: number },
  hole?: Hole,
): void {
  const ino = v.sb.s_journal_inum;
  const inode = v.readInode(ino);
  const m = mapping(v.r, ino, inode, true);
  const w = below(v, end, keptGroups, hole);
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
    dev.held = v.r.inodeLocation(ino).block;
  });
  v.commit(now);
}
