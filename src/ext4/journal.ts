/** jbd2 journal superblock (kernel doc: journal.rst). jbd2 is big-endian. */
import { be32, putBe32 } from '../core/bytes.js';
import { crc32c, crc32cU32, crc32cZeros } from '../core/crc32c.js';
import { Ext4Error } from '../core/errors.js';
import { ZeroTail, type BlockData } from '../core/zero-tail.js';

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
  for (const [n, o] of FIELDS) if (v[n] !== undefined) putBe32(b, o, v[n]);
  b.set(uuid, 0x30);
  return b;
}

/** Journal block types (the 12-byte header's h_blocktype). */
export const JBD2_DESCRIPTOR_BLOCK = 1;
export const JBD2_COMMIT_BLOCK = 2;
export const JBD2_REVOKE_BLOCK = 5;
/** Descriptor tag flags. */
export const JBD2_TAG_ESCAPE = 0x1;
export const JBD2_TAG_SAME_UUID = 0x2;
export const JBD2_TAG_LAST = 0x8;
/** s_checksum_type for crc32c, the only checksum a metadata_csum journal uses. */
export const JBD2_CRC32C = 4;
const SB_CHECKSUM_OFFSET = 0xfc;
const SB_SIZE = 1024;

/** How a journal writes its blocks: tag shape and checksums, from its features. */
export interface JournalFormat {
  blockSize: number;
  is64: boolean;
  csumV2: boolean;
  csumV3: boolean;
  uuid: Uint8Array;
  /** crc32c(~0, uuid): the seed of every checksum but the superblock's. */
  seed: number;
}

export function journalFormat(sb: JournalSuperblock): JournalFormat {
  const inc = sb.h_blocktype === JBD2_SUPERBLOCK_V2 ? sb.s_feature_incompat : 0;
  return {
    blockSize: sb.s_blocksize,
    is64: (inc & JBD2_INCOMPAT['64bit']) !== 0,
    csumV2: (inc & JBD2_INCOMPAT.csum_v2) !== 0,
    csumV3: (inc & JBD2_INCOMPAT.csum_v3) !== 0,
    uuid: sb.s_uuid,
    seed: crc32c(0xffffffff, sb.s_uuid),
  };
}

/** Bytes of one descriptor tag (without the 16-byte UUID that follows a tag lacking SAME_UUID). */
export function tagBytes(f: JournalFormat): number {
  // The v2 tag keeps its checksum in t_checksum and is 2 bytes longer all the same (jbd2 counts it so).
  if (f.csumV3) return 16;
  return 12 + (f.csumV2 ? 2 : 0) - (f.is64 ? 0 : 4);
}

/** Bytes at the end of descriptor and revoke blocks taken by their checksum. */
export function blockTailBytes(f: JournalFormat): number {
  return f.csumV2 || f.csumV3 ? 4 : 0;
}

/** The superblock checksum (v2/v3): crc32c(~0, its 1024 bytes with s_checksum as zero). */
export function journalSuperblockChecksum(b: Uint8Array): number {
  let c = crc32c(0xffffffff, b, 0, SB_CHECKSUM_OFFSET);
  c = crc32c(c, ZERO4, 0, 4);
  return crc32c(c, b, SB_CHECKSUM_OFFSET + 4, SB_SIZE);
}
const ZERO4 = new Uint8Array(4);

/** A data block's tag checksum: crc32c(seed, be32 tid, the block as stored in the journal). */
export function journalTagChecksum(f: JournalFormat, tid: number, stored: BlockData): number {
  return tagChecksumFrom(tagChecksumSeed(f, tid), stored);
}

/** The register after seed and be32 tid: the same for every tag of one transaction. */
function tagChecksumSeed(f: JournalFormat, tid: number): number {
  // The tid's bytes big-endian, folded as the little-endian word they make.
  return crc32cU32(f.seed, ((tid & 0xff) << 24) | ((tid & 0xff00) << 8) | ((tid >>> 8) & 0xff00) | (tid >>> 24));
}

function tagChecksumFrom(c: number, stored: BlockData): number {
  if (stored instanceof Uint8Array) return crc32c(c, stored);
  return crc32cZeros(crc32c(c, stored.head), stored.length - stored.head.length);
}

/** A descriptor, revoke or commit block's own checksum: crc32c(seed, the block with its checksum as zero). */
export function journalBlockChecksum(f: JournalFormat, b: Uint8Array, at: number): number {
  let c = crc32c(f.seed, b, 0, at);
  c = crc32c(c, ZERO4, 0, 4);
  return crc32c(c, b, at + 4, b.length);
}

/** Writes the dynamic fields of a journal superblock and, with checksums on, its checksum. */
export function updateJournalSuperblock(
  b: Uint8Array,
  v: { s_start: number; s_sequence: number; s_feature_incompat?: number; s_checksum_type?: number },
): void {
  putBe32(b, 0x1c, v.s_start);
  putBe32(b, 0x18, v.s_sequence);
  if (v.s_feature_incompat !== undefined) putBe32(b, 0x28, v.s_feature_incompat);
  if (v.s_checksum_type !== undefined) b[0x50] = v.s_checksum_type;
  const inc = be32(b, 0x28);
  if (be32(b, 4) === JBD2_SUPERBLOCK_V2 && inc & (JBD2_INCOMPAT.csum_v2 | JBD2_INCOMPAT.csum_v3))
    putBe32(b, SB_CHECKSUM_OFFSET, journalSuperblockChecksum(b));
}

/**
 * The blocks of one transaction as they go into the log from its first block: descriptor blocks, each
 * followed by the copies its tags describe (a copy starting with the jbd2 magic is stored with four zero
 * bytes and the escape flag), then the commit block.
 */
export function buildTransaction(
  f: JournalFormat,
  tid: number,
  blocks: readonly { block: number; data: BlockData }[],
  commitTime: { sec: number; nsec: number },
): BlockData[] {
  const bs = f.blockSize;
  const tb = tagBytes(f);
  const tail = blockTailBytes(f);
  const out: BlockData[] = [];
  const tagSeed = tagChecksumSeed(f, tid);
  let k = 0;
  while (k < blocks.length) {
    const desc = new Uint8Array(bs);
    putBe32(desc, 0, JBD2_MAGIC);
    putBe32(desc, 4, JBD2_DESCRIPTOR_BLOCK);
    putBe32(desc, 8, tid);
    const copies: BlockData[] = [];
    let off = 12;
    let lastTag = -1;
    while (k < blocks.length) {
      const first = copies.length === 0;
      const need = tb + (first ? 16 : 0);
      if (off + need > bs - tail) break;
      const { block, data } = blocks[k]!;
      if (!f.is64 && block >= 0x1_0000_0000)
        throw new Ext4Error('UNSUPPORTED_FEATURE', `block ${block} needs a 64-bit journal`, { block });
      let stored = data;
      let flags = first ? 0 : JBD2_TAG_SAME_UUID;
      if (startsWithMagic(data)) {
        stored = escaped(data);
        flags |= JBD2_TAG_ESCAPE;
      }
      putBe32(desc, off, block % 0x1_0000_0000);
      if (f.csumV3) {
        putBe32(desc, off + 4, flags);
        putBe32(desc, off + 8, Math.floor(block / 0x1_0000_0000));
        putBe32(desc, off + 12, tagChecksumFrom(tagSeed, stored));
      } else {
        // t_checksum (the low 16 bits, with csum v2) then t_flags, then the high half of the block.
        const c = f.csumV2 ? tagChecksumFrom(tagSeed, stored) : 0;
        desc.set([(c >>> 8) & 0xff, c & 0xff, (flags >>> 8) & 0xff, flags & 0xff], off + 4);
        if (f.is64) putBe32(desc, off + 8, Math.floor(block / 0x1_0000_0000));
      }
      lastTag = off;
      off += tb;
      if (first) {
        desc.set(f.uuid.subarray(0, 16), off);
        off += 16;
      }
      copies.push(stored);
      k++;
    }
    if (lastTag < 0) throw new Ext4Error('CORRUPT', 'journal block too small for a tag');
    // The last tag of the descriptor carries LAST_TAG (the flags' low byte is at +7 in both tag forms).
    desc[lastTag + 7] = desc[lastTag + 7]! | JBD2_TAG_LAST;
    if (tail) putBe32(desc, bs - 4, journalBlockChecksum(f, desc, bs - 4));
    out.push(desc, ...copies);
  }
  const commit = new Uint8Array(bs);
  putBe32(commit, 0, JBD2_MAGIC);
  putBe32(commit, 4, JBD2_COMMIT_BLOCK);
  putBe32(commit, 8, tid);
  putBe32(commit, 0x30, Math.floor(commitTime.sec / 0x1_0000_0000));
  putBe32(commit, 0x34, (commitTime.sec % 0x1_0000_0000) >>> 0);
  putBe32(commit, 0x38, commitTime.nsec);
  if (f.csumV2 || f.csumV3) putBe32(commit, 0x10, journalBlockChecksum(f, commit, 0x10));
  out.push(commit);
  return out;
}

/** Whether a block begins with the jbd2 magic (a ZeroTail's head shorter than it cannot: the magic has no zero byte). */
function startsWithMagic(data: BlockData): boolean {
  const b = data instanceof Uint8Array ? data : data.head;
  return b.length >= 4 && be32(b, 0) === JBD2_MAGIC;
}

/** The block as the log stores it when it begins with the magic: those four bytes zero. */
function escaped(data: BlockData): BlockData {
  const b = (data instanceof Uint8Array ? data : data.head).slice();
  b.fill(0, 0, 4);
  return data instanceof Uint8Array ? b : new ZeroTail(b, data.length);
}

/** Log blocks a transaction of `n` metadata blocks takes: descriptors, copies and the commit block. */
export function transactionBlocks(f: JournalFormat, n: number): number {
  const tb = tagBytes(f);
  const room = f.blockSize - 12 - blockTailBytes(f) - 16;
  const perDesc = 1 + Math.floor((room - tb) / tb);
  return Math.ceil(n / perDesc) + n + 1;
}
