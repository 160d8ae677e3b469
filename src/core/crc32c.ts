/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), slicing-by-8.
 *
 * ext4 and jbd2 use the raw register form: the caller passes the running value (ext4 starts from ~0 or
 * from the filesystem's checksum seed) and no final inversion is applied (kernel doc: checksums.rst).
 * The standard CRC-32C of a message is therefore `~crc32c(~0, msg)`.
 */

const TABLES: Uint32Array[] = (() => {
  const t: Uint32Array[] = [];
  const t0 = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t0[i] = c >>> 0;
  }
  t.push(t0);
  for (let s = 1; s < 8; s++) {
    const prev = t[s - 1]!;
    const cur = new Uint32Array(256);
    for (let i = 0; i < 256; i++) cur[i] = (prev[i]! >>> 8) ^ t0[prev[i]! & 0xff]!;
    t.push(cur);
  }
  return t;
})();
const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES as [
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
];

/** Continues a raw CRC32C over `data[start, end)` from register value `crc`. */
export function crc32c(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  let c = crc >>> 0;
  let i = start;
  while (i + 8 <= end) {
    const a = c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
    c =
      T7[a & 0xff]! ^
      T6[(a >>> 8) & 0xff]! ^
      T5[(a >>> 16) & 0xff]! ^
      T4[a >>> 24]! ^
      T3[data[i + 4]!]! ^
      T2[data[i + 5]!]! ^
      T1[data[i + 6]!]! ^
      T0[data[i + 7]!]!;
    i += 8;
  }
  while (i < end) c = (c >>> 8) ^ T0[(c ^ data[i++]!) & 0xff]!;
  return c >>> 0;
}

const scratch = new Uint8Array(4);
/** Continues a raw CRC32C over the 4 little-endian bytes of `v` (inode numbers, group numbers). */
export function crc32cU32(crc: number, v: number): number {
  scratch[0] = v & 0xff;
  scratch[1] = (v >>> 8) & 0xff;
  scratch[2] = (v >>> 16) & 0xff;
  scratch[3] = (v >>> 24) & 0xff;
  return crc32c(crc, scratch, 0, 4);
}

/** crc32c over a little-endian 64-bit value (a block number), without allocating. */
export function crc32cU64(crc: number, v: number): number {
  return crc32cU32(crc32cU32(crc, v % 0x1_0000_0000), Math.floor(v / 0x1_0000_0000));
}
