/**
 * jbd2 journal replay (kernel doc: journal.rst): the committed transactions of a dirty journal are
 * collected into an overlay of file-system blocks. The reader reads through that overlay (nothing is
 * written); `recover` writes it home. With journal checksums, a transaction whose descriptor or commit
 * block fails its checksum ends the log, and a copy whose tag checksum fails is not replayed.
 */
import { be32 } from '../core/bytes.js';
import { Ext4Error } from '../core/errors.js';
import {
  JBD2_MAGIC,
  decodeJournalSuperblock,
  JBD2_SUPERBLOCK_V1,
  JBD2_SUPERBLOCK_V2,
  JBD2_INCOMPAT,
  JBD2_DESCRIPTOR_BLOCK,
  JBD2_COMMIT_BLOCK,
  JBD2_REVOKE_BLOCK,
  JBD2_TAG_ESCAPE,
  JBD2_TAG_SAME_UUID,
  JBD2_TAG_LAST,
  journalFormat,
  tagBytes as tagBytesOf,
  blockTailBytes,
  journalBlockChecksum,
  journalTagChecksum,
} from './journal.js';

export interface JournalAccess {
  blockSize: number;
  /** Reads journal block `n` (a logical block of the journal). */
  read(n: number): Uint8Array;
}

export interface ReplayResult {
  /** File-system block -> its contents after recovery. */
  overlay: Map<number, Uint8Array>;
  transactions: number;
  /** The journal uses fast commits, whose area is not replayed here. */
  fastCommit: boolean;
  /** The sequence number after the last committed transaction (what the journal expects next). */
  nextSequence: number;
  /** What was passed over: copies with bad checksums, a log ended by a bad checksum. */
  warnings: string[];
}

/**
 * Scans the log from s_start, stopping at the first block that is not the next expected one, and
 * replays every committed transaction (revoked blocks excluded). A clean journal gives an empty overlay.
 */
export function replayJournal(j: JournalAccess, fsBlocks: number): ReplayResult {
  // The superblock through its codec (which also checks the magic).
  const sb = decodeJournalSuperblock(j.read(0));
  const type = sb.h_blocktype;
  if (type !== JBD2_SUPERBLOCK_V1 && type !== JBD2_SUPERBLOCK_V2)
    throw new Ext4Error('CORRUPT', `journal superblock type ${type}`);
  const bs = sb.s_blocksize;
  if (bs !== j.blockSize) throw new Ext4Error('CORRUPT', `journal block size ${bs} differs from the file system's`);
  const maxlen = sb.s_maxlen;
  const first = sb.s_first;
  const startSeq = sb.s_sequence;
  const start = sb.s_start;
  // Version 1 superblocks have no feature fields.
  const incompat = type === JBD2_SUPERBLOCK_V2 ? sb.s_feature_incompat : 0;
  const overlay = new Map<number, Uint8Array>();
  const warnings: string[] = [];
  const fastCommit = (incompat & JBD2_INCOMPAT.fast_commit) !== 0;
  if (start === 0) return { overlay, transactions: 0, fastCommit: false, nextSequence: startSeq, warnings };
  if (first < 1 || first >= maxlen || start < first || start >= maxlen)
    throw new Ext4Error('CORRUPT', 'journal log bounds are invalid');
  const f = journalFormat(sb);
  const csum = f.csumV2 || f.csumV3;
  const tagBytes = tagBytesOf(f);
  const tailBytes = blockTailBytes(f);
  const wrap = (n: number) => (n >= maxlen ? first + (n - maxlen) : n);

  interface Tag {
    fsBlock: number;
    logBlock: number;
    escaped: boolean;
    checksum: number;
  }
  const parseTags = (b: Uint8Array, firstData: number): Tag[] => {
    const tags: Tag[] = [];
    let off = 12;
    let data = firstData;
    while (off + tagBytes <= bs - tailBytes) {
      const lo = be32(b, off);
      const flags = f.csumV3 ? be32(b, off + 4) : (b[off + 6]! << 8) | b[off + 7]!;
      const hi = f.is64 ? be32(b, off + 8) : 0;
      const checksum = f.csumV3 ? be32(b, off + 12) : (b[off + 4]! << 8) | b[off + 5]!;
      tags.push({
        fsBlock: hi * 0x1_0000_0000 + lo,
        logBlock: wrap(data),
        escaped: (flags & JBD2_TAG_ESCAPE) !== 0,
        checksum,
      });
      data++;
      off += tagBytes;
      if (!(flags & JBD2_TAG_SAME_UUID)) off += 16;
      if (flags & JBD2_TAG_LAST) break;
      if (tags.length > bs) break;
    }
    return tags;
  };

  // Pass 1: find the end of the log (the first transaction without a valid commit block).
  const steps: { seq: number; kind: number; block: number; tags?: Tag[] }[] = [];
  let seq = startSeq;
  let pos = start;
  let committed = startSeq;
  for (let guard = 0; guard < maxlen * 2; guard++) {
    const b = j.read(pos);
    if (be32(b, 0) !== JBD2_MAGIC || be32(b, 8) !== seq) break;
    const kind = be32(b, 4);
    if (kind === JBD2_DESCRIPTOR_BLOCK) {
      if (csum && journalBlockChecksum(f, b, bs - 4) !== be32(b, bs - 4)) {
        warnings.push(`transaction ${seq}: descriptor block checksum mismatch; the log ends there`);
        break;
      }
      const tags = parseTags(b, wrap(pos + 1));
      steps.push({ seq, kind, block: pos, tags });
      pos = wrap(pos + 1 + tags.length);
    } else if (kind === JBD2_COMMIT_BLOCK) {
      if (csum && journalBlockChecksum(f, b, 0x10) !== be32(b, 0x10)) {
        warnings.push(`transaction ${seq}: commit block checksum mismatch; it is not replayed`);
        break;
      }
      seq = (seq + 1) >>> 0;
      committed = seq;
      pos = wrap(pos + 1);
    } else if (kind === JBD2_REVOKE_BLOCK) {
      if (csum && journalBlockChecksum(f, b, bs - 4) !== be32(b, bs - 4)) {
        warnings.push(`transaction ${seq}: revoke block checksum mismatch; the log ends there`);
        break;
      }
      steps.push({ seq, kind, block: pos });
      pos = wrap(pos + 1);
    } else break;
  }
  const isCommitted = (s: number) => (s - startSeq) >>> 0 < (committed - startSeq) >>> 0;

  // Pass 2: revokes of committed transactions.
  const revoked = new Map<number, number>();
  if (incompat & JBD2_INCOMPAT.revoke)
    for (const st of steps) {
      if (st.kind !== JBD2_REVOKE_BLOCK || !isCommitted(st.seq)) continue;
      const b = j.read(st.block);
      const count = Math.min(be32(b, 12), bs - tailBytes);
      const rec = f.is64 ? 8 : 4;
      for (let off = 16; off + rec <= count; off += rec) {
        const blk = f.is64 ? be32(b, off) * 0x1_0000_0000 + be32(b, off + 4) : be32(b, off);
        const prev = revoked.get(blk);
        if (prev === undefined || (st.seq - prev) >>> 0 < 0x8000_0000) revoked.set(blk, st.seq);
      }
    }

  // Pass 3: replay in order; a later transaction's copy wins, a revoke at or after it hides it.
  let transactions = 0;
  let lastSeq = -1;
  for (const st of steps) {
    if (st.kind !== JBD2_DESCRIPTOR_BLOCK || !isCommitted(st.seq)) continue;
    if (st.seq !== lastSeq) {
      transactions++;
      lastSeq = st.seq;
    }
    for (const t of st.tags!) {
      const r = revoked.get(t.fsBlock);
      if (r !== undefined && (r - st.seq) >>> 0 < 0x8000_0000) continue;
      if (t.fsBlock >= fsBlocks)
        throw new Ext4Error('CORRUPT', `journal replays block ${t.fsBlock} outside the file system`, {
          block: t.fsBlock,
        });
      const stored = j.read(t.logBlock);
      if (csum) {
        const c = journalTagChecksum(f, st.seq, stored);
        if ((f.csumV3 ? c : c & 0xffff) !== t.checksum) {
          warnings.push(`transaction ${st.seq}: the copy of block ${t.fsBlock} fails its checksum; not replayed`);
          continue;
        }
      }
      const data = stored.slice();
      // An escaped block began with the jbd2 magic, which the journal stored as zeros.
      if (t.escaped) data.set([0xc0, 0x3b, 0x39, 0x98], 0);
      overlay.set(t.fsBlock, data);
    }
  }
  return { overlay, transactions, fastCommit, nextSequence: committed, warnings };
}
