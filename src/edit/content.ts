/**
 * Where new file content comes from: bytes, text, iterables of pieces and holes, host files, and the
 * files of a tree source, each as a DataSource that writeContent (fs/content.ts) reads piece by piece.
 * Files are read into one shared buffer (see readBuffer), so a batch of small files costs no
 * allocation per file.
 */
import * as fs from 'node:fs';
import { Ext4Error } from '../core/errors.js';
import type { SourceNode } from '../core/types.js';
import { bytesSource, type DataSource, type Hole } from '../fs/content.js';

/**
 * New file content: bytes, text (UTF-8), pieces in order (`{ hole: n }` pieces are n zero bytes left
 * unallocated, for sparse files), or a host file to copy.
 */
export type FileContent = Uint8Array | string | Iterable<Uint8Array | Hole> | { hostPath: string };

const enc = new TextEncoder();

const CHUNK = 4 << 20;

/** A DataSource for new file content. */
export function sourceOf(c: FileContent): DataSource {
  if (typeof c === 'string') return bytesSource(enc.encode(c));
  if (c instanceof Uint8Array) return bytesSource(c);
  if ('hostPath' in c) return hostFileSource(c.hostPath);
  const iterate = (c as Partial<Iterable<Uint8Array | Hole>>)[Symbol.iterator];
  if (typeof iterate !== 'function')
    throw new Ext4Error('BAD_OPTION', 'file content must be bytes, text, an iterable of pieces or { hostPath }');
  const it = iterate.call(c);
  return {
    next: () => {
      const r = it.next();
      return r.done ? undefined : r.value;
    },
  };
}

let sharedRead: Uint8Array | undefined;
/**
 * The buffer files are read into: one for all (sources are read one at a time and what they hand out
 * is copied before the next read), grown to 4 MiB at most; a new one per small file costs more in GC
 * than the copy.
 */
function readBuffer(size: number): Uint8Array {
  const want = Math.min(CHUNK, Math.max(size, 65536));
  if (!sharedRead || sharedRead.length < want) sharedRead = new Uint8Array(want);
  return sharedRead.subarray(0, Math.min(sharedRead.length, Math.max(size, 4096)));
}

function hostFileSource(p: string): DataSource {
  let fd: number;
  try {
    fd = fs.openSync(p, 'r');
  } catch (e) {
    throw new Ext4Error(
      'SOURCE_ERROR',
      `cannot read ${p}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
      { path: p },
    );
  }
  const st = fs.fstatSync(fd);
  if (!st.isFile()) {
    fs.closeSync(fd);
    throw new Ext4Error('SOURCE_ERROR', `${p} is not a regular file`, { path: p });
  }
  const buf = readBuffer(st.size);
  let pos = 0;
  let done = false;
  return {
    size: st.size,
    next: () => {
      if (done) return undefined;
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      if (!n) return undefined;
      pos += n;
      // A short read that reaches the size fstat gave is the end: the read that would return 0 is
      // spared (a file of size 0, such as those of /proc, is read until a read returns nothing).
      if (n < buf.length && st.size > 0 && pos >= st.size) done = true;
      return buf.subarray(0, n);
    },
    close: () => fs.closeSync(fd),
  };
}

/** A tree source's file as content (streamed, checked for changes while read). */
export function nodeSource(node: SourceNode): DataSource {
  const data = node.openData();
  const buf = readBuffer(node.size);
  let pos = 0;
  let done = false;
  let closed = false;
  return {
    size: node.size,
    next: () => {
      if (done) return undefined;
      const n = pos < node.size ? data.read(buf, Math.min(buf.length, node.size - pos), pos) : 0;
      if (n === 0) {
        done = true;
        data.verifyUnchanged(pos);
        return undefined;
      }
      pos += n;
      return buf.subarray(0, n);
    },
    // Called by writeContent however the copy ends (SOURCE_CHANGED, a full disk...).
    close: () => {
      if (!closed) data.close();
      closed = true;
    },
  };
}
