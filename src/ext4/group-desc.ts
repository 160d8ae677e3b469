/** Block group descriptors, 32 or 64 bytes (kernel doc: group_descr.rst). */
import { type Field, join64, lo32, hi32, put16, put32, u16, u32 } from '../core/bytes.js';
import { crc32c, crc32cU32 } from '../core/crc32c.js';

const LO = [
  ['bg_block_bitmap_lo', 0x0, 4],
  ['bg_inode_bitmap_lo', 0x4, 4],
  ['bg_inode_table_lo', 0x8, 4],
  ['bg_free_blocks_count_lo', 0xc, 2],
  ['bg_free_inodes_count_lo', 0xe, 2],
  ['bg_used_dirs_count_lo', 0x10, 2],
  ['bg_flags', 0x12, 2],
  ['bg_exclude_bitmap_lo', 0x14, 4],
  ['bg_block_bitmap_csum_lo', 0x18, 2],
  ['bg_inode_bitmap_csum_lo', 0x1a, 2],
  ['bg_itable_unused_lo', 0x1c, 2],
  ['bg_checksum', 0x1e, 2],
] as const satisfies readonly Field<string>[];
const HI = [
  ['bg_block_bitmap_hi', 0x20, 4],
  ['bg_inode_bitmap_hi', 0x24, 4],
  ['bg_inode_table_hi', 0x28, 4],
  ['bg_free_blocks_count_hi', 0x2c, 2],
  ['bg_free_inodes_count_hi', 0x2e, 2],
  ['bg_used_dirs_count_hi', 0x30, 2],
  ['bg_itable_unused_hi', 0x32, 2],
  ['bg_exclude_bitmap_hi', 0x34, 4],
  ['bg_block_bitmap_csum_hi', 0x38, 2],
  ['bg_inode_bitmap_csum_hi', 0x3a, 2],
] as const satisfies readonly Field<string>[];

const CHECKSUM_OFFSET = 0x1e;

export const BG_INODE_UNINIT = 0x1;
export const BG_BLOCK_UNINIT = 0x2;
export const BG_INODE_ZEROED = 0x4;

/** A group descriptor with lo/hi halves joined. Bitmap checksums are the full 32-bit values. */
export interface GroupDesc {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  freeBlocks: number;
  freeInodes: number;
  usedDirs: number;
  flags: number;
  excludeBitmap: number;
  blockBitmapCsum: number;
  inodeBitmapCsum: number;
  itableUnused: number;
  checksum: number;
}

/** Decodes the descriptor at `off`; with `descSize` 32 the hi halves read as zero. */
export function decodeGroupDesc(b: Uint8Array, off: number, descSize: number): GroupDesc {
  // Read for every group an edit, a check or a mount looks at: plain loads at the table's offsets
  // (resolved once, in O below), no per-call records or closures.
  const wide = descSize >= 64;
  const h16 = (at: number) => (wide ? u16(b, off + at) * 0x10000 : 0);
  const h32 = (at: number) => (wide ? u32(b, off + at) : 0);
  return {
    blockBitmap: join64(u32(b, off + O.bg_block_bitmap_lo), h32(O.bg_block_bitmap_hi)),
    inodeBitmap: join64(u32(b, off + O.bg_inode_bitmap_lo), h32(O.bg_inode_bitmap_hi)),
    inodeTable: join64(u32(b, off + O.bg_inode_table_lo), h32(O.bg_inode_table_hi)),
    freeBlocks: u16(b, off + O.bg_free_blocks_count_lo) + h16(O.bg_free_blocks_count_hi),
    freeInodes: u16(b, off + O.bg_free_inodes_count_lo) + h16(O.bg_free_inodes_count_hi),
    usedDirs: u16(b, off + O.bg_used_dirs_count_lo) + h16(O.bg_used_dirs_count_hi),
    flags: u16(b, off + O.bg_flags),
    excludeBitmap: join64(u32(b, off + O.bg_exclude_bitmap_lo), h32(O.bg_exclude_bitmap_hi)),
    blockBitmapCsum: u16(b, off + O.bg_block_bitmap_csum_lo) + h16(O.bg_block_bitmap_csum_hi),
    inodeBitmapCsum: u16(b, off + O.bg_inode_bitmap_csum_lo) + h16(O.bg_inode_bitmap_csum_hi),
    itableUnused: u16(b, off + O.bg_itable_unused_lo) + h16(O.bg_itable_unused_hi),
    checksum: u16(b, off + O.bg_checksum),
  };
}

/** Offsets by name, from the tables above (decoder and encoder run once per group: no generic walker). */
const O = Object.fromEntries([...LO, ...HI].map(([n, o]) => [n, o])) as Record<
  (typeof LO)[number][0] | (typeof HI)[number][0],
  number
>;

/** Writes `d` at `off` (descSize bytes); the checksum field is written as given (see groupDescChecksum). */
export function encodeGroupDesc(b: Uint8Array, off: number, descSize: number, d: GroupDesc): void {
  put32(b, off + O.bg_block_bitmap_lo, lo32(d.blockBitmap));
  put32(b, off + O.bg_inode_bitmap_lo, lo32(d.inodeBitmap));
  put32(b, off + O.bg_inode_table_lo, lo32(d.inodeTable));
  put16(b, off + O.bg_free_blocks_count_lo, d.freeBlocks & 0xffff);
  put16(b, off + O.bg_free_inodes_count_lo, d.freeInodes & 0xffff);
  put16(b, off + O.bg_used_dirs_count_lo, d.usedDirs & 0xffff);
  put16(b, off + O.bg_flags, d.flags);
  put32(b, off + O.bg_exclude_bitmap_lo, lo32(d.excludeBitmap));
  put16(b, off + O.bg_block_bitmap_csum_lo, d.blockBitmapCsum & 0xffff);
  put16(b, off + O.bg_inode_bitmap_csum_lo, d.inodeBitmapCsum & 0xffff);
  put16(b, off + O.bg_itable_unused_lo, d.itableUnused & 0xffff);
  put16(b, off + O.bg_checksum, d.checksum);
  if (descSize < 64) return;
  put32(b, off + O.bg_block_bitmap_hi, hi32(d.blockBitmap));
  put32(b, off + O.bg_inode_bitmap_hi, hi32(d.inodeBitmap));
  put32(b, off + O.bg_inode_table_hi, hi32(d.inodeTable));
  put16(b, off + O.bg_free_blocks_count_hi, d.freeBlocks >>> 16);
  put16(b, off + O.bg_free_inodes_count_hi, d.freeInodes >>> 16);
  put16(b, off + O.bg_used_dirs_count_hi, d.usedDirs >>> 16);
  put16(b, off + O.bg_itable_unused_hi, d.itableUnused >>> 16);
  put32(b, off + O.bg_exclude_bitmap_hi, hi32(d.excludeBitmap));
  put16(b, off + O.bg_block_bitmap_csum_hi, d.blockBitmapCsum >>> 16);
  put16(b, off + O.bg_inode_bitmap_csum_hi, d.inodeBitmapCsum >>> 16);
}

/**
 * metadata_csum descriptor checksum: crc32c(fs seed, le32 group, descriptor with bg_checksum as zero),
 * low 16 bits (kernel doc: checksums.rst / group_descr.rst).
 */
export function groupDescChecksum(
  csumSeed: number,
  group: number,
  b: Uint8Array,
  off: number,
  descSize: number,
): number {
  let c = crc32cU32(csumSeed, group);
  c = crc32c(c, b, off, off + CHECKSUM_OFFSET);
  c = crc32c(c, ZERO2, 0, 2);
  if (descSize > CHECKSUM_OFFSET + 2) c = crc32c(c, b, off + CHECKSUM_OFFSET + 2, off + descSize);
  return c & 0xffff;
}
const ZERO2 = new Uint8Array(2);

/** gdt_csum (pre-metadata_csum) descriptor checksum: crc16 over uuid, le32 group and the descriptor. */
export function groupDescCrc16(uuid: Uint8Array, group: number, b: Uint8Array, off: number, descSize: number): number {
  let c = crc16(0xffff, uuid, 0, uuid.length);
  const g = new Uint8Array([group & 0xff, (group >>> 8) & 0xff, (group >>> 16) & 0xff, (group >>> 24) & 0xff]);
  c = crc16(c, g, 0, 4);
  c = crc16(c, b, off, off + CHECKSUM_OFFSET);
  if (descSize > CHECKSUM_OFFSET + 2) c = crc16(c, b, off + CHECKSUM_OFFSET + 2, off + descSize);
  return c;
}

/** Stores a descriptor checksum at `off` (helper for callers that encode then checksum). */
export function putGroupDescChecksum(b: Uint8Array, off: number, csum: number): void {
  put16(b, off + CHECKSUM_OFFSET, csum);
}

const CRC16_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
    t[i] = c;
  }
  return t;
})();
/** CRC-16 (ANSI/IBM, reflected 0xA001) as used by gdt_csum. */
export function crc16(crc: number, data: Uint8Array, start: number, end: number): number {
  let c = crc & 0xffff;
  for (let i = start; i < end; i++) c = (c >>> 8) ^ CRC16_TABLE[(c ^ data[i]!) & 0xff]!;
  return c;
}
