/**
 * Blocks whose bytes past a short head are all zeros, kept as the head and the block's length. A grow
 * rewrites each of the resize inode's lists (up to 1,024 blocks of 4 KiB, each a few dozen bytes of
 * entries, the rest zeros) and writes every one twice, into the journal and home. Materialized, each
 * would be a fresh page of memory the host must fault in (about 2 us a page on a virtual machine: 2 ms
 * for the lists alone, as much as writing them); kept short, they are summed with the zeros' CRC
 * operator (crc32cZeros) and written from one shared zero buffer by a gathered write.
 */

export class ZeroTail {
  constructor(
    /** The block's first bytes; everything after them is zero. */
    readonly head: Uint8Array,
    /** The whole block's length in bytes (as a Uint8Array's: code sizing blocks reads either). */
    readonly length: number,
  ) {
    if (head.length > length) throw new RangeError(`a block head of ${head.length} bytes is longer than the block`);
  }
}

/** A block's content: its bytes, or a head followed by zeros. */
export type BlockData = Uint8Array | ZeroTail;

/** The block's bytes, materialized (a ZeroTail's become a new buffer; a Uint8Array is returned as is). */
export function blockBytes(b: BlockData): Uint8Array {
  if (b instanceof Uint8Array) return b;
  const out = new Uint8Array(b.length);
  out.set(b.head);
  return out;
}

/** Zeros shared by every gathered write of a tail (never written to), and the last tail cut from them. */
let zeros = new Uint8Array(0);
let tail = zeros;

/** Appends the pieces that make up `b` (a ZeroTail: its head, then zeros from the shared buffer) to `parts`. */
export function pushBlockParts(parts: Uint8Array[], b: BlockData): void {
  if (b instanceof Uint8Array) {
    parts.push(b);
    return;
  }
  if (b.head.length) parts.push(b.head);
  const n = b.length - b.head.length;
  if (!n) return;
  // The tails of one batch of lists are all the same length: one view serves them all.
  if (tail.length !== n) {
    if (zeros.length < n) zeros = new Uint8Array(Math.max(n, 4096));
    tail = zeros.subarray(0, n);
  }
  parts.push(tail);
}
