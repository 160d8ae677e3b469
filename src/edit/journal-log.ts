/**
 * Commits through the jbd2 journal (kernel doc: journal.rst): each commit of the editor is one
 * transaction, written so that a crash at any instant leaves the old or the new file system:
 *
 *   1. new file data (into blocks free before the transaction; a grow's blocks past the old end),
 *      the transaction's descriptor blocks and metadata copies, the journal superblock pointing at
 *      it, needs_recovery set: made durable (one fsync);
 *   2. the commit block, made durable: the commit point (recovery replays from here on);
 *   3. the metadata written home (checkpoint), made durable;
 *   4. the journal superblock emptied (s_start 0, the next sequence number) and needs_recovery
 *      cleared, made durable together. Either may land without the other: an empty journal with
 *      needs_recovery set is recovered by clearing the flag; a journal still holding the transaction
 *      without the flag is wiped by the kernel at mount, replayed again by e2fsck and `recover` (the
 *      same blocks, already home). Both give the new file system.
 *
 * The journal is always empty between commits, so a transaction starts at the log's first block and
 * never needs revoke records. A journal mkfs.ext4 made without features is upgraded as the kernel
 * does at its first mount: 64-bit tags on a 64bit file system, checksums v3 (crc32c) with metadata_csum.
 */
import { Ext4Error } from '../core/errors.js';
import { blockBytes, pushBlockParts, type BlockData } from '../core/zero-tail.js';
import { INCOMPAT, RO_COMPAT } from '../ext4/features.js';
import { patchIncompat, SUPERBLOCK_OFFSET } from '../ext4/superblock.js';
import {
  decodeJournalSuperblock,
  journalFormat,
  buildTransaction,
  transactionBlocks,
  updateJournalSuperblock,
  JBD2_SUPERBLOCK_V1,
  JBD2_SUPERBLOCK_V2,
  JBD2_INCOMPAT,
  JBD2_COMPAT_CHECKSUM,
  JBD2_CRC32C,
  type JournalFormat,
} from '../ext4/journal.js';
import type { BlockRun } from '../fs/blockmap.js';
import type { Ext4Reader } from '../fs/reader.js';
import type { BlockDevice } from '../io/device.js';

/** What a journal may have for this writer to use it. */
const KNOWN_INCOMPAT =
  JBD2_INCOMPAT.revoke |
  JBD2_INCOMPAT['64bit'] |
  JBD2_INCOMPAT.async_commit |
  JBD2_INCOMPAT.csum_v2 |
  JBD2_INCOMPAT.csum_v3;
const NEEDS_RECOVERY = INCOMPAT.needs_recovery;

export class JournalLog {
  private readonly jsb: Uint8Array;
  private readonly format: JournalFormat;
  private readonly incompat: number;
  private readonly upgraded: boolean;
  private sequence: number;
  private readonly first: number;
  private readonly last: number;

  private constructor(
    private readonly r: Ext4Reader,
    /** The image's name, for messages. */
    private readonly name: string,
    private readonly runs: BlockRun[],
  ) {
    const bs = r.blockSize;
    const jsb = r.readBlocks(this.map(0)).slice();
    const sb = decodeJournalSuperblock(jsb);
    const where = `${name}: journal`;
    if (sb.h_blocktype !== JBD2_SUPERBLOCK_V1 && sb.h_blocktype !== JBD2_SUPERBLOCK_V2)
      throw new Ext4Error('CORRUPT', `${where} superblock type ${sb.h_blocktype}`);
    if (sb.s_blocksize !== bs)
      throw new Ext4Error('CORRUPT', `${where} block size ${sb.s_blocksize} is not the file system's`);
    const mapped = runs.reduce((a, r) => a + r.len, 0);
    if (sb.s_maxlen > mapped || sb.s_first < 1 || sb.s_first >= sb.s_maxlen)
      throw new Ext4Error(
        'CORRUPT',
        `${where} bounds (first ${sb.s_first}, length ${sb.s_maxlen}) do not fit its ${mapped} blocks`,
      );
    if (sb.s_start !== 0)
      throw new Ext4Error(
        'NEEDS_RECOVERY',
        `${name}: the journal holds transactions not yet applied; recover it first`,
      );
    const v2 = sb.h_blocktype === JBD2_SUPERBLOCK_V2;
    const inc = v2 ? sb.s_feature_incompat : 0;
    if (inc & ~KNOWN_INCOMPAT)
      throw new Ext4Error(
        'UNSUPPORTED_FEATURE',
        `${where} has features 0x${(inc & ~KNOWN_INCOMPAT).toString(16)} (fast commits?), which the editor cannot write`,
      );
    if (v2 && sb.s_feature_compat & JBD2_COMPAT_CHECKSUM && !(inc & (JBD2_INCOMPAT.csum_v2 | JBD2_INCOMPAT.csum_v3)))
      throw new Ext4Error('UNSUPPORTED_FEATURE', `${where} uses version 1 checksums, which the editor cannot write`);
    // The kernel's upgrade at mount: 64-bit tags for a 64bit file system, checksums v3 with metadata_csum.
    let want = inc;
    if (v2) {
      if (r.sb.s_feature_incompat & INCOMPAT['64bit']) want |= JBD2_INCOMPAT['64bit'];
      if (r.sb.s_feature_ro_compat & RO_COMPAT.metadata_csum)
        want = (want & ~JBD2_INCOMPAT.csum_v2) | JBD2_INCOMPAT.csum_v3;
    } else if (r.blocksCount > 0xffffffff)
      throw new Ext4Error('UNSUPPORTED_FEATURE', `${where} is version 1 and cannot address ${r.blocksCount} blocks`);
    this.incompat = want;
    this.upgraded = want !== inc;
    this.jsb = jsb;
    this.format = journalFormat({ ...sb, s_feature_incompat: want });
    this.sequence = sb.s_sequence;
    this.first = sb.s_first;
    this.last = sb.s_maxlen;
  }

  /** The journal of the file system `r` reads (named `name` in messages), or undefined when it has none. */
  static open(r: Ext4Reader, name: string): JournalLog | undefined {
    const ino = r.sb.s_journal_inum;
    if (!ino) return undefined;
    const i = r.inode(ino);
    return new JournalLog(r, name, r.blockRuns(ino, i));
  }

  /** The physical block of journal block `n`. */
  private map(n: number): number {
    const p = this.r.physicalBlock(this.runs, n);
    if (p === undefined) throw new Ext4Error('CORRUPT', `${this.name}: journal block ${n} is not mapped`);
    return p;
  }

  /** Log blocks a transaction of `n` metadata blocks needs, and what the log holds. */
  fits(n: number): { need: number; room: number } {
    return { need: transactionBlocks(this.format, n), room: this.last - this.first };
  }

  /**
   * Writes one transaction: `data` (new file data), then `meta` (every changed metadata block, some
   * perhaps a head followed by zeros) through the log, in the order above. `sync` false skips the
   * fsyncs (throwaway images).
   */
  commit(
    dev: BlockDevice,
    data: readonly { block: number; data: BlockData }[],
    meta: ReadonlyMap<number, BlockData>,
    sync: boolean,
    now: { sec: number; nsec: number },
    /**
     * Write the superblock home only once the other blocks are durable there: a commit that changes the
     * geometry (a grow), since the kernel checks the descriptors the on-disk superblock names before it
     * replays the journal.
     */
    superblockLast = false,
  ): void {
    const bs = this.r.blockSize;
    // The caller has checked that the transaction fits (fits()).
    const blocks: { block: number; data: BlockData }[] = [];
    meta.forEach((data, block) => blocks.push({ block, data }));
    blocks.sort((a, b) => a.block - b.block);
    const tid = this.sequence;
    const txn = buildTransaction(this.format, tid, blocks, now);
    const flush = () => {
      if (sync) dev.sync();
    };
    const sbBlock = Math.floor(SUPERBLOCK_OFFSET / bs);
    const sbOff = SUPERBLOCK_OFFSET - sbBlock * bs;
    // The commit always carries the superblock (seal() updates its counts and times).
    const sbData = meta.get(sbBlock);
    if (!sbData) throw new Ext4Error('CORRUPT', `${this.name}: the transaction lacks the superblock`);
    const newSb = blockBytes(sbData);
    /** The superblock bytes at `off` in `b` with needs_recovery set or cleared. */
    const superblock = (b: Uint8Array, off: number, recovering: boolean) =>
      patchIncompat(b.subarray(off), recovering ? NEEDS_RECOVERY : 0, recovering ? 0 : NEEDS_RECOVERY);

    // 1. Data, the log up to the commit block, the journal superblock and needs_recovery.
    writeBlocks(dev, bs, data);
    // The commit block's slot is zeroed with the log: a commit block torn by a power cut then holds
    // its header piece or nothing, never the header beside stale bytes of an older use of the journal
    // (e2fsck and recover reject such a block for its checksum, the kernel replays it: they disagree).
    const log = txn.map((data, k) => ({ block: this.map(this.first + k), data }));
    const commitBlock = log[log.length - 1]!;
    writeBlocks(dev, bs, [...log.slice(0, -1), { block: commitBlock.block, data: new Uint8Array(bs) }]);
    updateJournalSuperblock(this.jsb, {
      s_start: this.first,
      s_sequence: tid,
      s_feature_incompat: this.upgraded ? this.incompat : undefined,
      s_checksum_type: this.upgraded && this.incompat & JBD2_INCOMPAT.csum_v3 ? JBD2_CRC32C : undefined,
    });
    dev.write(this.map(0) * bs, this.jsb);
    dev.write(SUPERBLOCK_OFFSET, superblock(dev.read(SUPERBLOCK_OFFSET, 1024), 0, true));
    flush();
    // 2. The commit point.
    dev.write(commitBlock.block * bs, blockBytes(commitBlock.data));
    flush();
    // 3. Checkpoint: the metadata home (the superblock still saying the journal may hold something).
    const sbHome = { block: sbBlock, data: withSuperblock(newSb, sbOff, superblock(newSb, sbOff, true)) };
    const rest = blocks.filter((b) => b.block !== sbBlock);
    if (superblockLast) {
      writeBlocks(dev, bs, rest);
      flush();
      writeBlocks(dev, bs, [sbHome]);
    } else writeBlocks(dev, bs, [...rest, sbHome]);
    flush();
    // 4. The journal is empty again, and nothing is to be recovered.
    this.sequence = (tid + 1) >>> 0;
    updateJournalSuperblock(this.jsb, { s_start: 0, s_sequence: this.sequence });
    dev.write(this.map(0) * bs, this.jsb);
    dev.write(SUPERBLOCK_OFFSET, superblock(newSb, sbOff, false));
    flush();
  }
}

function withSuperblock(block: Uint8Array, off: number, sb: Uint8Array): Uint8Array {
  const out = block.slice();
  out.set(sb, off);
  return out;
}

/** Writes blocks sorted by number, adjacent ones as one gathered write (of at most 1024 pieces). */
export function writeBlocks(dev: BlockDevice, bs: number, pieces: readonly { block: number; data: BlockData }[]): void {
  let inOrder = true;
  for (let k = 1; k < pieces.length && inOrder; k++) inOrder = pieces[k - 1]!.block < pieces[k]!.block;
  const sorted = inOrder ? pieces : [...pieces].sort((a, b) => a.block - b.block);
  let i = 0;
  while (i < sorted.length) {
    const parts: Uint8Array[] = [];
    pushBlockParts(parts, sorted[i]!.data);
    let end = sorted[i]!.block + sorted[i]!.data.length / bs;
    let j = i + 1;
    while (j < sorted.length && sorted[j]!.block === end && parts.length < 1023) {
      pushBlockParts(parts, sorted[j]!.data);
      end += sorted[j]!.data.length / bs;
      j++;
    }
    const pos = sorted[i]!.block * bs;
    if (parts.length === 1) dev.write(pos, parts[0]!);
    else if (dev.writev) dev.writev(pos, parts);
    else for (let k = 0, p = pos; k < parts.length; p += parts[k]!.length, k++) dev.write(p, parts[k]!);
    i = j;
  }
}
