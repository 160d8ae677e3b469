/**
 * The pax tar archive writer: one member's headers (pax extended header, then ustar), the member data
 * gathered into large writes, and GNU sparse 1.0 maps, holding every file type tar knows, permission
 * bits with setuid/setgid/sticky, numeric owners, times to the nanosecond, extended attributes and
 * POSIX ACLs, hard links and device numbers, so that GNU tar run as root recreates what it is given:
 * `tar -x --xattrs --xattrs-include='*' --acls --numeric-owner -G`. What goes into an archive, and in
 * what order, is the exporter's (tree/tar-export.ts).
 *
 * Facts of the format come from POSIX.1-2017 `pax` and the GNU tar manual; the exact records GNU tar
 * 1.34 writes and restores were observed by running it.
 */
import * as fs from 'node:fs';
import { Ext4Error } from '../core/errors.js';
import type { Timestamp, XattrEntry } from '../core/types.js';
import { sleepSync } from '../core/sleep.js';
import { aclToText } from './acl.js';
import {
  FIELD,
  PAX,
  TAR_BLOCK,
  TYPE,
  USTAR_MAGIC,
  USTAR_VERSION,
  encodeBytes,
  encodeNumber,
  encodeOctal,
  padded,
  paxRecord,
  paxTime,
  setHeaderChecksum,
  xattrKeyword,
} from './header.js';

/** What one archive member's headers say. */
export interface TarMember {
  /** The member name (directories end with '/'), raw bytes. */
  name: Uint8Array;
  type: number;
  /** Permission bits (0o7777). */
  perm: number;
  uid: number;
  gid: number;
  /** Bytes stored after the header (for a sparse file: its map and data segments). */
  size: number;
  mtime: Timestamp;
  atime: Timestamp;
  ctime: Timestamp;
  /** Symlink target, or the name a hard link points to. */
  linkName?: Uint8Array;
  dev?: [major: number, minor: number];
  /** A sparse file (GNU format 1.0): its real size; the header names a placeholder, pax the real name. */
  sparseRealSize?: number;
  xattrs?: readonly XattrEntry[];
}

const SLASH = 0x2f;
/** Gathered output; data pieces at least this large are written straight from the reader's buffer. */
const OUT_BUFFER = 1 << 20;

/** A name the ustar fields can hold as it is: printable ASCII, short enough. */
function fitsField(b: Uint8Array, len: number): boolean {
  if (b.length > len) return false;
  for (const c of b) if (c < 0x20 || c > 0x7e) return false;
  return true;
}

/** `dir/<what>/base` beside a member name (`./a/b/` gives `./a/<what>/b`), cut to the name field. */
function besideName(name: Uint8Array, what: string): Uint8Array {
  let end = name.length;
  while (end > 1 && name[end - 1] === SLASH) end--;
  const cut = name.lastIndexOf(SLASH, end - 1);
  const dir = cut < 0 ? Buffer.from('.') : Buffer.from(name.subarray(0, cut));
  const base = Buffer.from(name.subarray(cut + 1, end));
  return Buffer.concat([dir, Buffer.from(`/${what}/`), base]).subarray(0, FIELD.name[1]);
}

/**
 * The headers of one member: a pax extended header ('x') when anything does not fit the ustar fields
 * or needs more precision, then the ustar header. Times always go in pax records (nanoseconds, and
 * atime/ctime have no ustar field), as GNU tar's posix format does.
 */
export function encodeMemberHeaders(m: TarMember): Buffer {
  const h = new Uint8Array(TAR_BLOCK);
  const records: Buffer[] = [];
  const name = m.sparseRealSize === undefined ? m.name : besideName(m.name, 'GNUSparseFile.0');
  if (m.sparseRealSize !== undefined) {
    records.push(
      paxRecord(PAX.sparseMajor, '1'),
      paxRecord(PAX.sparseMinor, '0'),
      paxRecord(PAX.sparseName, m.name),
      paxRecord(PAX.sparseRealSize, String(m.sparseRealSize)),
    );
  } else if (!fitsField(m.name, FIELD.name[1])) records.push(paxRecord(PAX.path, m.name));
  encodeBytes(h, FIELD.name, name);
  if (m.linkName) {
    if (!fitsField(m.linkName, FIELD.linkname[1])) records.push(paxRecord(PAX.linkpath, m.linkName));
    encodeBytes(h, FIELD.linkname, m.linkName);
  }
  encodeOctal(h, FIELD.mode, m.perm & 0o7777);
  if (!encodeNumber(h, FIELD.uid, m.uid)) records.push(paxRecord(PAX.uid, String(m.uid)));
  if (!encodeNumber(h, FIELD.gid, m.gid)) records.push(paxRecord(PAX.gid, String(m.gid)));
  if (!encodeNumber(h, FIELD.size, m.size)) records.push(paxRecord(PAX.size, String(m.size)));
  encodeNumber(h, FIELD.mtime, m.mtime.sec);
  records.push(
    paxRecord(PAX.mtime, paxTime(m.mtime)),
    paxRecord(PAX.atime, paxTime(m.atime)),
    paxRecord(PAX.ctime, paxTime(m.ctime)),
  );
  h[FIELD.typeflag[0]] = m.type;
  encodeBytes(h, FIELD.magic, Buffer.from(USTAR_MAGIC, 'latin1'));
  encodeBytes(h, FIELD.version, Buffer.from(USTAR_VERSION, 'latin1'));
  // uname/gname stay empty: owners are numeric (an image's ids mean nothing on the archiving host).
  encodeNumber(h, FIELD.devmajor, m.dev?.[0] ?? 0);
  encodeNumber(h, FIELD.devminor, m.dev?.[1] ?? 0);
  for (const x of m.xattrs ?? []) {
    const which =
      x.name === 'system.posix_acl_access'
        ? PAX.aclAccess
        : x.name === 'system.posix_acl_default'
          ? PAX.aclDefault
          : undefined;
    // GNU tar --acls restores the text form; --xattrs --xattrs-include='*' the attribute itself.
    const text = which ? aclToText(x.value) : undefined;
    if (which && text !== undefined) records.push(paxRecord(which, text));
  }
  for (const x of m.xattrs ?? []) records.push(paxRecord(xattrKeyword(x.name), x.value));
  setHeaderChecksum(h);

  const body = Buffer.concat(records);
  const x = new Uint8Array(TAR_BLOCK);
  encodeBytes(x, FIELD.name, besideName(m.name, 'PaxHeaders'));
  encodeOctal(x, FIELD.mode, 0o644);
  encodeOctal(x, FIELD.uid, 0);
  encodeOctal(x, FIELD.gid, 0);
  encodeNumber(x, FIELD.size, body.length);
  encodeNumber(x, FIELD.mtime, m.mtime.sec >= 0 ? m.mtime.sec : 0);
  x[FIELD.typeflag[0]] = TYPE.paxExtended;
  encodeBytes(x, FIELD.magic, Buffer.from(USTAR_MAGIC, 'latin1'));
  encodeBytes(x, FIELD.version, Buffer.from(USTAR_VERSION, 'latin1'));
  setHeaderChecksum(x);
  return Buffer.concat([x, body, Buffer.alloc(padded(body.length) - body.length), h]);
}

/** A sequential writer over the output with one reused gathering buffer. */
export class ArchiveStream {
  private readonly buf = Buffer.allocUnsafe(OUT_BUFFER);
  private used = 0;
  position = 0;
  constructor(private readonly out: (b: Uint8Array) => void) {}

  write(b: Uint8Array): void {
    this.position += b.length;
    if (b.length >= OUT_BUFFER / 4) {
      this.flush();
      this.out(b);
      return;
    }
    if (this.used + b.length > OUT_BUFFER) this.flush();
    this.buf.set(b, this.used);
    this.used += b.length;
  }

  zeros(n: number): void {
    this.position += n;
    while (n > 0) {
      if (this.used === OUT_BUFFER) this.flush();
      const k = Math.min(n, OUT_BUFFER - this.used);
      this.buf.fill(0, this.used, this.used + k);
      this.used += k;
      n -= k;
    }
  }

  /** Pads the member that ends here to whole records. */
  pad(): void {
    this.zeros(padded(this.position) - this.position);
  }

  flush(): void {
    if (this.used) this.out(this.buf.subarray(0, this.used));
    this.used = 0;
  }
}

/** Writes everything to a descriptor: a pipe set non-blocking by another user of it is waited on. */
export function fdWriter(fd: number): (b: Uint8Array) => void {
  return (b) => {
    let done = 0;
    while (done < b.length) {
      try {
        done += fs.writeSync(fd, b, done, b.length - done);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') {
          sleepSync(5);
          continue;
        }
        throw new Ext4Error(
          'IO_ERROR',
          code === 'EPIPE'
            ? 'cannot write the archive: the reading end of the pipe was closed'
            : `cannot write the archive: ${(e as Error).message}`,
          { cause: e },
        );
      }
    }
  };
}

/** The GNU sparse 1.0 map: the count, then offset and length of each segment, one decimal a line. */
export function sparseMap(segs: [number, number][], size: number): Buffer {
  const all = [...segs];
  const last = all[all.length - 1];
  // A file ending in a hole gets an empty last segment at its size, so the size is restored.
  if (!last || last[0] + last[1] < size) all.push([size, 0]);
  const text = `${all.length}\n${all.map(([o, l]) => `${o}\n${l}\n`).join('')}`;
  const b = Buffer.alloc(padded(text.length));
  b.write(text, 'ascii');
  return b;
}
