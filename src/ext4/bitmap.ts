/** Block and inode bitmaps (kernel doc: bitmaps.rst): bit i of byte i>>3, least significant bit first. */
import { crc32c } from '../core/crc32c.js';

export function setBit(b: Uint8Array, i: number): void {
  b[i >>> 3]! |= 1 << (i & 7);
}
export function clearBit(b: Uint8Array, i: number): void {
  b[i >>> 3]! &= ~(1 << (i & 7));
}
export function testBit(b: Uint8Array, i: number): boolean {
  return (b[i >>> 3]! & (1 << (i & 7))) !== 0;
}

/** Sets bits [from, to), a byte at a time in the middle. */
export function setBitRange(b: Uint8Array, from: number, to: number): void {
  let i = from;
  while (i < to && i & 7) setBit(b, i++);
  while (i + 8 <= to) {
    b[i >>> 3] = 0xff;
    i += 8;
  }
  while (i < to) setBit(b, i++);
}

/** Counts set bits in [0, n). */
export function countBits(b: Uint8Array, n: number): number {
  let c = 0;
  for (let i = 0; i < n >>> 3; i++) {
    let x = b[i]!;
    x = x - ((x >>> 1) & 0x55);
    x = (x & 0x33) + ((x >>> 2) & 0x33);
    c += (x + (x >>> 4)) & 0x0f;
  }
  for (let i = n & ~7; i < n; i++) if (testBit(b, i)) c++;
  return c;
}

/** metadata_csum bitmap checksum: crc32c(fs seed, the first `bits`/8 bytes). */
export function bitmapChecksum(csumSeed: number, b: Uint8Array, bits: number): number {
  return crc32c(csumSeed, b, 0, bits >>> 3);
}
