/** Multiple-mount protection (kernel doc: mmp.rst): one block the holder of a file system stamps. */
import { u32 } from '../core/bytes.js';
import { crc32c } from '../core/crc32c.js';
import type { Superblock } from './superblock.js';

export const MMP_MAGIC = 0x004d4d50;
/** mmp_seq values: cleanly unmounted, held by fsck; anything else is a live sequence number. */
export const MMP_SEQ_CLEAN = 0xff4d4d50;
export const MMP_SEQ_FSCK = 0xe24d4d50;
/** mmp_checksum: crc32c of the bytes before it (metadata_csum). */
export const MMP_CHECKSUM_OFFSET = 0x3fc;

/** The MMP block's number (0: none). */
export function mmpBlock(sb: Superblock): number {
  return sb.s_mmp_block_lo + sb.s_mmp_block_hi * 0x1_0000_0000;
}

export function mmpChecksum(csumSeed: number, b: Uint8Array): number {
  return crc32c(csumSeed, b, 0, MMP_CHECKSUM_OFFSET);
}

/** Whether an MMP block's magic (and, with metadata_csum, its checksum) hold. */
export function mmpBlockOk(b: Uint8Array, csumSeed: number | undefined): boolean {
  if (u32(b, 0) !== MMP_MAGIC) return false;
  return csumSeed === undefined || mmpChecksum(csumSeed, b) === u32(b, MMP_CHECKSUM_OFFSET);
}
