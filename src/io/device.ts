/** Block devices the library reads and writes through: a host file, or memory (tests, in-process pipelines). */
import * as fs from 'node:fs';
import { Ext4Error } from '../core/errors.js';

/** Positional byte I/O over an image. Holes (never-written ranges) read as zeros. */
export interface BlockDevice {
  /** Current size in bytes. */
  readonly size: number;
  read(position: number, length: number): Uint8Array;
  /** Reads into `buf` (all of it; past the end reads as zeros), avoiding an allocation per read. */
  readInto?(position: number, buf: Uint8Array): void;
  write(position: number, data: Uint8Array): void;
  /** Writes `parts` back to back from `position` (one gathered write where the device supports it). */
  writev?(position: number, parts: readonly Uint8Array[]): void;
  /**
   * Starts writing back what has been written so far, without waiting (a hint: `sync()` still has to
   * be called for durability). Lets the host disk work while the caller keeps computing.
   */
  startFlush?(): void;
  /** Sets the size; growing makes a hole (sparse), never writes zeros. */
  truncate(size: number): void;
  sync(): void;
  close(): void;
}

function ioError(what: string, path: string, e: unknown): Ext4Error {
  const err = e as NodeJS.ErrnoException;
  const known: Record<string, string> = {
    EFBIG: 'the host file system cannot hold a file that large',
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on the host device',
    EISDIR: 'is a directory',
    ENOTDIR: 'a parent is not a directory',
  };
  const msg = (err.code && known[err.code]) ?? err.message ?? String(e);
  return new Ext4Error('IO_ERROR', `${what} ${path}: ${msg}`, { path, cause: e });
}

/**
 * Test-only crash hook: with EXT4_WORKDISK_CRASH_AFTER=N in the environment the process kills itself
 * (SIGKILL) right after its N-th write or fsync to an image; with EXT4_WORKDISK_CRASH_LOSE=all (or
 * older, random:SEED) as well, writes not yet made durable by an fsync are undone first, as a power
 * cut could lose them. With
 * EXT4_WORKDISK_COUNT_IO=1 it prints how many writes and fsyncs there were when it exits. The crash
 * tests use these to stop a commit at every step.
 */
const crashAfter = Number(process.env.EXT4_WORKDISK_CRASH_AFTER ?? 0);
const crashLose = crashAfter > 0 ? (process.env.EXT4_WORKDISK_CRASH_LOSE ?? '') : '';
let ioEvents = 0;
if (process.env.EXT4_WORKDISK_COUNT_IO === '1')
  process.once('exit', () => process.stderr.write(`ext4-workdisk: io events: ${ioEvents}\n`));
function ioEvent(dev: FileDevice): void {
  ioEvents++;
  if (crashAfter && ioEvents >= crashAfter) {
    if (crashLose) dev.loseUnsynced();
    process.kill(process.pid, 'SIGKILL');
  }
}

/** Observers of directory syncs (tests check that a renamed output's directory is made durable). */
export const dirSyncHooks: ((dir: string) => void)[] = [];

/**
 * Makes a directory's entries durable (fsync of the directory): after a file is created or renamed
 * into it, the name itself survives a power cut only once this returns. File systems that cannot sync
 * a directory (EINVAL) are left as they are.
 */
export function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw ioError('cannot sync the directory', dir, e);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
  for (const h of dirSyncHooks) h(dir);
}

/** A host file (or block device) opened for positional I/O. */
export class FileDevice implements BlockDevice {
  private fd: number;
  private _size: number;
  readonly path: string;
  /** The name used in error messages (the final target when writing through a temporary file). */
  name: string;

  private constructor(path: string, fd: number, size: number) {
    this.path = path;
    this.name = path;
    this.fd = fd;
    this._size = size;
  }

  /** What the writes since the last fsync overwrote (kept only under EXT4_WORKDISK_CRASH_LOSE). */
  private unsynced: { position: number; old: Uint8Array }[] = [];

  private keepOld(position: number, length: number): void {
    if (!crashLose) return;
    // By 1 KiB piece (the smallest ext4 block): a disk may reorder the blocks of one write too.
    const old = this.read(position, length);
    for (let at = 0; at < length; at += 1024)
      this.unsynced.push({ position: position + at, old: old.subarray(at, Math.min(length, at + 1024)) });
  }

  /**
   * The crash hook's power cut: the writes since the last fsync undone, newest first; all of them
   * (`all`), all but the newest (`older`: the disk wrote them out of order) or a seeded random subset
   * (`random:SEED`).
   */
  loseUnsynced(): void {
    let lost = this.unsynced;
    if (crashLose === 'older') lost = lost.slice(0, -1);
    else if (crashLose.startsWith('random:')) {
      // A seeded coin for each write (xorshift32): any subset can be what reached the disk.
      let x = Number(crashLose.slice(7)) >>> 0 || 1;
      lost = lost.filter(() => {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        return (x >>> 0) % 2 === 0;
      });
    }
    for (const { position, old } of lost.reverse()) fs.writeSync(this.fd, old, 0, old.length, position);
  }

  /** Opens an existing file; `writable` opens it read-write. */
  static open(path: string, writable = false): FileDevice {
    let fd: number;
    try {
      fd = fs.openSync(path, writable ? 'r+' : 'r');
    } catch (e) {
      throw ioError('cannot open', path, e);
    }
    const st = fs.fstatSync(fd);
    return new FileDevice(path, fd, st.size);
  }

  /** Creates a new file (failing if it exists, so a temp name never clobbers anything). */
  static create(path: string, mode = 0o644, name = path): FileDevice {
    let fd: number;
    try {
      fd = fs.openSync(path, 'wx+', mode);
    } catch (e) {
      throw ioError('cannot create', name, e);
    }
    const dev = new FileDevice(path, fd, 0);
    dev.name = name;
    return dev;
  }

  get size(): number {
    return this._size;
  }

  read(position: number, length: number): Uint8Array {
    // Not zero-filled first (every byte is read or cleared below); a plain Uint8Array, so slice() copies.
    const raw = Buffer.allocUnsafeSlow(length);
    const buf = new Uint8Array(raw.buffer, raw.byteOffset, length);
    this.readInto(position, buf);
    return buf;
  }

  readInto(position: number, buf: Uint8Array): void {
    const length = buf.length;
    let done = 0;
    try {
      while (done < length) {
        const n = fs.readSync(this.fd, buf, done, length - done, position + done);
        if (n === 0) break; // past EOF reads as zeros
        done += n;
      }
    } catch (e) {
      throw ioError('cannot read', this.name, e);
    }
    if (done < length) buf.fill(0, done);
  }

  write(position: number, data: Uint8Array): void {
    this.keepOld(position, data.length);
    let done = 0;
    try {
      while (done < data.length) done += fs.writeSync(this.fd, data, done, data.length - done, position + done);
    } catch (e) {
      throw ioError('cannot write', this.name, e);
    }
    if (position + data.length > this._size) this._size = position + data.length;
    ioEvent(this);
  }

  writev(position: number, parts: readonly Uint8Array[]): void {
    const IOV_MAX = 1024;
    this.keepOld(
      position,
      parts.reduce((a, b) => a + b.length, 0),
    );
    let pos = position;
    try {
      for (let i = 0; i < parts.length; i += IOV_MAX) {
        const batch = parts.slice(i, i + IOV_MAX);
        const want = batch.reduce((a, b) => a + b.length, 0);
        const n = fs.writevSync(this.fd, batch, pos);
        if (n < want) {
          // A short gathered write (rare on regular files): finish piece by piece.
          let done = n;
          let p = pos;
          for (const b of batch) {
            if (done >= b.length) done -= b.length;
            else {
              this.write(p + done, b.subarray(done));
              done = 0;
            }
            p += b.length;
          }
        }
        pos += want;
      }
    } catch (e) {
      if (e instanceof Ext4Error) throw e;
      throw ioError('cannot write', this.name, e);
    }
    if (pos > this._size) this._size = pos;
    ioEvent(this);
  }

  /** Whether startFlush() does anything (set by writers that will sync() at the end anyway). */
  earlyFlush = false;

  /** The descriptor background fsyncs run on. */
  private flushFd = -1;

  startFlush(): void {
    if (!this.earlyFlush || this.fd < 0) return;
    // fsync on a second descriptor, on libuv's thread pool. Errors are not lost: a write-back error is
    // reported to every descriptor's next fsync, so the caller's sync() still sees it. One descriptor
    // serves every early flush of this device.
    if (this.flushFd < 0) {
      try {
        this.flushFd = fs.openSync(this.path, 'r');
      } catch {
        return;
      }
    }
    fs.fsync(this.flushFd, () => {});
  }

  truncate(size: number): void {
    try {
      fs.ftruncateSync(this.fd, size);
    } catch (e) {
      throw ioError('cannot resize', this.name, e);
    }
    this._size = size;
  }

  sync(): void {
    try {
      fs.fsyncSync(this.fd);
    } catch (e) {
      throw ioError('cannot sync', this.name, e);
    }
    this.unsynced = [];
    ioEvent(this);
  }

  close(): void {
    try {
      if (this.fd >= 0) {
        const fd = this.fd;
        this.fd = -1;
        fs.closeSync(fd);
      }
    } finally {
      // Closed now, not when the queued fsyncs report back: a synchronous caller may never let the
      // event loop run, and the descriptor would pin the file (and, over a loop of images, exhaust
      // descriptors). A running fsync keeps its own reference to the file. One still queued behind
      // other thread-pool work may then run on whatever file next gets this descriptor number: an
      // extra flush of that file, nothing worse. Early flushes are hints; durability comes from sync().
      if (this.flushFd >= 0) {
        const fd2 = this.flushFd;
        this.flushFd = -1;
        fs.closeSync(fd2);
      }
    }
  }
}

const CHUNK = 65536;

/** A sparse in-memory device: only written 64 KiB chunks take memory. */
export class MemoryDevice implements BlockDevice {
  private chunks = new Map<number, Uint8Array>();
  private _size: number;
  bytesWritten = 0;

  constructor(size = 0) {
    this._size = size;
  }
  get size(): number {
    return this._size;
  }
  read(position: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let p = position;
    while (p < position + length) {
      const ci = Math.floor(p / CHUNK);
      const co = p - ci * CHUNK;
      const n = Math.min(CHUNK - co, position + length - p);
      const c = this.chunks.get(ci);
      if (c) out.set(c.subarray(co, co + n), p - position);
      p += n;
    }
    return out;
  }
  write(position: number, data: Uint8Array): void {
    let p = position;
    while (p < position + data.length) {
      const ci = Math.floor(p / CHUNK);
      const co = p - ci * CHUNK;
      const n = Math.min(CHUNK - co, position + data.length - p);
      let c = this.chunks.get(ci);
      if (!c) this.chunks.set(ci, (c = new Uint8Array(CHUNK)));
      c.set(data.subarray(p - position, p - position + n), co);
      p += n;
    }
    this.bytesWritten += data.length;
    if (position + data.length > this._size) this._size = position + data.length;
  }
  truncate(size: number): void {
    for (const ci of [...this.chunks.keys()]) if (ci * CHUNK >= size) this.chunks.delete(ci);
    this._size = size;
  }
  /** Bytes of memory held by written chunks. */
  get allocated(): number {
    return this.chunks.size * CHUNK;
  }
  sync(): void {}
  close(): void {}
}

/** A read-only view of bytes already in memory (a decompressed image, a test fixture). */
export class BufferDevice implements BlockDevice {
  constructor(private readonly bytes: Uint8Array) {}
  get size(): number {
    return this.bytes.length;
  }
  read(position: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    if (position < this.bytes.length)
      out.set(this.bytes.subarray(position, Math.min(this.bytes.length, position + length)));
    return out;
  }
  write(): void {
    throw new Ext4Error('IO_ERROR', 'this device is read-only');
  }
  truncate(): void {
    throw new Ext4Error('IO_ERROR', 'this device is read-only');
  }
  sync(): void {}
  close(): void {}
}
