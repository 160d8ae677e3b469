/**
 * `recover`: what the kernel does at mount, or e2fsck first, with a dirty journal (a VM killed while it
 * had the image mounted, an edit cut short): the committed transactions are written home (revoke
 * records, escaped blocks, wrap-around, 32/64-bit tags and checksums v2/v3 honoured), the journal is
 * emptied, then the orphan list is cleaned up and needs_recovery cleared (orphans.ts), through the
 * (now empty) journal again.
 */
import { Ext4Error } from '../core/errors.js';
import { COMPAT, INCOMPAT, RO_COMPAT } from '../ext4/features.js';
import { decodeJournalSuperblock, updateJournalSuperblock, JBD2_INCOMPAT } from '../ext4/journal.js';
import { replayJournal } from '../ext4/replay.js';
import { Ext4Reader } from '../fs/reader.js';
import { FileDevice } from '../io/device.js';
import { Volume } from './volume.js';
import { checkEditableFeatures } from './guard.js';
import { releaseDeadMmp } from './mmp.js';
import { cleanOrphans } from './orphans.js';
import { fixedTimeOf, opTime } from './inodes.js';
import { mountedLoop } from '../host/mounts.js';
import { writeBlocks } from './journal-log.js';
import { lockForWrite, type LockOptions } from '../host/lock.js';
import type { Holder } from '../host/holder.js';

export interface RecoverOptions {
  /** fsync each step (default true). */
  sync?: boolean;
  onWarning?: (message: string) => void;
  /** The writer's lock, held for the whole recovery (how long to wait for another process). */
  lock?: LockOptions;
  /** Internal: the writer of ours that died holding the lock (its MMP claim is released). */
  deadWriter?: Holder;
}

export interface RecoverResult {
  /** Anything was done (false: the image was clean). */
  recovered: boolean;
  /** Committed transactions replayed, and the blocks they wrote home. */
  transactions: number;
  blocks: number;
  /** Orphan inodes deleted or cut back. */
  orphans: number;
  /** Copies with bad checksums passed over, a log cut short by one. */
  warnings: string[];
}

/** Recovers an image whose journal needs it; an image that does not is left as it is. */
export function recoverJournal(imagePath: string, opts: RecoverOptions = {}): RecoverResult {
  const mounted = mountedLoop(imagePath);
  if (mounted)
    throw new Ext4Error('IN_USE', `${imagePath} is mounted (through ${mounted}); the kernel recovers it itself`, {
      path: imagePath,
    });
  const lock = lockForWrite(imagePath, opts.lock);
  try {
    return recoverLocked(imagePath, opts, opts.deadWriter ?? lock.tookOverFrom);
  } finally {
    lock.release();
  }
}

function recoverLocked(imagePath: string, opts: RecoverOptions, deadWriter: Holder | undefined): RecoverResult {
  const result: RecoverResult = { recovered: false, transactions: 0, blocks: 0, orphans: 0, warnings: [] };
  const dev = FileDevice.open(imagePath, true);
  let needsOrphans = false;
  try {
    // As the kernel and e2fsck do, the log is replayed before any metadata checksum is trusted: a
    // committed change of the checksum seed (tune --rewrite-checksums) cut short while written home
    // leaves blocks under both seeds until the replay.
    const r = Ext4Reader.open(dev, { verifyChecksums: false });
    if (deadWriter) releaseDeadMmp(dev, r, deadWriter.host, Date.parse(deadWriter.since) / 1000);
    const sb = r.sb;
    const dirty = (sb.s_feature_incompat & INCOMPAT.needs_recovery) !== 0;
    needsOrphans = dirty || sb.s_last_orphan !== 0 || (sb.s_feature_ro_compat & RO_COMPAT.orphan_present) !== 0;
    // Refuse before writing anything what the clean-up after the replay could not finish.
    if (needsOrphans) checkEditableFeatures(sb, imagePath, true);
    if (sb.s_feature_compat & COMPAT.has_journal) {
      if (!sb.s_journal_inum)
        throw new Ext4Error(
          'UNSUPPORTED_FEATURE',
          `${imagePath}: the journal is on an external device, which cannot be replayed here`,
        );
      const map = r.journalMap((w) => result.warnings.push(w));
      const jsbBlock = map(0);
      const jsb = r.readBlocks(jsbBlock).slice();
      const j = decodeJournalSuperblock(jsb);
      if (j.s_start !== 0) {
        if (j.h_blocktype === 4 && j.s_feature_incompat & JBD2_INCOMPAT.fast_commit)
          throw new Ext4Error(
            'UNSUPPORTED_FEATURE',
            `${imagePath}: the journal uses fast commits, which cannot be replayed here; use e2fsck`,
          );
        const res = replayJournal({ blockSize: r.blockSize, read: (n) => r.readBlocks(map(n)) }, r.blocksCount);
        result.transactions = res.transactions;
        result.blocks = res.overlay.size;
        result.warnings.push(...res.warnings);
        writeBlocks(
          dev,
          r.blockSize,
          [...res.overlay].map(([block, data]) => ({ block, data })),
        );
        if (opts.sync !== false) dev.sync();
        // The journal is empty; the next transaction gets the sequence number after the last one.
        updateJournalSuperblock(jsb, { s_start: 0, s_sequence: res.nextSequence });
        dev.write(jsbBlock * r.blockSize, jsb);
        if (opts.sync !== false) dev.sync();
        result.recovered = true;
        needsOrphans = true;
      }
    }
  } finally {
    dev.close();
  }
  if (needsOrphans) {
    // What the journal held is home; the orphans and the flag go through the (now empty) journal.
    const v = Volume.open(imagePath, { sync: opts.sync, onWarning: opts.onWarning, recovering: true });
    try {
      result.orphans = v.runOp(() => cleanOrphans(v, opTime(fixedTimeOf(undefined))));
      v.commit();
    } finally {
      v.close();
    }
    result.recovered = true;
  }
  for (const w of result.warnings) opts.onWarning?.(w);
  return result;
}
