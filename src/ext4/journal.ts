/** jbd2 journal superblock (kernel doc: journal.rst). jbd2 is big-endian. */
import { be32, putBe32 } from './bytes.js';
import { Ext4Error } from './errors.js';

export const JBD2_MAGIC = 0xc03b3998;
export const JBD2_SUPERBLOCK_V1 = 3;
export const JBD2_SUPERBLOCK_V2 = 4;

const FIELDS = [
  ['h_magic', 0x0],
  ['h_blocktype', 0x4],
  ['h_sequence', 0x8],
  ['s_blocksize', 0xc],
  ['s_maxlen', 0x10],
  ['s_first', 0x14],
  ['s_sequence', 0x18],
  ['s_start', 0x1c],
  ['s_errno', 0x20],
  ['s_feature_compat', 0x24],
  ['s_feature_incompat', 0x28],
  ['s_feature_ro_compat', 0x2c],
  ['s_nr_users', 0x40],
  ['s_dynsuper', 0x44],
  ['s_max_transaction', 0x48],
  ['s_max_trans_data', 0x4c],
  ['s_num_fc_blks', 0x54],
  ['s_checksum', 0xfc],
] as const;
type Name = (typeof FIELDS)[number][0];

export type JournalSuperblock = Record<Name, number> & {
  s_uuid: Uint8Array;
  s_checksum_type: number;
};

/** jbd2 feature bits, for dumpe2fs-style names. */
export const JBD2_COMPAT_CHECKSUM = 0x1;
export const JBD2_INCOMPAT = {
  revoke: 0x1,
  '64bit': 0x2,
  async_commit: 0x4,
  csum_v2: 0x8,
  csum_v3: 0x10,
  fast_commit: 0x20,
} as const;

export function decodeJournalSuperblock(b: Uint8Array, off = 0): JournalSuperblock {
  const j = {} as JournalSuperblock;
  for (const [n, o] of FIELDS) j[n] = be32(b, off + o);
  j.s_uuid = b.slice(off + 0x30, off + 0x40);
  j.s_checksum_type = b[off + 0x50]!;
  if (j.h_magic !== JBD2_MAGIC)
    throw new Ext4Error('BAD_MAGIC', `journal superblock magic 0x${j.h_magic.toString(16)} is not jbd2's`);
  return j;
}

/**
 * A clean, empty v2 journal of `blocks` blocks: sequence 1, start 0 (nothing to replay), one user (the
 * file system, `uuid`), no journal checksum features (what mkfs.ext4 1.47 writes by default).
 */
export function newJournalSuperblock(blockSize: number, blocks: number, uuid: Uint8Array): Uint8Array {
  const b = new Uint8Array(blockSize);
  const v: Partial<Record<Name, number>> = {
    h_magic: JBD2_MAGIC,
    h_blocktype: JBD2_SUPERBLOCK_V2,
    s_blocksize: blockSize,
    s_maxlen: blocks,
    s_first: 1,
    s_sequence: 1,
    s_nr_users: 1,
  };
  for (const [n, o] of FIELDS) if (v[n] !== undefined) putBe32(b, o, v[n]!);
  b.set(uuid, 0x30);
  return b;
}
