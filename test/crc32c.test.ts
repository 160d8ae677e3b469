import { describe, expect, it } from 'vitest';
import { crc32c, crc32cU32 } from '../src/core/crc32c.js';

/** Bit-at-a-time reference implementation, to check the sliced tables. */
function reference(crc: number, data: Uint8Array): number {
  let c = crc >>> 0;
  for (const byte of data) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return c >>> 0;
}

describe('crc32c', () => {
  it('matches the standard CRC-32C check value', () => {
    const msg = new TextEncoder().encode('123456789');
    expect(~crc32c(0xffffffff, msg) >>> 0).toBe(0xe3069283);
  });
  it('matches RFC 3720 (iSCSI) vectors', () => {
    expect(~crc32c(0xffffffff, new Uint8Array(32)) >>> 0).toBe(0x8a9136aa);
    expect(~crc32c(0xffffffff, new Uint8Array(32).fill(0xff)) >>> 0).toBe(0x62a8ab43);
    const inc = Uint8Array.from({ length: 32 }, (_, i) => i);
    expect(~crc32c(0xffffffff, inc) >>> 0).toBe(0x46dd794e);
  });
  it('slicing-by-8 equals the bitwise reference for every length and offset', () => {
    const data = Uint8Array.from({ length: 300 }, (_, i) => (i * 131 + 7) & 0xff);
    for (let start = 0; start < 9; start++)
      for (let end = start; end <= data.length; end += 7)
        expect(crc32c(0x12345678, data, start, end)).toBe(reference(0x12345678, data.subarray(start, end)));
  });
  it('chains: crc(a+b) = crc(crc(a), b), and u32 helper is little-endian', () => {
    const a = new Uint8Array([1, 2, 3, 4, 5]);
    const b = new Uint8Array([6, 7, 8]);
    expect(crc32c(crc32c(~0, a), b)).toBe(crc32c(~0, new Uint8Array([...a, ...b])));
    expect(crc32cU32(~0, 0x04030201)).toBe(crc32c(~0, new Uint8Array([1, 2, 3, 4])));
  });
});
