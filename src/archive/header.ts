/**
 * Facts of the tar formats (POSIX ustar and pax, GNU), shared by the archive reader and writer: the
 * 512-byte header's fields, the entry types, numeric fields (octal, or base-256 for large values) and
 * the header checksum. Written from POSIX.1-2017 `pax` and the GNU tar manual's description of its format.
 */

/** Archives are made of 512-byte records. */
export const TAR_BLOCK = 512;

/** Offset and length of each ustar header field. */
export const FIELD = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>;

/** GNU header fields that overlay the ustar prefix. */
export const GNU_FIELD = {
  atime: [345, 12],
  ctime: [357, 12],
  /** Four (offset, numbytes) pairs of 12-byte numbers each. */
  sparse: [386, 96],
  isextended: [482, 1],
  realsize: [483, 12],
} as const satisfies Record<string, readonly [number, number]>;

/** A GNU sparse extension header: 21 (offset, numbytes) pairs, then the "more follow" flag at 504. */
export const GNU_SPARSE_EXT_ENTRIES = 21;
export const GNU_SPARSE_EXT_FLAG = 504;

/** Entry types (typeflag). */
export const TYPE = {
  file: 0x30, // '0' ('\0' in old archives, '7' contiguous: both regular files too)
  hardlink: 0x31, // '1'
  symlink: 0x32, // '2'
  chardev: 0x33, // '3'
  blockdev: 0x34, // '4'
  dir: 0x35, // '5'
  fifo: 0x36, // '6'
  contiguous: 0x37, // '7'
  paxExtended: 0x78, // 'x': pax records for the next entry
  paxGlobal: 0x67, // 'g': pax records for every following entry
  gnuLongName: 0x4c, // 'L': the next entry's name
  gnuLongLink: 0x4b, // 'K': the next entry's link name
  gnuSparse: 0x53, // 'S': old GNU sparse file
  gnuDumpDir: 0x44, // 'D': GNU incremental directory (a directory)
  gnuVolume: 0x56, // 'V': volume label
  gnuMultiVolume: 0x4d, // 'M': continuation of a file from the previous volume
} as const;

export const USTAR_MAGIC = 'ustar\0';
export const USTAR_VERSION = '00';
/** Old GNU archives: magic "ustar " followed by version " \0". */
export const GNU_MAGIC = 'ustar ';

/** The header checksum: the byte sum of the header with the checksum field counted as eight spaces. */
export function headerChecksum(h: Uint8Array): number {
  return headerChecksums(h).sum;
}

/**
 * The checksum as it should be (`sum`) and as old tars computed it with signed bytes (`signed`, which
 * readers accept too), in one pass.
 */
export function headerChecksums(h: Uint8Array): { sum: number; signed: number } {
  let sum = 0;
  let signed = 0;
  for (let i = 0; i < TAR_BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : h[i]!;
    sum += b;
    signed += (b << 24) >> 24;
  }
  return { sum, signed };
}

/** Rounds a byte count up to whole records. */
export function padded(n: number): number {
  return Math.ceil(n / TAR_BLOCK) * TAR_BLOCK;
}

// Writing. Numeric fields are octal digits ended by a NUL; what octal cannot hold (sizes of 8 GiB and
// more, ids from 2^21, times before 1970 or after 2242) goes in GNU base-256 in the field and, for pax
// readers, in a pax record (POSIX pax "pax Extended Header"; GNU tar manual, "Numeric Values").

/** The largest value a numeric field holds in octal: its length less one digits, then a NUL. */
export function octalMax(field: readonly [number, number]): number {
  return 8 ** (field[1] - 1) - 1;
}

/** Writes `value` (0 <= value <= octalMax) as zero-padded octal digits followed by a NUL. */
export function encodeOctal(h: Uint8Array, field: readonly [number, number], value: number): void {
  const [off, len] = field;
  if (!Number.isSafeInteger(value) || value < 0 || value > octalMax(field))
    throw new RangeError(`${value} does not fit a ${len}-byte octal field`);
  const digits = value.toString(8).padStart(len - 1, '0');
  for (let k = 0; k < len - 1; k++) h[off + k] = digits.charCodeAt(k);
  h[off + len - 1] = 0;
}

/**
 * GNU base-256: a leading byte 0x80 then the value big-endian in the other bytes, or for a negative
 * value the whole field in two's complement (leading byte 0xff).
 */
export function encodeBase256(h: Uint8Array, field: readonly [number, number], value: number | bigint): void {
  const [off, len] = field;
  let v = BigInt(value);
  const limit = 1n << BigInt(8 * (len - 1));
  if (v >= limit || v < -limit) throw new RangeError(`${value} does not fit a ${len}-byte base-256 field`);
  if (v < 0n) v += 1n << BigInt(8 * len);
  for (let k = len - 1; k >= 1; k--) {
    h[off + k] = Number(v & 0xffn);
    v >>= 8n;
  }
  h[off] = value < 0 ? 0xff : 0x80;
}

/** Octal when the value fits, base-256 otherwise; returns false in that case (a pax record must carry it). */
export function encodeNumber(h: Uint8Array, field: readonly [number, number], value: number): boolean {
  if (value >= 0 && value <= octalMax(field)) {
    encodeOctal(h, field, value);
    return true;
  }
  encodeBase256(h, field, value);
  return false;
}

/** Copies `bytes` into a string field, cut to its length; the rest of the field stays NUL. */
export function encodeBytes(h: Uint8Array, field: readonly [number, number], bytes: Uint8Array): void {
  h.set(bytes.subarray(0, field[1]), field[0]);
}

/** Fills the checksum field of a finished header: six octal digits, a NUL and a space. */
export function setHeaderChecksum(h: Uint8Array): void {
  const [off] = FIELD.chksum;
  const digits = headerChecksum(h).toString(8).padStart(6, '0');
  for (let k = 0; k < 6; k++) h[off + k] = digits.charCodeAt(k);
  h[off + 6] = 0;
  h[off + 7] = 0x20;
}

/** pax keywords: POSIX ones, GNU sparse format 1.0, and star's (also GNU tar's) ACLs and xattrs. */
export const PAX = {
  path: 'path',
  linkpath: 'linkpath',
  size: 'size',
  uid: 'uid',
  gid: 'gid',
  mtime: 'mtime',
  atime: 'atime',
  ctime: 'ctime',
  sparseMajor: 'GNU.sparse.major',
  sparseMinor: 'GNU.sparse.minor',
  /** The real name of a sparse file (the header's name is a placeholder). */
  sparseName: 'GNU.sparse.name',
  /** The real size of a sparse file (the member holds the map and the data segments only). */
  sparseRealSize: 'GNU.sparse.realsize',
  /** POSIX.1e ACLs as text, one entry a line (what `acl_to_text` gives). */
  aclAccess: 'SCHILY.acl.access',
  aclDefault: 'SCHILY.acl.default',
  /** Followed by the attribute's full name (`user.x`, `security.capability`); the value is raw bytes. */
  xattrPrefix: 'SCHILY.xattr.',
} as const;

/**
 * One pax record, `LENGTH KEYWORD=VALUE\n`: LENGTH is decimal and counts the whole record, its own
 * digits included. Values are bytes (names and attribute values may be any bytes).
 */
export function paxRecord(keyword: string, value: Uint8Array | string): Buffer {
  const body = Buffer.concat([Buffer.from(` ${keyword}=`, 'utf8'), Buffer.from(value), Buffer.from('\n')]);
  let digits = 1;
  while (String(body.length + digits).length > digits) digits++;
  return Buffer.concat([Buffer.from(String(body.length + digits), 'ascii'), body]);
}

/**
 * A time as a pax value: decimal seconds with up to nine fraction digits (trailing zeros dropped). A
 * time before 1970 is the negative number it is: { sec: -2, nsec: 250000000 } is "-1.75".
 */
export function paxTime(t: { sec: number; nsec: number }): string {
  const nsec = Math.min(Math.max(0, Math.floor(t.nsec)), 999_999_999);
  if (nsec === 0) return String(t.sec);
  const negative = t.sec < 0;
  const whole = negative ? -(t.sec + 1) : t.sec;
  const frac = String(negative ? 1_000_000_000 - nsec : nsec)
    .padStart(9, '0')
    .replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}.${frac}`;
}

/** The pax keyword of an extended attribute: '%' and '=' (which would end the keyword) percent-encoded. */
export function xattrKeyword(name: string): string {
  return PAX.xattrPrefix + name.replace(/%/g, '%25').replace(/=/g, '%3D');
}

/**
 * The attribute name in a `SCHILY.xattr.` keyword (the part after the prefix): `%25` and `%3D` decoded
 * back to '%' and '=', in one pass (GNU tar decodes those two and leaves any other '%' as it is).
 */
export function xattrNameOfKeyword(rest: string): string {
  return rest.replace(/%(?:25|3D)/g, (m) => (m === '%25' ? '%' : '='));
}
