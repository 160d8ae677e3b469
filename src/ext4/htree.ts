/**
 * Hash-indexed directories (kernel doc: directory.rst, "Hash Tree Directories") and the half-MD4
 * directory hash. Entries are sorted by hash into leaf blocks; the dx_root (logical block 0) indexes the
 * leaves, through one level of dx_node blocks when there are more leaves than the root can hold.
 */
import { put16, put32, u32 } from './bytes.js';
import { crc32c } from './crc32c.js';
import { Ext4Error } from './errors.js';
import { packDirBlocks, encodeDirent, direntSize, DIR_TAIL_SIZE, FT_DIR, type DirEntry } from './dirent.js';
import { HASH_HALF_MD4 } from './superblock.js';

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

/** half_md4 directory hash of `name` with the superblock's 16-byte seed (all zero: the default seed). */
export function halfMd4Hash(name: Uint8Array, seed: Uint8Array, signed = true): DirHash {
  const buf = [0, 0, 0, 0];
  let zero = true;
  for (let i = 0; i < 4; i++) {
    buf[i] = u32(seed, i * 4);
    if (buf[i]) zero = false;
  }
  if (zero) DEFAULT_SEED.forEach((v, i) => (buf[i] = v));
  const inp = new Uint32Array(8);
  let len = name.length;
  let p = 0;
  do {
    str2hashbuf(name, p, len, inp, 8, signed);
    halfMd4Transform(buf, inp);
    len -= 32;
    p += 32;
  } while (len > 0);
  let hash = buf[1]! & ~1;
  // 0xfffffffe is reserved as the end-of-directory marker for 32-bit readdir cookies.
  if (hash >>> 0 === 0xfffffffe) hash = 0xfffffffc;
  return { hash: hash >>> 0, minor: buf[2]! };
}

export interface HtreeInput {
  dirIno: number;
  parentIno: number;
  entries: readonly DirEntry[];
  blockSize: number;
  /** The directory inode's checksum seed (metadata_csum). */
  inodeSeed: number;
  hashSeed: Uint8Array;
}

const DX_ROOT_COUNT_OFFSET = 32;
const DX_NODE_COUNT_OFFSET = 8;

const ZERO4 = new Uint8Array(4);

/** Stores the dx_tail checksum after `limit` entries: crc32c(inode seed, header and used entries, the tail with its checksum as zero). */
function setDxTail(b: Uint8Array, countOffset: number, limit: number, count: number, inodeSeed: number): void {
  const tail = countOffset + limit * 8;
  put32(b, tail, 0);
  let c = crc32c(inodeSeed, b, 0, countOffset + count * 8);
  c = crc32c(c, b, tail, tail + 4);
  c = crc32c(c, ZERO4, 0, 4);
  put32(b, tail + 4, c);
}

/** Writes a dx entry array: count/limit then the first block, then (hash, block) pairs. */
function putDxEntries(
  b: Uint8Array,
  countOffset: number,
  limit: number,
  items: { hash: number; block: number }[],
): void {
  put16(b, countOffset, limit);
  put16(b, countOffset + 2, items.length);
  put32(b, countOffset + 4, items[0]!.block);
  for (let i = 1; i < items.length; i++) {
    put32(b, countOffset + i * 8, items[i]!.hash);
    put32(b, countOffset + i * 8 + 4, items[i]!.block);
  }
}

/**
 * Builds the blocks of an indexed directory in logical order: dx_root, then dx_nodes (two-level trees),
 * then the leaves. Entries are packed into leaves in hash order; a hash value never straddles two
 * leaves unless one hash fills more than a block, in which case the next leaf's index entry carries
 * the collision bit.
 */
export function buildHtree(inp: HtreeInput): Uint8Array[] {
  const bs = inp.blockSize;
  // The writer only makes metadata_csum file systems: every index block keeps room for its dx_tail.
  const withCsum = true;
  const hashed = inp.entries.map((e) => ({ e, h: halfMd4Hash(e.name, inp.hashSeed) }));
  hashed.sort((a, b) => a.h.hash - b.h.hash || a.h.minor - b.h.minor);
  const usable = bs - DIR_TAIL_SIZE;
  // Pack leaves.
  const leaves: { first: number; items: DirEntry[]; continued: boolean }[] = [];
  let cur: DirEntry[] = [];
  let used = 0;
  let curFirst = 0;
  let continued = false;
  for (let i = 0; i < hashed.length; i++) {
    const { e, h } = hashed[i]!;
    const size = direntSize(e.name.length);
    if (cur.length && used + size > usable) {
      // Move trailing entries that share this hash into the next leaf, when that leaves something behind.
      let k = cur.length;
      while (k > 0 && hashed[i - (cur.length - k) - 1]!.h.hash === h.hash) k--;
      let carry: DirEntry[] = [];
      let nextContinued = false;
      if (k > 0 && k < cur.length) {
        carry = cur.slice(k);
        cur = cur.slice(0, k);
      } else if (k === 0) nextContinued = true;
      leaves.push({ first: curFirst, items: cur, continued });
      cur = carry;
      used = carry.reduce((a, c) => a + direntSize(c.name.length), 0);
      curFirst = h.hash;
      continued = nextContinued;
    }
    if (!cur.length) curFirst = h.hash;
    cur.push(e);
    used += size;
  }
  if (cur.length || !leaves.length) leaves.push({ first: curFirst, items: cur, continued });

  const rootLimit = (bs - DX_ROOT_COUNT_OFFSET) / 8 - (withCsum ? 1 : 0);
  const nodeLimit = (bs - DX_NODE_COUNT_OFFSET) / 8 - (withCsum ? 1 : 0);
  const levels = leaves.length <= rootLimit ? 0 : 1;
  const nodeCount = levels ? Math.ceil(leaves.length / nodeLimit) : 0;
  if (nodeCount > rootLimit)
    throw new Ext4Error(
      'TOO_LARGE',
      `directory ${inp.dirIno} needs ${leaves.length} leaf blocks, more than a two-level htree holds (large_dir is not enabled)`,
    );
  const firstLeaf = 1 + nodeCount;
  const leafItems = leaves.map((lf, i) => ({
    hash: i === 0 ? 0 : (lf.first | (lf.continued ? 1 : 0)) >>> 0,
    block: firstLeaf + i,
  }));

  const root = new Uint8Array(bs);
  encodeDirent(root, 0, { inode: inp.dirIno, name: new Uint8Array([0x2e]), fileType: FT_DIR }, 12);
  encodeDirent(root, 12, { inode: inp.parentIno, name: new Uint8Array([0x2e, 0x2e]), fileType: FT_DIR }, bs - 12);
  // dx_root_info: reserved, hash version, info length 8, indirect levels, flags.
  put32(root, 24, 0);
  root[28] = HASH_HALF_MD4;
  root[29] = 8;
  root[30] = levels;
  root[31] = 0;
  const out: Uint8Array[] = [root];
  if (!levels) {
    putDxEntries(root, DX_ROOT_COUNT_OFFSET, rootLimit, leafItems);
    if (withCsum) setDxTail(root, DX_ROOT_COUNT_OFFSET, rootLimit, leafItems.length, inp.inodeSeed);
  } else {
    const rootItems: { hash: number; block: number }[] = [];
    for (let n = 0; n < nodeCount; n++) {
      const items = leafItems.slice(n * nodeLimit, (n + 1) * nodeLimit);
      const node = new Uint8Array(bs);
      // A dx_node starts with an empty entry spanning the block, so linear readers skip it.
      put32(node, 0, 0);
      put16(node, 4, bs === 65536 ? 0xffff : bs);
      const nodeItems = items.map((it, k) => ({ hash: k === 0 ? 0 : it.hash, block: it.block }));
      putDxEntries(node, DX_NODE_COUNT_OFFSET, nodeLimit, nodeItems);
      if (withCsum) setDxTail(node, DX_NODE_COUNT_OFFSET, nodeLimit, nodeItems.length, inp.inodeSeed);
      out.push(node);
      rootItems.push({ hash: n === 0 ? 0 : items[0]!.hash, block: 1 + n });
    }
    putDxEntries(root, DX_ROOT_COUNT_OFFSET, rootLimit, rootItems);
    if (withCsum) setDxTail(root, DX_ROOT_COUNT_OFFSET, rootLimit, rootItems.length, inp.inodeSeed);
  }
  for (const lf of leaves) out.push(packDirBlocks(lf.items, bs, inp.inodeSeed)[0]!);
  return out;
}
