/**
 * Opening an archive for reading: a plain tar file is read in place by offset; a gzip file, or any
 * stream (stdin), is read once, its file data copied to a spool file that is unlinked as soon as it is
 * made (nothing is left behind, whatever happens). The compression is found from the first bytes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { randomBytes } from '../core/bytes.js';
import { Ext4Error } from '../core/errors.js';
import { FileByteSource, StreamByteSource, type ByteSource, type SpoolTarget } from './read.js';

/** A lazily made, already unlinked temporary file in `dir`. */
export class Spool implements SpoolTarget {
  private handle: number | undefined;
  /** Bytes written so far (the next write goes here). */
  pos = 0;
  constructor(private readonly dir: string) {}
  fd(): number {
    if (this.handle === undefined) {
      const p = path.join(
        this.dir,
        `.ext4-workdisk-spool.${process.pid}.${Buffer.from(randomBytes(4)).toString('hex')}`,
      );
      try {
        this.handle = fs.openSync(p, 'wx+', 0o600);
      } catch (e) {
        throw new Ext4Error('IO_ERROR', `cannot make a spool file in ${this.dir}: ${(e as Error).message}`, {
          path: this.dir,
          cause: e,
        });
      }
      fs.unlinkSync(p);
    }
    return this.handle;
  }
  close(): void {
    if (this.handle !== undefined) fs.closeSync(this.handle);
    this.handle = undefined;
  }
}

const MAGICS: [string, number[]][] = [
  ['gzip', [0x1f, 0x8b]],
  ['bzip2', [0x42, 0x5a, 0x68]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['lz4', [0x04, 0x22, 0x4d, 0x18]],
];

/** The compression a stream starting with `head` uses, if any. */
export function compressionOf(head: Uint8Array): string | undefined {
  return MAGICS.find(([, m]) => m.every((b, i) => head[i] === b))?.[0];
}

function unsupported(kind: string, what: string): Ext4Error {
  return new Ext4Error(
    'UNSUPPORTED_FEATURE',
    `${what} is ${kind}-compressed; only gzip is read directly (decompress it and pass it on stdin, e.g. ${kind === 'zstd' ? 'zstd' : kind} -dc FILE | ext4-workdisk mkfs ... --from -)`,
  );
}

/** Chunks of a stream, with its errors made Ext4Errors naming `what`. */
async function* guarded(it: AsyncIterable<Buffer>, what: string): AsyncGenerator<Buffer> {
  try {
    for await (const b of it) yield b;
  } catch (e) {
    if (e instanceof Ext4Error) throw e;
    const err = e as NodeJS.ErrnoException;
    const msg =
      err.code === 'Z_BUF_ERROR' || /unexpected end/i.test(err.message)
        ? 'the gzip stream is truncated'
        : err.code?.startsWith('Z_')
          ? `the gzip stream is damaged (${err.message})`
          : err.message;
    throw new Ext4Error('SOURCE_ERROR', `${what}: ${msg}`, { cause: e });
  }
}

/** Calls `f` on every chunk passing through. */
export async function* tap(it: AsyncIterable<Buffer>, f: (b: Buffer) => void): AsyncGenerator<Buffer> {
  for await (const b of it) {
    f(b);
    yield b;
  }
}

/** An async chunk stream read piecewise, with bytes put back. */
class ChunkReader {
  private back: Buffer[] = [];
  constructor(private readonly it: AsyncIterator<Buffer>) {}
  async next(max = Infinity): Promise<Buffer | undefined> {
    let b = this.back.shift();
    if (!b) {
      const r = await this.it.next();
      if (r.done) return undefined;
      b = r.value;
    }
    if (b.length > max) {
      this.back.unshift(b.subarray(max));
      b = b.subarray(0, max);
    }
    return b;
  }
  unshift(b: Buffer): void {
    if (b.length) this.back.unshift(b);
  }
  /** Exactly `n` bytes, or fewer at the end of the stream. */
  async take(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      const b = await this.next(n - got);
      if (!b) break;
      parts.push(b);
      got += b.length;
    }
    return Buffer.concat(parts);
  }
  /** Everything not yet read (put-back bytes first), as a stream. */
  async *rest(): AsyncGenerator<Buffer> {
    for (let b = await this.next(); b; b = await this.next()) yield b;
  }
  /** Bytes up to and including the next NUL. */
  async cstring(): Promise<void> {
    for (;;) {
      const b = await this.next();
      if (!b) throw gzipError('truncated');
      const z = b.indexOf(0);
      if (z >= 0) {
        this.unshift(b.subarray(z + 1));
        return;
      }
    }
  }
}

function gzipError(what: 'truncated' | 'damaged', detail = ''): Error {
  return Object.assign(new Error(`gzip ${what}${detail ? `: ${detail}` : ''}`), {
    code: what === 'truncated' ? 'Z_BUF_ERROR' : 'Z_DATA_ERROR',
  });
}

/**
 * Input is handed to the inflater in slices of this size, so one slice's output stays bounded (deflate
 * expands at most about 1032 times: 128 KiB can give 130 MiB, usually about 3 times as much); its
 * output comes in 256 KiB pieces, which halves the time against zlib's default 16 KiB.
 */
const INFLATE_SLICE = 128 << 10;
const INFLATE_CHUNK = 256 << 10;

/**
 * One gzip member (RFC 1952): its header, the deflate data (zlib's raw inflater, which stops at the
 * end of the deflate stream and says how much input it used) and the trailer, CRC-32 and size checked.
 */
async function* gzipMember(r: ChunkReader): AsyncGenerator<Buffer> {
  const h = await r.take(10);
  if (h.length < 10) throw gzipError('truncated');
  if (h[0] !== 0x1f || h[1] !== 0x8b || h[2] !== 8) throw gzipError('damaged', 'bad member header');
  const flags = h[3]!;
  if (flags & 4) {
    const x = await r.take(2);
    if (x.length < 2) throw gzipError('truncated');
    if ((await r.take(x.readUInt16LE(0))).length < x.readUInt16LE(0)) throw gzipError('truncated');
  }
  if (flags & 8) await r.cstring();
  if (flags & 16) await r.cstring();
  if (flags & 2 && (await r.take(2)).length < 2) throw gzipError('truncated');
  const z = zlib.createInflateRaw({ chunkSize: INFLATE_CHUNK });
  const out: Buffer[] = [];
  let err: Error | undefined;
  let ended = false;
  let size = 0;
  let crc = 0;
  const crc32 = (zlib as { crc32?: (b: Buffer, v: number) => number }).crc32;
  z.on('data', (b: Buffer) => {
    out.push(b);
    size += b.length;
    if (crc32) crc = crc32(b, crc);
  });
  z.on('end', () => (ended = true));
  let failed: (() => void) | undefined;
  z.on('error', (e) => {
    err ??= e;
    failed?.();
  });
  let fed = 0;
  for (;;) {
    const c = await r.next(INFLATE_SLICE);
    if (!c) throw gzipError('truncated');
    // zlib may report a damaged stream through 'error' alone, without calling the write back.
    const afterEnd = await new Promise<boolean>((res) => {
      failed = () => res(false);
      z.write(c, (e) => res(!!e && ended));
    });
    if (err !== undefined) throw err;
    while (out.length) yield out.shift()!;
    if (afterEnd) {
      r.unshift(c);
      break;
    }
    fed += c.length;
    if (ended || z.bytesWritten < fed) {
      // The deflate data ended inside this slice: the rest belongs to the trailer and what follows.
      r.unshift(c.subarray(c.length - (fed - z.bytesWritten)));
      break;
    }
  }
  z.destroy();
  while (out.length) yield out.shift()!;
  const t = await r.take(8);
  if (t.length < 8) throw gzipError('truncated');
  if (t.readUInt32LE(4) !== size % 2 ** 32) throw gzipError('damaged', 'the size in the trailer does not match');
  if (crc32 && t.readUInt32LE(0) !== crc >>> 0) throw gzipError('damaged', 'CRC-32 mismatch');
}

/**
 * A gzip stream's decompressed chunks: every member in turn (concatenated members read as one, like
 * gzip -d). Bytes after the last member that do not start another are ignored with a warning, as
 * gzip -d does.
 */
async function* gunzipFrom(r: ChunkReader, onWarning?: (m: string) => void): AsyncGenerator<Buffer> {
  for (let first = true; ; first = false) {
    const head = await r.take(2);
    if (!first && head.length === 0) return;
    r.unshift(head);
    if (!first && (head.length < 2 || head[0] !== 0x1f || head[1] !== 0x8b)) {
      onWarning?.('ignoring trailing bytes after the gzip stream (as gzip -d does)');
      return;
    }
    yield* gzipMember(r);
  }
}

/**
 * The decompressed chunks of a stream: gzip is decompressed, other compressions are refused, anything
 * else passes as it is.
 */
export async function decompressed(
  it: AsyncIterable<Buffer>,
  what: string,
  onWarning?: (m: string) => void,
): Promise<AsyncIterable<Buffer>> {
  const r = new ChunkReader(it[Symbol.asyncIterator]());
  const head = await r.take(6);
  r.unshift(head);
  const kind = compressionOf(head);
  if (kind === 'gzip')
    return guarded(
      gunzipFrom(r, (m) => onWarning?.(`${what}: ${m}`)),
      what,
    );
  if (kind) throw unsupported(kind, what);
  return guarded(r.rest(), what);
}

export interface OpenArchive {
  source: ByteSource;
  /** Closes the archive and the spool file. Call once the image is written. */
  close(): void;
}

/**
 * Opens `input` (a tar or tar.gz file, or '-' for stdin) for readTar. File data of a stream is spooled
 * into `spoolDir`.
 */
export async function openArchive(
  input: string,
  spoolDir: string,
  stdin: Readable = process.stdin,
  onWarning?: (m: string) => void,
): Promise<OpenArchive> {
  const spool = new Spool(spoolDir);
  if (input === '-') {
    const chunks = await decompressed(stdin as AsyncIterable<Buffer>, 'stdin', onWarning);
    return { source: new StreamByteSource(chunks[Symbol.asyncIterator](), spool), close: () => spool.close() };
  }
  let fd: number;
  try {
    fd = fs.openSync(input, 'r');
  } catch (e) {
    throw new Ext4Error('SOURCE_ERROR', `cannot read ${input}: ${(e as Error).message}`, { path: input, cause: e });
  }
  try {
    const st = fs.fstatSync(fd);
    let kind: string | undefined;
    if (st.isFile()) {
      const head = Buffer.alloc(6);
      fs.readSync(fd, head, 0, 6, 0);
      kind = compressionOf(head);
    }
    if (!st.isFile() || kind === 'gzip') {
      // A pipe or device, or a gzip file: read once, like stdin.
      const raw = fs.createReadStream('', { fd, autoClose: false, highWaterMark: 1 << 20 });
      const chunks = await decompressed(raw as AsyncIterable<Buffer>, input, onWarning);
      return {
        source: new StreamByteSource(chunks[Symbol.asyncIterator](), spool),
        close: () => {
          spool.close();
          fs.closeSync(fd);
        },
      };
    }
    if (kind) throw unsupported(kind, input);
    return { source: new FileByteSource(fd, st.size), close: () => fs.closeSync(fd) };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}
