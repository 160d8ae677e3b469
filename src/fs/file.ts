/**
 * File contents, read side: data streamed run by run (holes and uninitialized extents handed on as
 * gaps), inline data, whole small files, symlink targets and device numbers.
 */
import { Ext4Error } from '../core/errors.js';
import { FL_INLINE_DATA, decodeDeviceNumbers, type Inode } from '../ext4/inode.js';
import { checkReadable, isFastSymlink, readInode } from './inodes.js';
import { blockRuns, type BlockRun } from './blockmap.js';
import { inlineData } from './inline.js';
import type { XattrVolume } from './volume.js';

const EXT4_MAX_SYMLINK = 4096;

/**
 * Streams a file's bytes: `sink(bytes, offset)` is called in order; holes and uninitialized extents
 * come as `undefined` with their length so callers can keep them sparse. The bytes handed to `sink`
 * are only valid during the call (they may be a view of a reused read-ahead buffer). `runs`: the
 * file's block map (`blockRuns`) when the caller has it already.
 */
export function readFile(
  v: XattrVolume,
  ino: number,
  sink: (data: Uint8Array | undefined, offset: number, length: number) => void,
  i: Inode,
  runs?: readonly BlockRun[],
): void {
  checkReadable(ino, i);
  const size = i.size;
  if (i.flags & FL_INLINE_DATA) {
    const d = inlineData(v, ino, i);
    if (size > d.length)
      throw new Ext4Error('CORRUPT', `inode ${ino}: inline data shorter than the file size`, { inode: ino });
    if (size) sink(d.subarray(0, size), 0, size);
    return;
  }
  const bs = v.blockSize;
  let pos = 0;
  const MAXRUN = Math.max(1, Math.floor((8 << 20) / bs));
  for (const r of runs ?? blockRuns(v, ino, i)) {
    const start = r.lblk * bs;
    if (start >= size) break;
    if (start > pos) {
      sink(undefined, pos, start - pos);
      pos = start;
    }
    const end = Math.min(size, (r.lblk + r.len) * bs);
    if (r.uninit) sink(undefined, pos, end - pos);
    else
      for (let b = 0; b < r.len && r.lblk * bs + b * bs < end; b += MAXRUN) {
        const n = Math.min(MAXRUN, r.len - b);
        const data = v.readData(r.pblk + b, n);
        const off = (r.lblk + b) * bs;
        const len = Math.min(end - off, n * bs);
        sink(data.subarray(0, len), off, len);
      }
    pos = end;
  }
  if (pos < size) sink(undefined, pos, size - pos);
}

/** The whole content of a file, for small reads (capped). */
export function readFileBytes(v: XattrVolume, ino: number, max = 256 << 20): Uint8Array {
  const i = readInode(v, ino);
  if (i.size > max)
    throw new Ext4Error('TOO_LARGE', `inode ${ino} is ${i.size} bytes, more than ${max} to read into memory`, {
      inode: ino,
    });
  const out = new Uint8Array(i.size);
  readFile(v, ino, (d, off) => d && out.set(d, off), i);
  return out;
}

/** A symlink's target. */
export function readLink(v: XattrVolume, ino: number, i: Inode): Uint8Array {
  checkReadable(ino, i);
  if (i.size <= 0 || i.size >= EXT4_MAX_SYMLINK)
    throw new Ext4Error('CORRUPT', `symlink inode ${ino} has size ${i.size}`, { inode: ino });
  if (i.flags & FL_INLINE_DATA) return inlineData(v, ino, i).slice(0, i.size);
  if (isFastSymlink(i)) return i.block.slice(0, i.size);
  return readFileBytes(v, ino).slice(0, i.size);
}

/** Major and minor numbers of a device inode (old or new encoding). */
export function deviceNumbers(i: Inode): [number, number] {
  return decodeDeviceNumbers(i.block);
}
