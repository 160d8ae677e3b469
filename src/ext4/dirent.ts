/** Linear directory blocks (kernel doc: directory.rst, "Linear (Classic) Directories"). */
import { u16, u32, put16, put32 } from '../core/bytes.js';
import { crc32c } from '../core/crc32c.js';
import { Ext4Error, type Ext4ErrorContext } from '../core/errors.js';

/** ext4_dir_entry_2 file_type values. */
export const FT_UNKNOWN = 0;
export const FT_REG_FILE = 1;
export const FT_DIR = 2;
export const FT_CHRDEV = 3;
export const FT_BLKDEV = 4;
export const FT_FIFO = 5;
export const FT_SOCK = 6;
export const FT_SYMLINK = 7;
/** The fake file type that marks the metadata_csum tail entry. */
export const FT_DIR_CSUM = 0xde;

export const DIR_TAIL_SIZE = 12;

/** The name '.'. */
export function isDot(name: Uint8Array): boolean {
  return name.length === 1 && name[0] === 0x2e;
}
/** The name '..'. */
export function isDotDot(name: Uint8Array): boolean {
  return name.length === 2 && name[0] === 0x2e && name[1] === 0x2e;
}
/** The names '.' and '..'. */
export function isDotOrDotDot(name: Uint8Array): boolean {
  return isDot(name) || isDotDot(name);
}
export const MAX_NAME_LEN = 255;

export interface DirEntry {
  inode: number;
  name: Uint8Array;
  fileType: number;
}

/** Bytes an entry with a name of `nameLen` bytes needs: 8-byte header, name, padded to 4. */
export function direntSize(nameLen: number): number {
  return (8 + nameLen + 3) & ~3;
}

/** rec_len on disk: 65536 does not fit 16 bits and is stored as 65535 (kernel: ext4_rec_len_to_disk). */
export function encodeRecLen(len: number): number {
  if (len === 65536) return 0xffff;
  if (len > 65536) return (len & 0xfffc) | ((len >>> 16) & 3);
  return len;
}
export function decodeRecLen(v: number, blockSize: number): number {
  if (v === 0xffff || v === 0) return blockSize;
  return (v & 0xfffc) | ((v & 3) << 16);
}

export function encodeDirent(b: Uint8Array, off: number, e: DirEntry, recLen: number): void {
  put32(b, off, e.inode);
  put16(b, off + 4, encodeRecLen(recLen));
  b[off + 6] = e.name.length;
  b[off + 7] = e.fileType;
  b.set(e.name, off + 8);
}

export interface RawDirent extends DirEntry {
  offset: number;
  recLen: number;
}

/**
 * Walks the entries in [start, end) of a directory block (or of an inline directory's area), checking
 * every rec_len against the area; `visit(offset, inode, recLen, nameLen)` is called for each entry but
 * the metadata_csum tail, and the walk stops when it returns true. Returns the offset it stopped at,
 * or -1 after the last entry.
 */
export function walkDirEntries(
  b: Uint8Array,
  start: number,
  end: number,
  blockSize: number,
  where: Ext4ErrorContext,
  visit: (off: number, inode: number, recLen: number, nameLen: number) => boolean | void,
): number {
  let off = start;
  while (off < end) {
    if (off + 8 > end)
      throw new Ext4Error('CORRUPT', `directory entry header crosses the block end at ${off - start}`, {
        ...where,
        offset: off,
      });
    const recLen = decodeRecLen(b[off + 4]! | (b[off + 5]! << 8), blockSize);
    const nameLen = b[off + 6]!;
    const inode = u32(b, off);
    // An unused entry's name length means nothing; a live one's name must fit its record.
    if (recLen < 8 || recLen % 4 !== 0 || off + recLen > end || (inode !== 0 && 8 + nameLen > recLen))
      throw new Ext4Error('CORRUPT', `bad directory entry length ${recLen} at offset ${off - start}`, {
        ...where,
        offset: off,
      });
    const isTail = inode === 0 && recLen === DIR_TAIL_SIZE && nameLen === 0 && b[off + 7] === FT_DIR_CSUM;
    if (!isTail && visit(off, inode, recLen, nameLen)) return off;
    off += recLen;
  }
  return -1;
}

/**
 * The entries in [start, end) of a directory block or inline area (see walkDirEntries). Unused entries
 * (inode 0) are included; the metadata_csum tail is not. Without the filetype feature, `fileType` is 0.
 */
export function parseDirEntries(
  b: Uint8Array,
  start: number,
  end: number,
  blockSize: number,
  hasFileType = true,
  where: Ext4ErrorContext = {},
): RawDirent[] {
  const out: RawDirent[] = [];
  walkDirEntries(b, start, end, blockSize, where, (offset, inode, recLen, nameLen) => {
    out.push({
      inode,
      name: b.slice(offset + 8, offset + 8 + (inode !== 0 ? nameLen : 0)),
      fileType: hasFileType ? b[offset + 7]! : FT_UNKNOWN,
      offset,
      recLen,
    });
  });
  return out;
}

/** The offset of the live entry named `name` in [start, end), or -1 (names compared in place). */
export function findDirEntry(
  b: Uint8Array,
  start: number,
  end: number,
  blockSize: number,
  name: Uint8Array,
  where: Ext4ErrorContext = {},
): number {
  const len = name.length;
  return walkDirEntries(b, start, end, blockSize, where, (off, inode, _rec, nameLen) => {
    if (inode === 0 || nameLen !== len) return false;
    for (let k = 0; k < len; k++) if (b[off + 8 + k] !== name[k]) return false;
    return true;
  });
}

/** The entries of one whole linear block (see parseDirEntries). */
export function decodeDirBlock(b: Uint8Array, blockSize: number, withFileType = true): RawDirent[] {
  return parseDirEntries(b, 0, blockSize, blockSize, withFileType);
}

/** True when the block ends with a metadata_csum tail entry. */
export function hasDirTail(b: Uint8Array, blockSize: number): boolean {
  const t = blockSize - DIR_TAIL_SIZE;
  return u32(b, t) === 0 && u16(b, t + 4) === DIR_TAIL_SIZE && b[t + 6] === 0 && b[t + 7] === FT_DIR_CSUM;
}

/** The checksum a directory leaf block's tail holds: crc32c(inode seed, the block before the tail). */
export function dirBlockChecksum(inodeSeed: number, b: Uint8Array, blockSize: number): number {
  return crc32c(inodeSeed, b, 0, blockSize - DIR_TAIL_SIZE);
}

/** Writes the 12-byte checksum tail at the end of `b` (one block) and its checksum. */
export function setDirBlockTail(b: Uint8Array, blockSize: number, inodeSeed: number): void {
  const t = blockSize - DIR_TAIL_SIZE;
  put32(b, t, 0);
  put16(b, t + 4, DIR_TAIL_SIZE);
  b[t + 6] = 0;
  b[t + 7] = FT_DIR_CSUM;
  put32(b, t + 8, dirBlockChecksum(inodeSeed, b, blockSize));
}

/**
 * Packs entries into as many blocks as needed, each entry fully inside one block, the last entry of a
 * block stretched to its end (or to the tail when `csum`). Returns whole blocks.
 */
export function packDirBlocks(
  entries: readonly DirEntry[],
  blockSize: number,
  inodeSeed: number | undefined,
): Uint8Array[] {
  const usable = blockSize - (inodeSeed !== undefined ? DIR_TAIL_SIZE : 0);
  const blocks: Uint8Array[] = [];
  let cur: Uint8Array | undefined;
  let off = 0;
  let lastOff = -1;
  const finish = () => {
    if (!cur) return;
    if (lastOff >= 0) put16(cur, lastOff + 4, encodeRecLen(usable - lastOff));
    else encodeDirent(cur, 0, { inode: 0, name: new Uint8Array(0), fileType: 0 }, usable);
    if (inodeSeed !== undefined) setDirBlockTail(cur, blockSize, inodeSeed);
    blocks.push(cur);
  };
  for (const e of entries) {
    if (e.name.length > MAX_NAME_LEN) throw new Ext4Error('BAD_OPTION', `name longer than ${MAX_NAME_LEN} bytes`);
    const size = direntSize(e.name.length);
    if (!cur || off + size > usable) {
      finish();
      cur = new Uint8Array(blockSize);
      off = 0;
      lastOff = -1;
    }
    encodeDirent(cur, off, e, size);
    lastOff = off;
    off += size;
  }
  if (!cur) cur = new Uint8Array(blockSize);
  finish();
  return blocks;
}

/** An empty directory block (one unused entry spanning it) with the csum tail when seeded. */
export function emptyDirBlock(blockSize: number, inodeSeed: number | undefined): Uint8Array {
  return packDirBlocks([], blockSize, inodeSeed)[0]!;
}
