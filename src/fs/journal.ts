/**
 * The internal journal, read side: where its blocks lie (through the journal inode, or the
 * superblock's backup of its map when the inode is damaged) and the replay of its committed
 * transactions into the block cache's overlay, in memory (the jbd2 format and log walk are
 * ext4/journal.ts and ext4/replay.ts).
 */
import { FixedLayer } from '../io/layer.js';
import { Ext4Error } from '../core/errors.js';
import { COMPAT } from '../ext4/features.js';
import { journalBackupOf } from '../ext4/superblock.js';
import { S_IFMT, S_IFREG, FL_EXTENTS } from '../ext4/inode.js';
import { replayJournal } from '../ext4/replay.js';
import { readInode } from './inodes.js';
import { blockRuns, physicalBlock } from './blockmap.js';
import type { Ext4Volume } from './volume.js';

/**
 * The physical block of each block of the internal journal. A damaged journal inode is replaced by the
 * superblock's backup of its block map and size (s_jnl_blocks), with a warning.
 */
export function journalMap(v: Ext4Volume, onWarning?: (message: string) => void): (n: number) => number {
  const sb = v.sb;
  const ino = sb.s_journal_inum;
  let jinode = readInode(v, ino);
  if ((jinode.mode & S_IFMT) !== S_IFREG && sb.s_jnl_backup_type === 1) {
    const backup = journalBackupOf(sb);
    const extents = backup.iBlock[0] === 0x0a && backup.iBlock[1] === 0xf3;
    jinode = {
      ...jinode,
      mode: S_IFREG | 0o600,
      size: backup.size,
      block: backup.iBlock,
      flags: extents ? FL_EXTENTS : 0,
    };
    onWarning?.("the journal inode is damaged: using the superblock's backup of its block map");
  }
  const runs = blockRuns(v, ino, jinode);
  return (n: number) => {
    const p = physicalBlock(runs, n);
    if (p === undefined) throw new Ext4Error('CORRUPT', `journal block ${n} is not mapped`, { inode: ino });
    return p;
  };
}

/** Replays a dirty journal's committed transactions into the cache's overlay; nothing is written. */
export function replayInMemory(v: Ext4Volume, onWarning?: (message: string) => void): void {
  const sb = v.sb;
  if (!(sb.s_feature_compat & COMPAT.has_journal) || !sb.s_journal_inum) {
    onWarning?.('the journal needs recovery but is external (journal_dev): reading the file system as it is on disk');
    return;
  }
  const map = journalMap(v, onWarning);
  const res = replayJournal({ blockSize: v.blockSize, read: (n) => v.readBlocks(map(n)) }, v.blocksCount);
  v.cache.stack(new FixedLayer(res.overlay));
  v.forgetGroupDesc();
  onWarning?.(
    `replayed ${res.transactions} journal transaction(s) in memory (${res.overlay.size} blocks); the image is unchanged`,
  );
  if (res.fastCommit)
    onWarning?.('the journal has fast-commit blocks, which are not replayed: the most recent changes may be missing');
}
