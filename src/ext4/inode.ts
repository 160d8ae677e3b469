/** The inode (kernel doc: inodes.rst): 128 bytes of base fields, then i_extra_isize bytes of extra fields. */
import { type Field, join64, lo32, hi32, put16, put32, u16, u32 } from '../core/bytes.js';
import { crc32c, crc32cByteChange, crc32cU32 } from '../core/crc32c.js';
import type { Timestamp } from '../core/types.js';

const BASE = [
  ['i_mode', 0x0, 2],
  ['i_uid', 0x2, 2],
  ['i_size_lo', 0x4, 4],
  ['i_atime', 0x8, 4],
  ['i_ctime', 0xc, 4],
  ['i_mtime', 0x10, 4],
  ['i_dtime', 0x14, 4],
  ['i_gid', 0x18, 2],
  ['i_links_count', 0x1a, 2],
  ['i_blocks_lo', 0x1c, 4],
  ['i_flags', 0x20, 4],
  ['l_i_version', 0x24, 4],
  ['i_generation', 0x64, 4],
  ['i_file_acl_lo', 0x68, 4],
  ['i_size_high', 0x6c, 4],
  ['l_i_blocks_high', 0x74, 2],
  ['l_i_file_acl_high', 0x76, 2],
  ['l_i_uid_high', 0x78, 2],
  ['l_i_gid_high', 0x7a, 2],
  ['l_i_checksum_lo', 0x7c, 2],
] as const satisfies readonly Field<string>[];
const EXTRA = [
  ['i_extra_isize', 0x80, 2],
  ['i_checksum_hi', 0x82, 2],
  ['i_ctime_extra', 0x84, 4],
  ['i_mtime_extra', 0x88, 4],
  ['i_atime_extra', 0x8c, 4],
  ['i_crtime', 0x90, 4],
  ['i_crtime_extra', 0x94, 4],
  ['i_version_hi', 0x98, 4],
  ['i_projid', 0x9c, 4],
] as const satisfies readonly Field<string>[];
type ExtraName = (typeof EXTRA)[number][0];

export const GOOD_OLD_INODE_SIZE = 128;
/** i_extra_isize of the inodes this project writes (mkfs.ext4's: the fields up to i_projid). */
export const EXTRA_ISIZE = 32;
export const I_BLOCK_OFFSET = 0x28;
export const I_BLOCK_SIZE = 60;
const CSUM_LO = 0x7c;
const CSUM_HI = 0x82;

/** The reserved inodes this project names (kernel doc: special_inodes.rst). */
/** Inode 1 lists bad blocks. */
export const BAD_BLOCKS_INO = 1;
/** The root directory. */
export const ROOT_INO = 2;
/** The resize inode: its double-indirect block maps the reserved GDT blocks. */
export const RESIZE_INO = 7;
/** The journal mkfs makes (s_journal_inum names the one in use). */
export const JOURNAL_INO = 8;
/** The first inode that is not reserved: revision 0's fixed s_first_ino, and mkfs's for revision 1. */
export const FIRST_INO = 11;
/** lost+found, the first inode mkfs gives out. */
export const LOST_FOUND_INO = FIRST_INO;

/**
 * EXT4_LINK_MAX: the most links an inode counts. A directory with more subdirectories (dir_nlink)
 * keeps i_links_count at 1, meaning "not counted" (kernel doc: directory.rst, dir_nlink).
 */
export const LINK_MAX = 65000;

/** i_mode file types. */
export const S_IFMT = 0xf000;
export const S_IFSOCK = 0xc000;
export const S_IFLNK = 0xa000;
export const S_IFREG = 0x8000;
export const S_IFBLK = 0x6000;
export const S_IFDIR = 0x4000;
export const S_IFCHR = 0x2000;
export const S_IFIFO = 0x1000;

/** i_flags bits used here. */
export const FL_INDEX = 0x1000;
export const FL_HUGE_FILE = 0x40000;
export const FL_EXTENTS = 0x80000;
export const FL_EA_INODE = 0x200000;
export const FL_INLINE_DATA = 0x10000000;
export const FL_COMPR = 0x4;
export const FL_ENCRYPT = 0x800;
export const FL_VERITY = 0x100000;
export const FL_CASEFOLD = 0x40000000;

/** Seconds (may be negative or past 2038) and nanoseconds; shared, so defined in core. */
export type { Timestamp };

/** A decoded inode. Multi-word fields are joined; `blocks` is i_blocks in its raw unit (see FL_HUGE_FILE). */
export interface Inode {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  atime: Timestamp;
  ctime: Timestamp;
  mtime: Timestamp;
  crtime: Timestamp;
  dtime: number;
  linksCount: number;
  blocks: number;
  flags: number;
  version: number;
  /** i_block: 60 bytes (extent tree root, block map, inline data or fast symlink target). */
  block: Uint8Array;
  generation: number;
  fileAcl: number;
  /** i_extra_isize; 0 for 128-byte inodes. */
  extraIsize: number;
  projid: number;
}

export function emptyInode(): Inode {
  const t = { sec: 0, nsec: 0 };
  return {
    mode: 0,
    uid: 0,
    gid: 0,
    size: 0,
    atime: t,
    ctime: t,
    mtime: t,
    crtime: t,
    dtime: 0,
    linksCount: 0,
    blocks: 0,
    flags: 0,
    version: 0,
    block: new Uint8Array(I_BLOCK_SIZE),
    generation: 0,
    fileAcl: 0,
    extraIsize: 0,
    projid: 0,
  };
}

/** Kernel time encoding: low 32 bits signed, two epoch bits and 30 nanosecond bits in the _extra word. */
export function decodeTime(lo: number, extra: number | undefined): Timestamp {
  const base = lo | 0;
  if (extra === undefined) return { sec: base, nsec: 0 };
  return { sec: base + (extra & 3) * 0x1_0000_0000, nsec: extra >>> 2 };
}
/**
 * UNIX seconds with an optional fraction of up to 9 digits (`1700000000`, `-5.25`), nanoseconds kept;
 * undefined when `s` is not that.
 */
export function parseUnixSeconds(s: string): Timestamp | undefined {
  const m = /^(-?\d+)(?:\.(\d{1,9}))?$/.exec(s);
  if (!m || !Number.isSafeInteger(Number(m[1]))) return undefined;
  return { sec: Number(m[1]), nsec: Number((m[2] ?? '').padEnd(9, '0')) };
}

/** The range the encoding can hold: 1901-12-13 to 2446-05-10; times outside are clamped, like the kernel does. */
export const MIN_TIME = -0x8000_0000;
export const MAX_TIME = 0x3_ffff_ffff - 0x8000_0000;
export function encodeTime(t: Timestamp): { lo: number; extra: number } {
  const sec = Math.min(MAX_TIME, Math.max(MIN_TIME, Math.floor(t.sec)));
  const lo = lo32(sec);
  const signedLo = lo | 0;
  const epoch = Math.round((sec - signedLo) / 0x1_0000_0000) & 3;
  return { lo, extra: (epoch | (t.nsec << 2)) >>> 0 };
}

/** Where each extra field ends: it is present when i_extra_isize covers that. */
const EXTRA_END = Object.fromEntries(EXTRA.map(([n, o, size]) => [n, o + size])) as Record<ExtraName, number>;

/** Decodes the inode of `inodeSize` bytes at `off`. */
export function decodeInode(b: Uint8Array, off: number, inodeSize: number): Inode {
  // Read once per inode on every path walk and check: the table's offsets resolved once (below), plain
  // loads here, no per-call closures.
  const extraIsize = inodeSize > GOOD_OLD_INODE_SIZE ? u16(b, off + D.extraIsize) : 0;
  const end = GOOD_OLD_INODE_SIZE + extraIsize;
  const ex = (at: number, fieldEnd: number) => (extraIsize && fieldEnd <= end ? u32(b, off + at) : undefined);
  const crtime = ex(D.crtime, D.crtimeEnd);
  return {
    mode: u16(b, off + D.mode),
    uid: (u16(b, off + D.uid) | (u16(b, off + D.uidHigh) << 16)) >>> 0,
    gid: (u16(b, off + D.gid) | (u16(b, off + D.gidHigh) << 16)) >>> 0,
    size: join64(u32(b, off + D.sizeLo), u32(b, off + D.sizeHigh)),
    atime: decodeTime(u32(b, off + D.atime), ex(D.atimeExtra, D.atimeExtraEnd)),
    ctime: decodeTime(u32(b, off + D.ctime), ex(D.ctimeExtra, D.ctimeExtraEnd)),
    mtime: decodeTime(u32(b, off + D.mtime), ex(D.mtimeExtra, D.mtimeExtraEnd)),
    crtime: crtime === undefined ? { sec: 0, nsec: 0 } : decodeTime(crtime, ex(D.crtimeExtra, D.crtimeExtraEnd)),
    dtime: u32(b, off + D.dtime),
    linksCount: u16(b, off + D.links),
    blocks: join64(u32(b, off + D.blocksLo), u16(b, off + D.blocksHigh)),
    flags: u32(b, off + D.flags),
    version: u32(b, off + D.version),
    block: b.slice(off + I_BLOCK_OFFSET, off + I_BLOCK_OFFSET + I_BLOCK_SIZE),
    generation: u32(b, off + D.generation),
    fileAcl: join64(u32(b, off + D.fileAclLo), u16(b, off + D.fileAclHigh)),
    extraIsize,
    projid: ex(D.projid, D.projidEnd) ?? 0,
  };
}

/**
 * Encodes `ino` into `inodeSize` bytes at `off` of `b` (which the caller zeroed or holds the old inode,
 * so bytes past the known fields, e.g. in-inode xattrs, are kept). Checksum is not computed here.
 */
export function encodeInode(b: Uint8Array, off: number, inodeSize: number, ino: Inode): void {
  // Written once per inode: direct stores at the table's offsets rather than the generic walker.
  put16(b, off + O.i_mode, ino.mode);
  put16(b, off + O.i_uid, ino.uid & 0xffff);
  put32(b, off + O.i_size_lo, lo32(ino.size));
  // Without its _extra word a time is a signed 32-bit count of seconds: clamped, as the kernel does.
  const x0 = inodeSize > GOOD_OLD_INODE_SIZE ? ino.extraIsize : 0;
  const lo = (t: Timestamp, extra: ExtraName) => (EXTRA_END[extra] <= GOOD_OLD_INODE_SIZE + x0 ? timeLo(t) : time32(t));
  put32(b, off + O.i_atime, lo(ino.atime, 'i_atime_extra'));
  put32(b, off + O.i_ctime, lo(ino.ctime, 'i_ctime_extra'));
  put32(b, off + O.i_mtime, lo(ino.mtime, 'i_mtime_extra'));
  put32(b, off + O.i_dtime, ino.dtime);
  put16(b, off + O.i_gid, ino.gid & 0xffff);
  put16(b, off + O.i_links_count, ino.linksCount);
  put32(b, off + O.i_blocks_lo, lo32(ino.blocks));
  put32(b, off + O.i_flags, ino.flags);
  put32(b, off + O.l_i_version, ino.version);
  put32(b, off + O.i_generation, ino.generation);
  put32(b, off + O.i_file_acl_lo, lo32(ino.fileAcl));
  put32(b, off + O.i_size_high, hi32(ino.size));
  put16(b, off + O.l_i_blocks_high, hi32(ino.blocks) & 0xffff);
  put16(b, off + O.l_i_file_acl_high, hi32(ino.fileAcl) & 0xffff);
  put16(b, off + O.l_i_uid_high, ino.uid >>> 16);
  put16(b, off + O.l_i_gid_high, ino.gid >>> 16);
  // A plain loop: a subarray plus set costs more than 60 byte stores.
  const blk = ino.block;
  for (let k = 0; k < I_BLOCK_SIZE; k++) b[off + I_BLOCK_OFFSET + k] = blk[k] ?? 0;
  if (inodeSize <= GOOD_OLD_INODE_SIZE) return;
  const x = ino.extraIsize;
  put16(b, off + O.i_extra_isize, x);
  // Each extra field is written only when i_extra_isize covers it.
  const fits = (name: ExtraName) => O[name] + 4 <= GOOD_OLD_INODE_SIZE + x;
  if (fits('i_ctime_extra')) put32(b, off + O.i_ctime_extra, timeExtra(ino.ctime));
  if (fits('i_mtime_extra')) put32(b, off + O.i_mtime_extra, timeExtra(ino.mtime));
  if (fits('i_atime_extra')) put32(b, off + O.i_atime_extra, timeExtra(ino.atime));
  if (fits('i_crtime')) put32(b, off + O.i_crtime, fits('i_crtime_extra') ? timeLo(ino.crtime) : time32(ino.crtime));
  if (fits('i_crtime_extra')) put32(b, off + O.i_crtime_extra, timeExtra(ino.crtime));
  if (fits('i_projid')) put32(b, off + O.i_projid, ino.projid);
}

const O = Object.fromEntries([...BASE, ...EXTRA].map(([n, o]) => [n, o])) as Record<
  (typeof BASE)[number][0] | ExtraName,
  number
>;
/** Where each field lies in a record, from the tables above (for reading a field in place). */
export const INODE_FIELD_OFFSETS: Readonly<typeof O> = O;

/** The offsets decodeInode reads, resolved once from the field tables. */
const D = {
  mode: O.i_mode,
  uid: O.i_uid,
  uidHigh: O.l_i_uid_high,
  gid: O.i_gid,
  gidHigh: O.l_i_gid_high,
  sizeLo: O.i_size_lo,
  sizeHigh: O.i_size_high,
  atime: O.i_atime,
  ctime: O.i_ctime,
  mtime: O.i_mtime,
  dtime: O.i_dtime,
  links: O.i_links_count,
  blocksLo: O.i_blocks_lo,
  blocksHigh: O.l_i_blocks_high,
  flags: O.i_flags,
  version: O.l_i_version,
  generation: O.i_generation,
  fileAclLo: O.i_file_acl_lo,
  fileAclHigh: O.l_i_file_acl_high,
  extraIsize: O.i_extra_isize,
  atimeExtra: O.i_atime_extra,
  atimeExtraEnd: EXTRA_END.i_atime_extra,
  ctimeExtra: O.i_ctime_extra,
  ctimeExtraEnd: EXTRA_END.i_ctime_extra,
  mtimeExtra: O.i_mtime_extra,
  mtimeExtraEnd: EXTRA_END.i_mtime_extra,
  crtime: O.i_crtime,
  crtimeEnd: EXTRA_END.i_crtime,
  crtimeExtra: O.i_crtime_extra,
  crtimeExtraEnd: EXTRA_END.i_crtime_extra,
  projid: O.i_projid,
  projidEnd: EXTRA_END.i_projid,
};
const timeLo = (t: Timestamp) => encodeTime(t).lo;
const time32 = (t: Timestamp) => lo32(Math.min(0x7fffffff, Math.max(-0x80000000, Math.floor(t.sec))));
const timeExtra = (t: Timestamp) => encodeTime(t).extra;

/** The checksum seed of one inode: crc32c(crc32c(fs seed, le32 number), le32 generation). */
export function inodeCsumSeed(fsSeed: number, ino: number, generation: number): number {
  return crc32cU32(crc32cU32(fsSeed, ino), generation);
}

/**
 * metadata_csum inode checksum: crc32c over the whole inode (checksum fields as zero), seeded with
 * crc32c(crc32c(fs seed, le32 inode number), le32 generation). Only the low 16 bits are stored unless
 * i_extra_isize covers i_checksum_hi.
 */
export function inodeChecksum(csumSeed: number, inum: number, b: Uint8Array, off: number, inodeSize: number): number {
  const gen = b[off + 0x64]! | (b[off + 0x65]! << 8) | (b[off + 0x66]! << 16) | (b[off + 0x67]! << 24);
  // One pass over the record as stored (it is summed for every inode a check reads), then the checksum
  // fields' bytes taken back out.
  const z = csumFieldChanges(inodeSize);
  let c = crc32c(inodeCsumSeed(csumSeed, inum, gen >>> 0), b, off, off + inodeSize);
  c ^= z[0]![b[off + CSUM_LO]!]! ^ z[1]![b[off + CSUM_LO + 1]!]!;
  if (!hasCsumHi(b, off, inodeSize)) return c & 0xffff;
  c ^= z[2]![b[off + CSUM_HI]!]! ^ z[3]![b[off + CSUM_HI + 1]!]!;
  return c >>> 0;
}

/** Per inode size, the CRC change each byte of i_checksum_lo and i_checksum_hi makes (made once). */
const fieldChanges = new Map<number, Int32Array[]>();
function csumFieldChanges(inodeSize: number): Int32Array[] {
  let z = fieldChanges.get(inodeSize);
  if (!z) {
    const at = inodeSize > CSUM_HI + 1 ? [CSUM_LO, CSUM_LO + 1, CSUM_HI, CSUM_HI + 1] : [CSUM_LO, CSUM_LO + 1];
    z = at.map((pos) => crc32cByteChange(inodeSize, pos));
    fieldChanges.set(inodeSize, z);
  }
  return z;
}

function hasCsumHi(b: Uint8Array, off: number, inodeSize: number): boolean {
  return inodeSize > GOOD_OLD_INODE_SIZE && u16(b, off + 0x80) >= 4;
}

/** Computes and stores the inode checksum in place. */
export function setInodeChecksum(csumSeed: number, inum: number, b: Uint8Array, off: number, inodeSize: number): void {
  const c = inodeChecksum(csumSeed, inum, b, off, inodeSize);
  put16(b, off + CSUM_LO, c & 0xffff);
  if (hasCsumHi(b, off, inodeSize)) put16(b, off + CSUM_HI, c >>> 16);
}

/** Reads the stored checksum (16 or 32 bits) of the inode at `off`. */
export function storedInodeChecksum(b: Uint8Array, off: number, inodeSize: number): number {
  const lo = u16(b, off + CSUM_LO);
  return hasCsumHi(b, off, inodeSize) ? (lo | (u16(b, off + CSUM_HI) << 16)) >>> 0 : lo;
}

/**
 * i_block of a device node: the old 16-bit encoding in the first word when major and minor both fit a
 * byte (kernel: old_valid_dev), else the new 32-bit one in the second word.
 */
export function encodeDeviceNumbers(major: number, minor: number): Uint8Array {
  const b = new Uint8Array(I_BLOCK_SIZE);
  if (major < 256 && minor < 256) put32(b, 0, (major << 8) | minor);
  else put32(b, 4, ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0);
  return b;
}

/** A device node's [major, minor] from its i_block (either encoding). */
export function decodeDeviceNumbers(block: Uint8Array): [number, number] {
  const a = u32(block, 0);
  if (a) return [(a >> 8) & 0xff, a & 0xff];
  const b = u32(block, 4);
  return [(b & 0xfff00) >> 8, (b & 0xff) | ((b >> 12) & 0xfff00)];
}
