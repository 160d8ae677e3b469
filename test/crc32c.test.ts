import { describe, expect, it } from 'vitest';
import { crc32c, crc32cU32, crc32cU64, crc32cZeros } from '../src/core/crc32c.js';
import { inodeChecksum, inodeCsumSeed } from '../src/ext4/inode.js';

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
  it('word-sliced sums equal the reference at any byte offset of the underlying buffer, buffers interleaved', () => {
    const a = Uint8Array.from({ length: 700 }, (_, i) => (i * 197 + 3) & 0xff);
    const b = Uint8Array.from({ length: 90 }, (_, i) => (i * 61 + 11) & 0xff);
    for (let off = 0; off < 8; off++)
      for (const len of [0, 1, 3, 4, 5, 15, 16, 17, 31, 64, 124, 255, 600]) {
        const x = a.subarray(off, off + len);
        // A second buffer summed between two sums of the first (the word view follows the buffer).
        const y = b.subarray(off, off + Math.min(len, 80));
        expect(crc32c(0x9abcdef0, x)).toBe(reference(0x9abcdef0, x));
        expect(crc32c(0x9abcdef0, y)).toBe(reference(0x9abcdef0, y));
        expect(crc32c(~0, a, off + 1, off + 1 + len)).toBe(reference(~0, a.subarray(off + 1, off + 1 + len)));
      }
    const pooled = Buffer.from(a.subarray(5, 405));
    expect(crc32c(7, pooled)).toBe(reference(7, pooled));
  });
  it('runs of zeros (summed by the zero operator) equal the reference, at every tail length and offset', () => {
    const buf = new Uint8Array(9000);
    for (let i = 0; i < 40; i++) buf[i + 3] = (i * 89 + 1) & 0xff;
    for (const start of [0, 1, 2, 3, 5])
      for (const end of [start + 63, start + 64, start + 65, 100, 257, 1027, 4096 + 3, 8999, 9000]) {
        const x = buf.subarray(start, end);
        expect(crc32c(0x1f2e3d4c, buf, start, end)).toBe(reference(0x1f2e3d4c, x));
        expect(crc32c(0x1f2e3d4c, x)).toBe(reference(0x1f2e3d4c, x));
      }
    expect(crc32cZeros(0x12345678, 70_000)).toBe(reference(0x12345678, new Uint8Array(70_000)));
    expect(crc32cZeros(0x12345678, 0)).toBe(0x12345678);
    // All zeros, and a non-zero byte just before a long run.
    expect(crc32c(~0, new Uint8Array(4096))).toBe(reference(~0, new Uint8Array(4096)));
    const lone = new Uint8Array(4096);
    lone[4095 - 200] = 9;
    expect(crc32c(~0, lone)).toBe(reference(~0, lone));
  });
  it('a long streak of one zero-run length (summed by the operator built for it) equals the reference', () => {
    const zeros = new Uint8Array(4028);
    const want = (c: number) => reference(c, zeros);
    // Registers with every bit pattern class: zero, single bits (the top one negative as an int), mixed.
    const regs = [0, 1, 0x80000000, 0xffffffff, 0x12345678];
    for (let i = 0; i < 200; i++) regs.push((Math.imul(i + 1, 0x9e3779b1) ^ (i << 7)) >>> 0);
    for (const c of regs) expect(crc32cZeros(c, 4028)).toBe(want(c));
    // A different length breaks the streak; the first length again starts a new one.
    expect(crc32cZeros(0xdeadbeef, 100)).toBe(reference(0xdeadbeef, new Uint8Array(100)));
    for (const c of regs.slice(0, 40)) expect(crc32cZeros(c, 4028)).toBe(want(c));
  });

  it('chains: crc(a+b) = crc(crc(a), b), and u32 helper is little-endian', () => {
    const a = new Uint8Array([1, 2, 3, 4, 5]);
    const b = new Uint8Array([6, 7, 8]);
    expect(crc32c(crc32c(~0, a), b)).toBe(crc32c(~0, new Uint8Array([...a, ...b])));
    expect(crc32cU32(~0, 0x04030201)).toBe(crc32c(~0, new Uint8Array([1, 2, 3, 4])));
    expect(crc32cU32(0x1234, 0xfedcba98)).toBe(reference(0x1234, new Uint8Array([0x98, 0xba, 0xdc, 0xfe])));
    expect(crc32cU64(5, 0x1_2345_6789)).toBe(reference(5, new Uint8Array([0x89, 0x67, 0x45, 0x23, 1, 0, 0, 0])));
  });
});

describe('inode checksum taken in one pass', () => {
  /** The definition, summed piece by piece: the record with i_checksum_lo (and _hi when covered) as zero. */
  function byDefinition(seed: number, ino: number, rec: Uint8Array, size: number): number {
    const z = rec.slice();
    z[0x7c] = z[0x7d] = 0;
    const hi = size > 128 && (z[0x80]! | (z[0x81]! << 8)) >= 4;
    if (hi) z[0x82] = z[0x83] = 0;
    const c = crc32c(inodeCsumSeed(seed, ino, u32le(rec, 0x64)), z, 0, size);
    return hi ? c : c & 0xffff;
  }
  const u32le = (b: Uint8Array, o: number) => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
  it('equals the record summed with its checksum fields zeroed, for every inode size and i_extra_isize', () => {
    let x = 0x2545f491;
    const rnd = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 16) & 0xff;
    for (const size of [128, 256, 512, 1024])
      for (const extra of [0, 2, 4, 32])
        for (let n = 0; n < 5; n++) {
          const buf = new Uint8Array(size * 3);
          for (let k = 0; k < buf.length; k++) buf[k] = rnd();
          const off = size * (n % 3);
          const rec = buf.subarray(off, off + size);
          rec[0x80] = extra;
          rec[0x81] = 0;
          const want = byDefinition(0xdeadbeef, n + 11, rec, size);
          expect(inodeChecksum(0xdeadbeef, n + 11, buf, off, size), `${size}/${extra}/${n}`).toBe(want);
        }
  });
});
