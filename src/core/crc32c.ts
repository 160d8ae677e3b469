/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), slicing-by-16 over aligned 32-bit words.
 *
 * ext4 and jbd2 use the raw register form: the caller passes the running value (ext4 starts from ~0 or
 * from the filesystem's checksum seed) and no final inversion is applied (kernel doc: checksums.rst).
 * The standard CRC-32C of a message is therefore `~crc32c(~0, msg)`.
 *
 * Speed matters: `check` sums every inode in use, directory block and bitmap it reads. Table k holds
 * the register change of a byte followed by k zero bytes, so 16 bytes are folded with 16 lookups and no
 * dependency between them; the bytes are loaded as little-endian words through an Int32Array view,
 * which V8 compiles to plain loads (byte loads cost one bounds check each).
 */

/** 16 tables of 256 entries, table k at [k * 256, k * 256 + 256). */
const T = (() => {
  const t = new Int32Array(16 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c;
  }
  for (let s = 1; s < 16; s++)
    for (let i = 0; i < 256; i++) {
      const prev = t[(s - 1) * 256 + i]!;
      t[s * 256 + i] = (prev >>> 8) ^ t[prev & 0xff]!;
    }
  return t;
})();

/** Words are read in the platform's byte order: only a little-endian one gives the bytes' order. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * A word view of the last buffer summed: checksums come in runs over one buffer (the records of one
 * inode table read, the blocks of one read), and a new view per call would cost as much as a short sum.
 * It keeps that one buffer alive until another is summed.
 */
let viewOf: ArrayBufferLike | undefined;
let view: Int32Array<ArrayBufferLike> = new Int32Array(0);

function wordsOf(buf: ArrayBufferLike, endWord: number): Int32Array {
  if (buf !== viewOf || endWord > view.length) {
    view = new Int32Array(buf, 0, buf.byteLength >>> 2);
    viewOf = buf;
  }
  return view;
}

/** Folds the 4 bytes of the little-endian word `w` into register `c`. */
function fold4(c: number, w: number): number {
  const a = c ^ w;
  return T[768 + (a & 0xff)]! ^ T[512 + ((a >>> 8) & 0xff)]! ^ T[256 + ((a >>> 16) & 0xff)]! ^ T[a >>> 24]!;
}

/**
 * Zero bytes cost no table walk: the register change over n zero bytes is linear in the register, so
 * for each power of two 2^k (up to 64 KiB) it is kept as four 256-entry tables (the images of each
 * register byte), and a run of n zeros is the product of the powers n is made of: at most 17 steps of
 * four lookups, where the sliced loop spends n / 16 steps of sixteen. Metadata blocks are mostly zeros
 * (bitmaps of empty groups, the resize inode's lists, sparse directory and table blocks), and every one
 * a journal commit logs is summed whole.
 */
const ZERO_POWERS = 17;
/** Built on first use (about 2.5 ms): a command that never sums a zero run (`info`, `ls`) does not pay. */
let Z: Int32Array | undefined;
const buildZeroTables = (): Int32Array => {
  const z = new Int32Array(ZERO_POWERS * 1024);
  // One zero byte: the register shifted through the table.
  const cols = new Int32Array(32);
  for (let b = 0; b < 32; b++) {
    const c = 1 << b;
    cols[b] = (c >>> 8) ^ T[c & 0xff]!;
  }
  const fill = (k: number) => {
    for (let q = 0; q < 4; q++)
      for (let v = 1; v < 256; v++) {
        const low = v & -v;
        z[k * 1024 + q * 256 + v] = z[k * 1024 + q * 256 + (v ^ low)]! ^ cols[q * 8 + 31 - Math.clz32(low)]!;
      }
  };
  fill(0);
  for (let k = 1; k < ZERO_POWERS; k++) {
    // 2^k zero bytes: the 2^(k-1) operator applied twice, column by column.
    for (let b = 0; b < 32; b++) cols[b] = zeroStep(z, k - 1, zeroStep(z, k - 1, 1 << b));
    fill(k);
  }
  return z;
};

function zeroStep(z: Int32Array, k: number, c: number): number {
  const o = k * 1024;
  return (
    z[o + (c & 0xff)]! ^ z[o + 256 + ((c >>> 8) & 0xff)]! ^ z[o + 512 + ((c >>> 16) & 0xff)]! ^ z[o + 768 + (c >>> 24)]!
  );
}

/**
 * The operator of a run length asked for many times in a row, as four byte tables: a grow's journal
 * commit sums a thousand resize-inode lists whose zero tails are all one length, each then four lookups
 * instead of a dozen steps. Built only after a streak (it costs about 400 steps), so sums of varied
 * lengths (check) never pay for it.
 */
const ZEROS_STREAK = 32;
let lastZerosLength = -1;
let zerosStreak = 0;
let lastZerosOp: Int32Array | undefined;

/** Continues a raw CRC32C over `n` zero bytes from register value `crc`. */
export function crc32cZeros(crc: number, n: number): number {
  if (n !== lastZerosLength) {
    lastZerosLength = n;
    zerosStreak = 0;
    lastZerosOp = undefined;
  } else if (++zerosStreak >= ZEROS_STREAK) {
    lastZerosOp ??= zerosOperator(n);
    return zeroStep(lastZerosOp, 0, crc | 0) >>> 0;
  }
  return zerosBySteps(crc, n);
}

/** The register change over `n` zero bytes as four 256-entry tables (the images of each register byte). */
function zerosOperator(n: number): Int32Array {
  const op = new Int32Array(1024);
  for (let q = 0; q < 4; q++)
    for (let bit = 0; bit < 8; bit++) op[q * 256 + (1 << bit)] = zerosBySteps(1 << (q * 8 + bit), n) | 0;
  // Each byte's image is the XOR of its bits' images (the operator is linear).
  for (let q = 0; q < 4; q++)
    for (let v = 3; v < 256; v++)
      if (v & (v - 1)) op[q * 256 + v] = op[q * 256 + (v & -v)]! ^ op[q * 256 + (v & (v - 1))]!;
  return op;
}

function zerosBySteps(crc: number, n: number): number {
  let c = crc | 0;
  const z = (Z ??= buildZeroTables());
  const top = ZERO_POWERS - 1;
  for (; n >= 1 << top; n -= 1 << top) c = zeroStep(z, top, c);
  for (let k = top - 1; k >= 0; k--) if (n & (1 << k)) c = zeroStep(z, k, c);
  return c >>> 0;
}

/** Runs of zeros shorter than this at the end of a sum go through the sliced loop like any bytes. */
const ZERO_TAIL_MIN = 64;

/** Continues a raw CRC32C over `data[start, end)` from register value `crc`. */
export function crc32c(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  if (end - start >= ZERO_TAIL_MIN && data[end - 1] === 0) {
    const z = zeroTailStart(data, start, end);
    if (end - z >= ZERO_TAIL_MIN) return crc32cZeros(sliced(crc, data, start, z), end - z);
  }
  return sliced(crc, data, start, end);
}

/** Where the run of zero bytes that ends `data[start, end)` starts (word by word where aligned). */
function zeroTailStart(data: Uint8Array, start: number, end: number): number {
  const base = data.byteOffset;
  let z = end;
  while (z > start && (base + z) & 3 && data[z - 1] === 0) z--;
  if (!((base + z) & 3)) {
    const lo = (base + start + 3) >>> 2;
    let j = (base + z) >>> 2;
    const w = wordsOf(data.buffer, j);
    while (j - 4 >= lo && (w[j - 1]! | w[j - 2]! | w[j - 3]! | w[j - 4]!) === 0) j -= 4;
    while (j > lo && w[j - 1] === 0) j--;
    z = j * 4 - base;
  }
  while (z > start && data[z - 1] === 0) z--;
  return z;
}

function sliced(crc: number, data: Uint8Array, start: number, end: number): number {
  let c = crc | 0;
  let i = start;
  const base = data.byteOffset;
  // Bytes up to a word boundary of the underlying buffer.
  while (i < end && (base + i) & 3) c = (c >>> 8) ^ T[(c ^ data[i++]!) & 0xff]!;
  if (end - i >= 4 && LITTLE_ENDIAN) {
    let j = (base + i) >>> 2;
    const stop = (base + end) >>> 2;
    const w = wordsOf(data.buffer, stop);
    for (; j + 4 <= stop; j += 4) {
      const a = c ^ w[j]!;
      const b = w[j + 1]!;
      const d = w[j + 2]!;
      const e = w[j + 3]!;
      c =
        T[3840 + (a & 0xff)]! ^
        T[3584 + ((a >>> 8) & 0xff)]! ^
        T[3328 + ((a >>> 16) & 0xff)]! ^
        T[3072 + (a >>> 24)]! ^
        T[2816 + (b & 0xff)]! ^
        T[2560 + ((b >>> 8) & 0xff)]! ^
        T[2304 + ((b >>> 16) & 0xff)]! ^
        T[2048 + (b >>> 24)]! ^
        T[1792 + (d & 0xff)]! ^
        T[1536 + ((d >>> 8) & 0xff)]! ^
        T[1280 + ((d >>> 16) & 0xff)]! ^
        T[1024 + (d >>> 24)]! ^
        T[768 + (e & 0xff)]! ^
        T[512 + ((e >>> 8) & 0xff)]! ^
        T[256 + ((e >>> 16) & 0xff)]! ^
        T[e >>> 24]!;
    }
    for (; j < stop; j++) c = fold4(c, w[j]!);
    i = j * 4 - base;
  }
  while (i < end) c = (c >>> 8) ^ T[(c ^ data[i++]!) & 0xff]!;
  return c >>> 0;
}

/** Continues a raw CRC32C over the 4 little-endian bytes of `v` (inode numbers, group numbers). */
export function crc32cU32(crc: number, v: number): number {
  return fold4(crc | 0, v | 0) >>> 0;
}

/**
 * What XORing v into the byte at `pos` of a `length`-byte message does to its CRC32C, for every v: a
 * CRC is linear, so the change depends neither on the rest of the message nor on the starting value.
 * A checksum over a record whose checksum field counts as zero is then one pass over the record as
 * stored, the field's bytes taken back out by lookup.
 */
export function crc32cByteChange(length: number, pos: number): Int32Array {
  const t = new Int32Array(256);
  // The byte's effect from a zero register, carried through the zero bytes after it; the table of
  // single bits first, the rest by XOR.
  for (let bit = 0; bit < 8; bit++) {
    let c = T[1 << bit]!;
    for (let k = pos + 1; k < length; k++) c = (c >>> 8) ^ T[c & 0xff]!;
    t[1 << bit] = c;
  }
  for (let v = 3; v < 256; v++) if (v & (v - 1)) t[v] = t[v & -v]! ^ t[v & (v - 1)]!;
  return t;
}

/** crc32c over a little-endian 64-bit value (a block number), without allocating. */
export function crc32cU64(crc: number, v: number): number {
  return crc32cU32(crc32cU32(crc, v % 0x1_0000_0000), Math.floor(v / 0x1_0000_0000));
}
