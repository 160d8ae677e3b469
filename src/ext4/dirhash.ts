/**
 * Directory hashes of hash-indexed directories (kernel doc: directory.rst, "dirhash"): legacy, half-MD4
 * and TEA, each in a signed and an unsigned variant (how name bytes above 127 are taken), seeded with the
 * superblock's s_hash_seed.
 */
import { u32 } from '../core/bytes.js';
import { Ext4Error } from '../core/errors.js';

/** dx_root hash_version values; the unsigned variants are the signed ones + 3. */
export const DX_HASH_LEGACY = 0;
export const DX_HASH_HALF_MD4 = 1;
export const DX_HASH_TEA = 2;
export const DX_HASH_UNSIGNED_DELTA = 3;

const DEFAULT_SEED = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

function rol(x: number, s: number): number {
  return ((x << s) | (x >>> (32 - s))) >>> 0;
}

/** The half-MD4 compression used by ext3/4 directory hashing (three rounds over eight 32-bit words). */
function halfMd4Transform(buf: number[], inp: Uint32Array): void {
  let a = buf[0]!;
  let b = buf[1]!;
  let c = buf[2]!;
  let d = buf[3]!;
  const F = (x: number, y: number, z: number) => (z ^ (x & (y ^ z))) >>> 0;
  const G = (x: number, y: number, z: number) => ((x & y) + ((x ^ y) & z)) >>> 0;
  const H = (x: number, y: number, z: number) => (x ^ y ^ z) >>> 0;
  const K2 = 0x5a827999;
  const K3 = 0x6ed9eba1;
  const x = (i: number) => inp[i]!;
  // Round 1
  a = rol((a + F(b, c, d) + x(0)) >>> 0, 3);
  d = rol((d + F(a, b, c) + x(1)) >>> 0, 7);
  c = rol((c + F(d, a, b) + x(2)) >>> 0, 11);
  b = rol((b + F(c, d, a) + x(3)) >>> 0, 19);
  a = rol((a + F(b, c, d) + x(4)) >>> 0, 3);
  d = rol((d + F(a, b, c) + x(5)) >>> 0, 7);
  c = rol((c + F(d, a, b) + x(6)) >>> 0, 11);
  b = rol((b + F(c, d, a) + x(7)) >>> 0, 19);
  // Round 2
  a = rol((a + G(b, c, d) + x(1) + K2) >>> 0, 3);
  d = rol((d + G(a, b, c) + x(3) + K2) >>> 0, 5);
  c = rol((c + G(d, a, b) + x(5) + K2) >>> 0, 9);
  b = rol((b + G(c, d, a) + x(7) + K2) >>> 0, 13);
  a = rol((a + G(b, c, d) + x(0) + K2) >>> 0, 3);
  d = rol((d + G(a, b, c) + x(2) + K2) >>> 0, 5);
  c = rol((c + G(d, a, b) + x(4) + K2) >>> 0, 9);
  b = rol((b + G(c, d, a) + x(6) + K2) >>> 0, 13);
  // Round 3
  a = rol((a + H(b, c, d) + x(3) + K3) >>> 0, 3);
  d = rol((d + H(a, b, c) + x(7) + K3) >>> 0, 9);
  c = rol((c + H(d, a, b) + x(2) + K3) >>> 0, 11);
  b = rol((b + H(c, d, a) + x(6) + K3) >>> 0, 15);
  a = rol((a + H(b, c, d) + x(1) + K3) >>> 0, 3);
  d = rol((d + H(a, b, c) + x(5) + K3) >>> 0, 9);
  c = rol((c + H(d, a, b) + x(0) + K3) >>> 0, 11);
  b = rol((b + H(c, d, a) + x(4) + K3) >>> 0, 15);
  buf[0] = (buf[0]! + a) >>> 0;
  buf[1] = (buf[1]! + b) >>> 0;
  buf[2] = (buf[2]! + c) >>> 0;
  buf[3] = (buf[3]! + d) >>> 0;
}

/**
 * Packs up to num*4 name bytes into `out` as big-endian-ish words, padded with a value derived from the
 * length; `signed` treats bytes as signed chars (the "signed" hash variants).
 */
function str2hashbuf(msg: Uint8Array, off: number, len: number, out: Uint32Array, num: number, signed: boolean): void {
  let pad = (len | (len << 8)) >>> 0;
  pad = (pad | (pad << 16)) >>> 0;
  let val = pad;
  let o = 0;
  if (len > num * 4) len = num * 4;
  for (let i = 0; i < len; i++) {
    const c = msg[off + i]!;
    const ch = signed && c > 127 ? c - 256 : c;
    val = (ch + ((val << 8) >>> 0)) >>> 0;
    if (i % 4 === 3) {
      out[o++] = val;
      val = pad;
      num--;
    }
  }
  if (--num >= 0) out[o++] = val;
  while (--num >= 0) out[o++] = pad;
}

export interface DirHash {
  hash: number;
  minor: number;
}

/** The TEA block cipher's mixing (16 rounds) over two words of state and four of input. */
function teaTransform(buf: number[], inp: Uint32Array): void {
  let sum = 0;
  let b0 = buf[0]!;
  let b1 = buf[1]!;
  const a = inp[0]!;
  const b = inp[1]!;
  const c = inp[2]!;
  const d = inp[3]!;
  for (let n = 0; n < 16; n++) {
    sum = (sum + 0x9e3779b9) >>> 0;
    b0 = (b0 + ((((b1 << 4) >>> 0) + a) ^ (b1 + sum) ^ ((b1 >>> 5) + b))) >>> 0;
    b1 = (b1 + ((((b0 << 4) >>> 0) + c) ^ (b0 + sum) ^ ((b0 >>> 5) + d))) >>> 0;
  }
  buf[0] = (buf[0]! + b0) >>> 0;
  buf[1] = (buf[1]! + b1) >>> 0;
}

/** The original ext3 hash: each byte mixed into two running words. */
function legacyHash(name: Uint8Array, signed: boolean): number {
  let h0 = 0x12a3fe2d;
  let h1 = 0x37abe8f9;
  for (const byte of name) {
    const c = signed && byte > 127 ? byte - 256 : byte;
    let h = (h1 + ((h0 ^ Math.imul(c, 7152373)) >>> 0)) >>> 0;
    if (h & 0x80000000) h = (h - 0x7fffffff) >>> 0;
    h1 = h0;
    h0 = h;
  }
  return (h0 << 1) >>> 0;
}

/**
 * The hash of `name` under dx hash version `version` (0-5) with the 16-byte seed (all zero: the
 * default seed). The low bit is always clear: index entries use it to mark hash collisions that
 * continue in the next leaf.
 */
export function dirHash(name: Uint8Array, version: number, seed: Uint8Array): DirHash {
  const buf = [0, 0, 0, 0];
  let zero = true;
  for (let i = 0; i < 4; i++) {
    buf[i] = u32(seed, i * 4);
    if (buf[i]) zero = false;
  }
  if (zero) DEFAULT_SEED.forEach((v, i) => (buf[i] = v));
  const signed = version < DX_HASH_UNSIGNED_DELTA;
  const base = signed ? version : version - DX_HASH_UNSIGNED_DELTA;
  let hash: number;
  let minor = 0;
  if (base === DX_HASH_LEGACY) hash = legacyHash(name, signed);
  else if (base === DX_HASH_HALF_MD4 || base === DX_HASH_TEA) {
    const md4 = base === DX_HASH_HALF_MD4;
    const words = md4 ? 8 : 4;
    const inp = new Uint32Array(words);
    let len = name.length;
    let p = 0;
    do {
      str2hashbuf(name, p, len, inp, words, signed);
      if (md4) halfMd4Transform(buf, inp);
      else teaTransform(buf, inp);
      len -= words * 4;
      p += words * 4;
    } while (len > 0);
    hash = md4 ? buf[1]! : buf[0]!;
    minor = md4 ? buf[2]! : buf[1]!;
  } else throw new Ext4Error('UNSUPPORTED_FEATURE', `directory hash version ${version} is not supported`);
  hash = (hash & ~1) >>> 0;
  // 0xfffffffe is reserved as the end-of-directory marker for 32-bit readdir cookies.
  if (hash === 0xfffffffe) hash = 0xfffffffc;
  return { hash, minor: minor >>> 0 };
}

/** half_md4 directory hash of `name` with the superblock's 16-byte seed (all zero: the default seed). */
export function halfMd4Hash(name: Uint8Array, seed: Uint8Array, signed = true): DirHash {
  return dirHash(name, signed ? DX_HASH_HALF_MD4 : DX_HASH_HALF_MD4 + DX_HASH_UNSIGNED_DELTA, seed);
}
