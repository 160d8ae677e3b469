/**
 * The orphan file (kernel doc: orphan.rst, feature orphan_file): blocks of inode numbers, each block
 * ending with a tail of magic and checksum.
 */
import { u32 } from '../core/bytes.js';
import { crc32c, crc32cU64 } from '../core/crc32c.js';

export const ORPHAN_BLOCK_MAGIC = 0x0b10ca04;
/** The tail at the end of each block: magic, then checksum. */
export const ORPHAN_TAIL_BYTES = 8;

/** An orphan file block's checksum: crc32c(the orphan file's inode seed, le64 block number, the entries). */
export function orphanBlockChecksum(seed: number, block: number, b: Uint8Array): number {
  return crc32c(crc32cU64(seed, block), b, 0, b.length - ORPHAN_TAIL_BYTES);
}

/** The byte offsets of the nonzero inode numbers an orphan file block lists. */
export function orphanEntries(b: Uint8Array): number[] {
  const out: number[] = [];
  for (let o = 0; o < b.length - ORPHAN_TAIL_BYTES; o += 4) if (u32(b, o)) out.push(o);
  return out;
}
