/**
 * What pass 2 keeps of one directory's entries while it reads them, without copying any: where each
 * entry of a block starts (the block is walked whole before any entry counts, so a block that turns
 * out damaged counts none, as when it was parsed first), and the names seen so far, to find a name
 * given twice. Names stay in the blocks they were read from (cached blocks are never changed).
 */
import type { Ext4ErrorContext } from '../core/errors.js';
import { walkDirEntries } from '../ext4/dirent.js';

/** The entries of one directory block (unused ones included, the checksum tail not): their offsets. */
export class BlockEntries {
  offsets = new Int32Array(64);
  count = 0;
  private readonly visit = (off: number) => {
    if (this.count === this.offsets.length) {
      const grown = new Int32Array(this.count * 2);
      grown.set(this.offsets);
      this.offsets = grown;
    }
    this.offsets[this.count++] = off;
  };

  /** Walks [0, blockSize) of `b`; throws (Ext4Error CORRUPT) on a malformed entry, before any is used. */
  read(b: Uint8Array, blockSize: number, where: Ext4ErrorContext): void {
    this.count = 0;
    walkDirEntries(b, 0, blockSize, blockSize, where, this.visit);
  }
}

/**
 * The names of one directory, by hash (open addressing), each a place in a block. `clear` starts the
 * next directory without touching the table (slots carry the directory they belong to).
 */
export class NameSet {
  private mask = 63;
  private slot = new Int32Array(64);
  private stamp = new Int32Array(64);
  private epoch = 1;
  private hash = new Int32Array(32);
  private off = new Int32Array(32);
  private len = new Int32Array(32);
  private buf: Uint8Array[] = [];
  private n = 0;

  clear(): void {
    this.n = 0;
    this.buf.length = 0;
    if (++this.epoch === 0x7fffffff) {
      this.stamp.fill(0);
      this.epoch = 1;
    }
  }

  /** Adds the name of `len` bytes at `off` of `b` (hash `h`); false when those bytes are there already. */
  add(h: number, b: Uint8Array, off: number, len: number): boolean {
    for (let s = h & this.mask; this.stamp[s] === this.epoch; s = (s + 1) & this.mask) {
      const e = this.slot[s]!;
      if (this.hash[e] === h && this.len[e] === len && this.same(e, b, off, len)) return false;
    }
    if ((this.n + 1) * 2 > this.mask + 1) this.grow();
    const e = this.n++;
    if (e === this.hash.length) {
      this.hash = widen(this.hash);
      this.off = widen(this.off);
      this.len = widen(this.len);
    }
    this.hash[e] = h;
    this.off[e] = off;
    this.len[e] = len;
    this.buf[e] = b;
    this.place(e);
    return true;
  }

  private same(e: number, b: Uint8Array, off: number, len: number): boolean {
    const a = this.buf[e]!;
    const o = this.off[e]!;
    for (let k = 0; k < len; k++) if (a[o + k] !== b[off + k]) return false;
    return true;
  }

  private place(e: number): void {
    let s = this.hash[e]! & this.mask;
    while (this.stamp[s] === this.epoch) s = (s + 1) & this.mask;
    this.slot[s] = e;
    this.stamp[s] = this.epoch;
  }

  private grow(): void {
    const size = (this.mask + 1) * 2;
    this.mask = size - 1;
    this.slot = new Int32Array(size);
    this.stamp = new Int32Array(size);
    for (let e = 0; e < this.n; e++) this.place(e);
  }
}

function widen(a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}
