/**
 * Bit counting and comparison over bitmaps (bit i is bit i & 7 of byte i >> 3), 32 bits at a time where
 * the bytes allow: pass 5 counts and compares a block and an inode bitmap for every group.
 */

/** Words are read in the platform's byte order: only a little-endian one puts bit i at bit i & 31. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Set bits in a 32-bit value. */
export function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** The lowest set bit of a nonzero 32-bit value. */
export const lowestBit = (x: number): number => 31 - Math.clz32(x & -x);

/** A word view of the first `n` bits' whole words, when the bytes are word-aligned (else undefined). */
function words(b: Uint8Array, n: number): Int32Array | undefined {
  if (!LITTLE_ENDIAN || b.byteOffset & 3 || n < 64 || (n >>> 5) * 4 > b.length) return undefined;
  return new Int32Array(b.buffer, b.byteOffset, n >>> 5);
}

const testBit = (b: Uint8Array, i: number): boolean => (b[i >>> 3]! & (1 << (i & 7))) !== 0;

/** Set bits in [0, n). */
export function countSet(b: Uint8Array, n: number): number {
  let count = 0;
  let i = 0;
  const w = words(b, n);
  if (w) {
    for (let k = 0; k < w.length; k++) count += popcount(w[k]!);
    i = w.length * 32;
  }
  for (; i + 8 <= n; i += 8) count += popcount(b[i >>> 3]!);
  for (; i < n; i++) if (testBit(b, i)) count++;
  return count;
}

/** Bits of [0, n) where `a` and `b` differ: how many, and the first (-1: none). */
export function differences(a: Uint8Array, b: Uint8Array, n: number): { count: number; first: number } {
  let count = 0;
  let first = -1;
  let i = 0;
  const wa = words(a, n);
  const wb = wa && words(b, n);
  if (wa && wb) {
    for (let k = 0; k < wa.length; k++) {
      const x = wa[k]! ^ wb[k]!;
      if (!x) continue;
      if (first < 0) first = k * 32 + lowestBit(x);
      count += popcount(x);
    }
    i = wa.length * 32;
  }
  for (; i + 8 <= n; i += 8) {
    const x = a[i >>> 3]! ^ b[i >>> 3]!;
    if (!x) continue;
    if (first < 0) first = i + lowestBit(x);
    count += popcount(x);
  }
  for (; i < n; i++)
    if (testBit(a, i) !== testBit(b, i)) {
      if (first < 0) first = i;
      count++;
    }
  return { count, first };
}

/** The first set bit of [0, n), or -1. */
export function firstSet(b: Uint8Array, n: number): number {
  for (let k = 0; k < b.length && k * 8 < n; k++)
    if (b[k]) {
      const i = k * 8 + lowestBit(b[k]!);
      return i < n ? i : -1;
    }
  return -1;
}

/** Whether bits [from, to) are all set (a bitmap's padding past the group's end). */
export function allSet(b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    if ((i & 7) === 0 && i + 8 <= to) {
      if (b[i >>> 3] !== 0xff) return false;
      i += 7;
      continue;
    }
    if (!testBit(b, i)) return false;
  }
  return true;
}

/**
 * Ranges [from, to) clipped to [0, limit), sorted and merged: the bits a bitmap with those ranges set
 * would have set below `limit`.
 */
export function mergeRanges(ranges: [number, number][], limit: number): [number, number][] {
  const r = ranges
    .map(([s, e]): [number, number] => [Math.max(0, s), Math.min(limit, e)])
    .filter(([s, e]) => s < e)
    .sort((x, y) => x[0] - y[0]);
  const out: [number, number][] = [];
  for (const [s, e] of r) {
    const last = out[out.length - 1];
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}
