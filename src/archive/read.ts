/**
 * A tar archive reader: ustar, pax (local and global records) and GNU (long names and link names, old
 * and pax sparse files) headers become entries, each file's data left where it lies: in the archive
 * file itself when it can be read again by offset, or in a spool file when the archive is a stream
 * (stdin, gzip). Memory holds metadata only.
 */
import * as fs from 'node:fs';
import { Ext4Error } from '../core/errors.js';
import { isZero } from '../core/bytes.js';
import type { Timestamp, XattrEntry } from '../core/types.js';
import {
  FIELD,
  GNU_FIELD,
  GNU_MAGIC,
  GNU_SPARSE_EXT_ENTRIES,
  GNU_SPARSE_EXT_FLAG,
  PAX,
  TAR_BLOCK,
  TYPE,
  headerChecksums,
  padded,
  xattrNameOfKeyword,
} from './header.js';

/** Where an entry's stored bytes can be read again. */
export interface DataRef {
  fd: number;
  offset: number;
  /** Bytes stored (for sparse files: the data segments only, back to back). */
  length: number;
  /** Sparse files: the (file offset, length) of each stored segment in order; the rest are holes. */
  segments?: [offset: number, length: number][];
  /** Sparse files: where each segment's bytes start among the stored bytes (a running sum of the lengths). */
  storedAt?: number[];
}

export type TarEntryKind = 'file' | 'hardlink' | 'symlink' | 'chardev' | 'blockdev' | 'dir' | 'fifo';

export interface TarEntry {
  /** Member name as stored (raw bytes, not yet normalised). */
  name: Buffer;
  kind: TarEntryKind;
  /** Permission bits (0o7777). */
  perm: number;
  uid: number;
  gid: number;
  mtime: Timestamp;
  atime?: Timestamp;
  ctime?: Timestamp;
  /** File size (the full size of a sparse file); 0 for other kinds. */
  size: number;
  /** Symlink target or hard link target (raw bytes). */
  linkName: Buffer;
  devMajor: number;
  devMinor: number;
  xattrs: XattrEntry[];
  /** pax `SCHILY.acl.*` text ACLs (star, GNU tar), used when no binary ACL attribute is present. */
  aclAccess?: string;
  aclDefault?: string;
  /** Regular files with data. */
  data?: DataRef;
  /** Byte offset of the entry's header in the (decompressed) archive, for messages. */
  offset: number;
}

/** A byte stream the reader consumes: headers are read, file data kept (by reference) or skipped. */
export interface ByteSource {
  /** Reads up to `n` bytes; fewer only at the end of the archive. */
  read(n: number): Promise<Buffer>;
  /** Skips `n` bytes; false when the archive ended first. */
  skip(n: number): Promise<boolean>;
  /** Keeps `n` bytes where they can be read again; undefined when the archive ended first. */
  keep(n: number): Promise<{ fd: number; offset: number } | undefined>;
  /** Bytes consumed so far. */
  readonly position: number;
}

/**
 * Reads `len` bytes of an archive (or its spool file) at `pos` into `buf` at `off`; fewer only where
 * the file ends. A failing read is a SOURCE_ERROR.
 */
export function preadArchive(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number {
  let got = 0;
  while (got < len) {
    let k: number;
    try {
      k = fs.readSync(fd, buf, off + got, len - got, pos + got);
    } catch (e) {
      throw new Ext4Error('SOURCE_ERROR', `cannot read the archive: ${(e as Error).message}`, { cause: e });
    }
    if (!k) break;
    got += k;
  }
  return got;
}

/** A tar file read by offset: data stays in the file, skipping costs nothing. */
export class FileByteSource implements ByteSource {
  position = 0;
  constructor(
    readonly fd: number,
    readonly size: number,
  ) {}
  // Synchronous underneath; the executor turns a failed read into a rejection, as the interface promises.
  read(n: number): Promise<Buffer> {
    return new Promise((resolve) => {
      const want = Math.max(0, Math.min(n, this.size - this.position));
      const b = Buffer.allocUnsafe(want);
      const got = preadArchive(this.fd, b, 0, want, this.position);
      this.position += got;
      resolve(got === want ? b : b.subarray(0, got));
    });
  }
  skip(n: number): Promise<boolean> {
    if (this.position + n > this.size) {
      this.position = this.size;
      return Promise.resolve(false);
    }
    this.position += n;
    return Promise.resolve(true);
  }
  async keep(n: number): Promise<{ fd: number; offset: number } | undefined> {
    const offset = this.position;
    return (await this.skip(n)) ? { fd: this.fd, offset } : undefined;
  }
}

/** Where a stream's kept data goes: a file, appended at `pos`. */
export interface SpoolTarget {
  fd(): number;
  pos: number;
}

/** A stream (stdin, a decompressor) read once: kept data is copied to a spool file. */
export class StreamByteSource implements ByteSource {
  position = 0;
  private cur: Buffer = Buffer.alloc(0);
  private off = 0;
  constructor(
    private readonly chunks: AsyncIterator<Buffer>,
    private readonly spool: SpoolTarget,
  ) {}
  private async fill(): Promise<boolean> {
    while (this.off >= this.cur.length) {
      const r = await this.chunks.next();
      if (r.done) return false;
      this.cur = r.value;
      this.off = 0;
    }
    return true;
  }
  async read(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0 && (await this.fill())) {
      const k = Math.min(need, this.cur.length - this.off);
      parts.push(this.cur.subarray(this.off, this.off + k));
      this.off += k;
      need -= k;
    }
    this.position += n - need;
    return parts.length === 1 ? Buffer.from(parts[0]!) : Buffer.concat(parts);
  }
  private async pass(n: number, sink?: (b: Buffer) => void): Promise<boolean> {
    let need = n;
    while (need > 0 && (await this.fill())) {
      const k = Math.min(need, this.cur.length - this.off);
      sink?.(this.cur.subarray(this.off, this.off + k));
      this.off += k;
      need -= k;
    }
    this.position += n - need;
    return need === 0;
  }
  skip(n: number): Promise<boolean> {
    return this.pass(n);
  }
  async keep(n: number): Promise<{ fd: number; offset: number } | undefined> {
    const sp = this.spool;
    const fd = sp.fd();
    const offset = sp.pos;
    const ok = await this.pass(n, (b) => {
      let done = 0;
      try {
        while (done < b.length) done += fs.writeSync(fd, b, done, b.length - done, sp.pos + done);
      } catch (e) {
        throw new Ext4Error('IO_ERROR', `cannot spool the archive's file data: ${(e as Error).message}`, { cause: e });
      }
      sp.pos += b.length;
    });
    return ok ? { fd, offset } : undefined;
  }
  /** Reads the rest of the stream (after the end-of-archive blocks), e.g. so that a digest covers it all. */
  async drain(): Promise<void> {
    this.off = this.cur.length;
    for (;;) if ((await this.chunks.next()).done) return;
  }
}

function bad(msg: string, offset: number): Ext4Error {
  return new Ext4Error('SOURCE_ERROR', `${msg} (archive offset ${offset})`, { offset });
}

function truncated(offset: number): Ext4Error {
  return new Ext4Error('SOURCE_ERROR', `the archive is truncated: it ends inside the entry at offset ${offset}`, {
    offset,
  });
}

/** A NUL-terminated header string field. */
function field(h: Buffer, [off, len]: readonly [number, number]): Buffer {
  const f = h.subarray(off, off + len);
  const nul = f.indexOf(0);
  return Buffer.from(nul < 0 ? f : f.subarray(0, nul));
}

/** A numeric field: octal digits (space or NUL terminated), or base-256 when the top bit is set. */
function num(h: Buffer, [off, len]: readonly [number, number], what: string, at: number): number {
  const f = h.subarray(off, off + len);
  if (f[0]! & 0x80) {
    let v = 0n;
    for (let i = 0; i < len; i++) v = (v << 8n) | BigInt(f[i]!);
    // Two's complement over the whole field; positive values carry only the marker bit.
    v -= f[0]! & 0x40 ? 1n << BigInt(8 * len) : 0x80n << BigInt(8 * (len - 1));
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER))
      throw bad(`the ${what} field is out of range`, at);
    return Number(v);
  }
  let i = 0;
  while (i < len && (f[i] === 0x20 || f[i] === 0)) i++;
  let v = 0;
  for (; i < len && f[i] !== 0 && f[i] !== 0x20; i++) {
    const d = f[i]! - 0x30;
    if (d < 0 || d > 7) throw bad(`the ${what} field is not an octal number`, at);
    v = v * 8 + d;
  }
  return v;
}

/** A pax time: decimal seconds with an optional fraction, possibly negative. */
export function parsePaxTime(s: string, key: string, at: number): Timestamp {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(s.trim());
  if (!m) throw bad(`pax ${key}=${JSON.stringify(s)} is not a time`, at);
  const whole = Number(m[2]);
  const frac = Number((m[3] ?? '').slice(0, 9).padEnd(9, '0'));
  if (!m[1]) return { sec: whole, nsec: frac };
  return frac ? { sec: -whole - 1, nsec: 1e9 - frac } : { sec: -whole, nsec: 0 };
}

function paxInt(v: Buffer, key: string, at: number): number {
  const s = v.toString('latin1').trim();
  if (!/^\d+$/.test(s) || Number(s) > Number.MAX_SAFE_INTEGER)
    throw bad(`pax ${key}=${JSON.stringify(s)} is not a number`, at);
  return Number(s);
}

/** pax records ("LEN key=value\n"), in order (GNU sparse 0.0 repeats keys). */
export function parsePax(b: Buffer, at: number): [string, Buffer][] {
  const out: [string, Buffer][] = [];
  let p = 0;
  while (p < b.length) {
    if (b[p] === 0) break; // padding some writers leave
    const sp = b.indexOf(0x20, p);
    const len = sp > p ? Number(b.toString('latin1', p, sp)) : NaN;
    if (!Number.isInteger(len) || len <= sp - p || p + len > b.length || b[p + len - 1] !== 0x0a)
      throw bad('malformed pax extended header', at);
    const eq = b.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq >= p + len - 1) throw bad('malformed pax record (no "=")', at);
    out.push([b.toString('utf8', sp + 1, eq), Buffer.from(b.subarray(eq + 1, p + len - 1))]);
    p += len;
  }
  return out;
}

/** Records in effect for one entry: global records overridden by its own (an empty value unsets). */
function effective(globals: Map<string, Buffer>, local: [string, Buffer][]): Map<string, Buffer> {
  const m = new Map(globals);
  for (const [k, v] of local) {
    if (v.length === 0) m.delete(k);
    else m.set(k, v);
  }
  return m;
}

/** A libarchive attribute name (percent-encoded). */
function urlDecode(s: string, at: number): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw bad(`malformed LIBARCHIVE.xattr name ${JSON.stringify(s)}`, at);
  }
}

/** The kind of a header type flag; undefined for unknown types (read as regular files, like tar). */
function kindOf(t: number): TarEntryKind | undefined {
  switch (t) {
    case TYPE.file:
    case 0:
    case TYPE.contiguous:
    case TYPE.gnuSparse:
      return 'file';
    case TYPE.hardlink:
      return 'hardlink';
    case TYPE.symlink:
      return 'symlink';
    case TYPE.chardev:
      return 'chardev';
    case TYPE.blockdev:
      return 'blockdev';
    case TYPE.dir:
    case TYPE.gnuDumpDir:
      return 'dir';
    case TYPE.fifo:
      return 'fifo';
    default:
      return undefined;
  }
}

/** Old GNU sparse map: pairs of 12-byte numbers until an empty slot. */
function gnuSparsePairs(h: Buffer, off: number, count: number, at: number, out: [number, number][]): void {
  for (let i = 0; i < count; i++) {
    const o = off + i * 24;
    if (h[o] === 0) break;
    out.push([num(h, [o, 12], 'sparse offset', at), num(h, [o + 12, 12], 'sparse size', at)]);
  }
}

function checkSegments(segs: [number, number][], realSize: number, stored: number, at: number): void {
  let end = 0;
  let sum = 0;
  for (const [o, n] of segs) {
    if (o < end || o + n > realSize) throw bad('the sparse map is out of order or beyond the file size', at);
    end = o + n;
    sum += n;
  }
  if (sum !== stored) throw bad(`the sparse map holds ${sum} bytes but the entry stores ${stored}`, at);
}

export interface ReadTarOptions {
  onWarning?: (message: string) => void;
}

/**
 * The entries of a tar archive, in archive order. Reading stops at the end-of-archive zero block (what
 * follows is ignored, as tar does); an archive that ends inside an entry is an error.
 */
export async function* readTar(src: ByteSource, opts: ReadTarOptions = {}): AsyncGenerator<TarEntry> {
  const globals = new Map<string, Buffer>();
  let local: [string, Buffer][] = [];
  let longName: Buffer | undefined;
  let longLink: Buffer | undefined;
  let first = true;
  for (;;) {
    const at = src.position;
    const h = await src.read(TAR_BLOCK);
    if (h.length === 0) {
      // An empty input is no archive (a failed download piped in, say); tar refuses it too.
      if (first) throw bad('not a tar archive (the input is empty)', at);
      if (local.length || longName || longLink) throw truncated(at);
      return; // no end-of-archive blocks: accepted, as tar does
    }
    if (h.length < TAR_BLOCK) throw truncated(at);
    if (isZero(h)) return;
    let stored = -1;
    try {
      stored = num(h, FIELD.chksum, 'checksum', at);
    } catch {
      // not a number: no header
    }
    const { sum, signed } = headerChecksums(h);
    if (stored !== sum && stored !== signed)
      throw bad(first ? 'not a tar archive (no valid header at its start)' : 'bad tar header checksum', at);
    first = false;
    const type = h[FIELD.typeflag[0]]!;
    const size = num(h, FIELD.size, 'size', at);
    const readAll = async (): Promise<Buffer> => {
      if (size > 64 << 20) throw bad('an extended header larger than 64 MiB', at);
      const b = await src.read(padded(size));
      if (b.length < padded(size)) throw truncated(at);
      return b.subarray(0, size);
    };
    if (type === TYPE.paxExtended) {
      local = local.concat(parsePax(await readAll(), at));
      continue;
    }
    if (type === TYPE.paxGlobal) {
      for (const [k, v] of parsePax(await readAll(), at)) {
        if (v.length === 0) globals.delete(k);
        else globals.set(k, v);
      }
      continue;
    }
    if (type === TYPE.gnuLongName || type === TYPE.gnuLongLink) {
      const b = await readAll();
      const nul = b.indexOf(0);
      const v = Buffer.from(nul < 0 ? b : b.subarray(0, nul));
      if (type === TYPE.gnuLongName) longName = v;
      else longLink = v;
      continue;
    }
    if (type === TYPE.gnuVolume) {
      if (!(await src.skip(padded(size)))) throw truncated(at);
      continue;
    }
    if (type === TYPE.gnuMultiVolume)
      throw new Ext4Error('UNSUPPORTED_FEATURE', `multi-volume archives are not supported (archive offset ${at})`);

    const pax = effective(globals, local);
    const localRecords = local;
    local = [];
    const gnu = h.toString('latin1', FIELD.magic[0], FIELD.magic[0] + 6) === GNU_MAGIC;
    let name: Buffer;
    if (pax.has('path')) name = pax.get('path')!;
    else if (longName) name = longName;
    else {
      const base = field(h, FIELD.name);
      const prefix = gnu ? Buffer.alloc(0) : field(h, FIELD.prefix);
      name = prefix.length ? Buffer.concat([prefix, Buffer.from('/'), base]) : base;
    }
    const linkName = pax.get('linkpath') ?? longLink ?? field(h, FIELD.linkname);
    longName = longLink = undefined;
    let kind = kindOf(type);
    if (!kind) {
      opts.onWarning?.(
        `${name.toString('utf8')}: unknown entry type '${String.fromCharCode(type)}', read as a regular file (like tar)`,
      );
      kind = 'file';
    }
    if (kind === 'file' && (type === 0 || type === TYPE.file) && name.length && name[name.length - 1] === 0x2f)
      kind = 'dir'; // old archives mark directories by a trailing slash only
    const numOf = (key: string, f: readonly [number, number], what: string) =>
      pax.has(key) ? paxInt(pax.get(key)!, key, at) : num(h, f, what, at);
    const timeOf = (key: string) =>
      pax.has(key) ? parsePaxTime(pax.get(key)!.toString('latin1'), key, at) : undefined;
    const dataSize = numOf('size', FIELD.size, 'size');
    const e: TarEntry = {
      name,
      kind,
      perm: num(h, FIELD.mode, 'mode', at) & 0o7777,
      uid: numOf('uid', FIELD.uid, 'uid'),
      gid: numOf('gid', FIELD.gid, 'gid'),
      mtime: timeOf('mtime') ?? { sec: num(h, FIELD.mtime, 'mtime', at), nsec: 0 },
      atime:
        timeOf('atime') ??
        (gnu && h[GNU_FIELD.atime[0]] ? { sec: num(h, GNU_FIELD.atime, 'atime', at), nsec: 0 } : undefined),
      ctime:
        timeOf('ctime') ??
        (gnu && h[GNU_FIELD.ctime[0]] ? { sec: num(h, GNU_FIELD.ctime, 'ctime', at), nsec: 0 } : undefined),
      size: 0,
      linkName: Buffer.from(linkName),
      devMajor: 0,
      devMinor: 0,
      xattrs: [],
      offset: at,
    };
    if (kind === 'chardev' || kind === 'blockdev') {
      e.devMajor = numOf('SCHILY.devmajor', FIELD.devmajor, 'devmajor');
      e.devMinor = numOf('SCHILY.devminor', FIELD.devminor, 'devminor');
    }
    for (const [k, v] of pax) {
      if (k.startsWith(PAX.xattrPrefix))
        e.xattrs.push({ name: xattrNameOfKeyword(k.slice(PAX.xattrPrefix.length)), value: v });
      else if (k.startsWith('LIBARCHIVE.xattr.'))
        e.xattrs.push({ name: urlDecode(k.slice(17), at), value: Buffer.from(v.toString('latin1'), 'base64') });
      else if (k === 'RHT.security.selinux') e.xattrs.push({ name: 'security.selinux', value: v });
      else if (k === PAX.aclAccess) e.aclAccess = v.toString('utf8');
      else if (k === PAX.aclDefault) e.aclDefault = v.toString('utf8');
    }
    // The last value of a repeated attribute wins; nothing is stored twice.
    if (e.xattrs.length > 1) e.xattrs = [...new Map(e.xattrs.map((x) => [x.name, x])).values()];

    // Sparse files: the map, the real name and size.
    let segments: [number, number][] | undefined;
    let realSize = dataSize;
    let mapBytes = 0;
    if (type === TYPE.gnuSparse) {
      segments = [];
      gnuSparsePairs(h, GNU_FIELD.sparse[0], 4, at, segments);
      realSize = num(h, GNU_FIELD.realsize, 'realsize', at);
      let more = h[GNU_FIELD.isextended[0]] !== 0;
      while (more) {
        const x = await src.read(TAR_BLOCK);
        if (x.length < TAR_BLOCK) throw truncated(at);
        gnuSparsePairs(x, 0, GNU_SPARSE_EXT_ENTRIES, at, segments);
        more = x[GNU_SPARSE_EXT_FLAG] !== 0;
      }
    } else if (pax.has('GNU.sparse.major') || pax.has('GNU.sparse.map') || pax.has('GNU.sparse.offset')) {
      if (pax.has('GNU.sparse.name')) e.name = pax.get('GNU.sparse.name')!;
      const rs = pax.get('GNU.sparse.realsize') ?? pax.get('GNU.sparse.size');
      if (rs) realSize = paxInt(rs, 'GNU.sparse.realsize', at);
      if (pax.has('GNU.sparse.major')) {
        const major = paxInt(pax.get('GNU.sparse.major')!, 'GNU.sparse.major', at);
        if (major !== 1)
          throw new Ext4Error('UNSUPPORTED_FEATURE', `GNU sparse format ${major} (archive offset ${at})`);
        // 1.0: the map is decimal lines at the start of the data, padded to a whole record.
        const nums: number[] = [];
        let text = '';
        let want = 1;
        while (nums.length < want) {
          const blk = await src.read(TAR_BLOCK);
          if (blk.length < TAR_BLOCK) throw truncated(at);
          mapBytes += TAR_BLOCK;
          text += blk.toString('latin1');
          const lines = text.split('\n');
          text = lines.pop()!;
          for (const l of lines) {
            if (nums.length >= want) break;
            if (!/^\d+$/.test(l)) throw bad('malformed GNU sparse 1.0 map', at);
            nums.push(Number(l));
            if (nums.length === 1) want = 1 + 2 * nums[0]!;
          }
          if (mapBytes > dataSize) throw bad('the GNU sparse 1.0 map is larger than the entry', at);
        }
        segments = [];
        for (let i = 1; i < nums.length; i += 2) segments.push([nums[i]!, nums[i + 1]!]);
      } else if (pax.has('GNU.sparse.map')) {
        const parts = pax.get('GNU.sparse.map')!.toString('latin1').split(',');
        if (parts.length % 2 || parts.some((p) => !/^\d+$/.test(p))) throw bad('malformed GNU.sparse.map', at);
        segments = [];
        for (let i = 0; i + 1 < parts.length; i += 2) segments.push([Number(parts[i]), Number(parts[i + 1])]);
      } else {
        segments = [];
        let off: number | undefined;
        for (const [k, v] of localRecords) {
          if (k === 'GNU.sparse.offset') off = paxInt(v, k, at);
          else if (k === 'GNU.sparse.numbytes') {
            if (off === undefined) throw bad('GNU.sparse.numbytes without an offset', at);
            segments.push([off, paxInt(v, k, at)]);
            off = undefined;
          }
        }
      }
    }
    const storedBytes = dataSize - mapBytes;
    if (kind === 'file') {
      e.size = segments ? realSize : storedBytes;
      if (segments) {
        // A trailing empty segment only records the size.
        segments = segments.filter(([, n]) => n > 0);
        checkSegments(segments, realSize, storedBytes, at);
      }
      if (storedBytes > 0) {
        const ref = await src.keep(storedBytes);
        if (!ref) throw truncated(at);
        // Literals of two fixed shapes: a spread made a hidden class per entry (100 bytes each, kept
        // for every file of the archive).
        if (segments) {
          let sum = 0;
          const storedAt = segments.map(([, n]) => (sum += n) - n);
          e.data = { fd: ref.fd, offset: ref.offset, length: storedBytes, segments, storedAt };
        } else e.data = { fd: ref.fd, offset: ref.offset, length: storedBytes };
        if (!(await src.skip(padded(dataSize) - dataSize))) throw truncated(at);
      } else if (!(await src.skip(padded(dataSize) - mapBytes))) throw truncated(at);
    } else if (dataSize > 0 && !(await src.skip(padded(dataSize)))) throw truncated(at);
    yield e;
  }
}
