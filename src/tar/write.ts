/**
 * Exports an image subtree as a POSIX pax tar archive (`extract IMG PATH --tar OUT`), holding what the
 * kernel shows of it: every file type tar knows, permission bits with setuid/setgid/sticky, numeric
 * owners, times to the nanosecond, extended attributes and POSIX ACLs, hard links, device numbers, and
 * holes (GNU sparse format 1.0), so that GNU tar run as root recreates it:
 * `tar -x --xattrs --xattrs-include='*' --acls --numeric-owner -G`.
 *
 * The archive is streamed: headers are built per entry, file data goes from the reader's read-ahead
 * window to the output (small pieces gathered in one reused buffer), so memory does not grow with file
 * sizes. Facts of the format come from POSIX.1-2017 `pax` and the GNU tar manual; the exact records GNU
 * tar 1.34 writes and restores were observed by running it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Ext4Error } from '../ext4/errors.js';
import { Ext4Reader } from '../fs/reader.js';
import { fileTypeOf, type FileType } from '../ext4/filetype.js';
import { FL_INLINE_DATA, S_IFDIR, S_IFMT, type Inode, type Timestamp } from '../ext4/inode.js';
import { aclToText } from './acl.js';
import { ENTRY_ERRORS, safeName } from '../extract.js';
import { writeAtomically } from '../image.js';
import type { XattrEntry } from '../source/types.js';
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

/** Where the archive goes: a file path (written atomically) or an open descriptor (standard output: 1). */
export type TarOutput = string | { fd: number };

export interface TarExportOptions {
  /** Called for each entry left out (sockets, unreadable entries) and other notices. */
  onWarning?: (message: string) => void;
  /** fsync an archive file before it is renamed into place (default true; not used for a descriptor). */
  sync?: boolean;
}

export interface TarExportResult {
  /** Archive members written (pax extended headers not counted). */
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  /** Members of type '1': further names of an inode already in the archive. */
  hardlinks: number;
  devices: number;
  fifos: number;
  /** Sockets left out, as tar does (a warning names each). */
  socketsSkipped: number;
  /** Regular files stored with their holes (GNU sparse format 1.0). */
  sparseFiles: number;
  /** Sum of the regular files' sizes (holes included). */
  bytes: number;
  /** Bytes of the archive. */
  archiveBytes: number;
  /**
   * Entries that could not be read from the image (encrypted, compressed, damaged, an unsafe name) and
   * were left out, with what stopped each; everything else is in the archive. Empty when it is complete.
   */
  unreadable: { path: string; code: string; message: string }[];
}

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
/** Start the host's write-back of an archive file every so many bytes, so writing and flushing overlap. */
const FLUSH_EVERY = 64 << 20;

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
class ArchiveStream {
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

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/** Writes everything to a descriptor: a pipe set non-blocking by another user of it is waited on. */
function fdWriter(fd: number): (b: Uint8Array) => void {
  return (b) => {
    let done = 0;
    while (done < b.length) {
      try {
        done += fs.writeSync(fd, b, done, b.length - done);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') {
          Atomics.wait(sleepCell, 0, 0, 5);
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

/** The data of a regular file as (offset, length) segments; holes and unwritten extents are the rest. */
function dataSegments(reader: Ext4Reader, ino: number, i: Inode): [number, number][] {
  const size = i.size;
  if (i.flags & FL_INLINE_DATA) {
    if (size > reader.inlineData(ino, i).length)
      throw new Ext4Error('CORRUPT', `inode ${ino}: inline data shorter than the file size`, { inode: ino });
    return size ? [[0, size]] : [];
  }
  const bs = reader.blockSize;
  const segs: [number, number][] = [];
  for (const r of reader.blockRuns(ino, i)) {
    const start = r.lblk * bs;
    if (start >= size) break;
    if (r.uninit) continue;
    const end = Math.min(size, (r.lblk + r.len) * bs);
    const last = segs[segs.length - 1];
    if (last && last[0] + last[1] === start) last[1] += end - start;
    else segs.push([start, end - start]);
  }
  return segs;
}

/** The GNU sparse 1.0 map: the count, then offset and length of each segment, one decimal a line. */
function sparseMap(segs: [number, number][], size: number): Buffer {
  const all = [...segs];
  const last = all[all.length - 1];
  // A file ending in a hole gets an empty last segment at its size, so the size is restored.
  if (!last || last[0] + last[1] < size) all.push([size, 0]);
  const text = `${all.length}\n${all.map(([o, l]) => `${o}\n${l}\n`).join('')}`;
  const b = Buffer.alloc(padded(text.length));
  b.write(text, 'ascii');
  return b;
}

/**
 * Writes the subtree at `srcPath` of the image as a pax tar archive to `output`. A directory's entries
 * are named as `tar -C DIR -cf - .` names them (`./`, `./etc/`, `./etc/passwd`), children in byte order
 * of their names; any other file is one member named by its base name. An entry that cannot be read is
 * left out with a warning and listed in `unreadable`; everything else is archived. An archive file is
 * written to a temporary file beside it and renamed into place when complete: on an error nothing is
 * left at the target (an existing file there is untouched).
 */
export function exportTar(
  reader: Ext4Reader,
  srcPath: string,
  output: TarOutput,
  opts: TarExportOptions = {},
): TarExportResult {
  const srcIno = reader.lookup(srcPath);
  const srcInode = reader.inode(srcIno);
  if (typeof output === 'string') {
    return writeAtomically(
      output,
      (dev) => {
        let pos = 0;
        let flushed = 0;
        return writeArchive(
          reader,
          srcPath,
          srcIno,
          srcInode,
          (b) => {
            dev.write(pos, b);
            pos += b.length;
            if (pos - flushed >= FLUSH_EVERY) {
              dev.startFlush();
              flushed = pos;
            }
          },
          opts,
        );
      },
      { sync: opts.sync, notAFileHint: 'write the archive to standard output (-) to send it elsewhere' },
    );
  }
  return writeArchive(reader, srcPath, srcIno, srcInode, fdWriter(output.fd), opts);
}

function writeArchive(
  reader: Ext4Reader,
  srcPath: string,
  srcIno: number,
  srcInode: Inode,
  out: (b: Uint8Array) => void,
  opts: TarExportOptions,
): TarExportResult {
  const result: TarExportResult = {
    entries: 0,
    files: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    devices: 0,
    fifos: 0,
    socketsSkipped: 0,
    sparseFiles: 0,
    bytes: 0,
    archiveBytes: 0,
    unreadable: [],
  };
  const s = new ArchiveStream(out);
  /** The member name of each inode with more than one link already in the archive. */
  const links = new Map<number, Uint8Array>();
  const times = (i: Inode) => ({ mtime: i.mtime, atime: i.atime, ctime: i.ctime });
  const owner = (i: Inode) => ({ perm: i.mode & 0o7777, uid: i.uid, gid: i.gid });

  const skip = (where: string, e: unknown) => {
    if (!(e instanceof Ext4Error) || !ENTRY_ERRORS.has(e.code)) throw e;
    result.unreadable.push({ path: where, code: e.code, message: e.message });
    opts.onWarning?.(`${where}: not archived: ${e.message}`);
  };

  /**
   * One entry: everything that can fail on a damaged or unreadable entry (the inode, the listing, the
   * block map, the link target, the attributes) is read first, so a skipped entry leaves nothing in
   * the archive; `emit` then writes the member (and a directory's children).
   */
  const visit = (ino: number, name: Uint8Array, where: string, depth: number, ancestors: Set<number>) => {
    let emit: (() => void) | undefined;
    try {
      emit = prepare(ino, name, where, depth, ancestors);
    } catch (e) {
      skip(where, e);
    }
    emit?.();
  };

  const member = (m: TarMember) => {
    s.write(encodeMemberHeaders(m));
    result.entries++;
  };

  const prepare = (
    ino: number,
    name: Uint8Array,
    where: string,
    depth: number,
    ancestors: Set<number>,
  ): (() => void) | undefined => {
    if (depth > 4096) throw new Ext4Error('CORRUPT', `${where}: directory tree deeper than 4096 levels`);
    const i = reader.inode(ino);
    const t: FileType | undefined = fileTypeOf(i.mode);
    if (t === undefined)
      throw new Ext4Error('CORRUPT', `${where}: inode ${ino} has an unknown file type`, { inode: ino });
    if (t === 'socket') {
      result.socketsSkipped++;
      opts.onWarning?.(`${where}: socket not archived (tar has no socket type)`);
      return undefined;
    }
    const linked = t !== 'dir' && i.linksCount > 1;
    const first = linked ? links.get(ino) : undefined;
    if (first)
      return () => {
        member({ name, type: TYPE.hardlink, ...owner(i), size: 0, ...times(i), linkName: first });
        result.hardlinks++;
      };
    const remember = () => {
      if (linked) links.set(ino, name);
    };
    switch (t) {
      case 'dir': {
        if (ancestors.has(ino))
          throw new Ext4Error('CORRUPT', `${where}: directory loop through inode ${ino}`, { inode: ino });
        const entries = reader.readDir(ino, i).sort((a, b) => Buffer.compare(a.name, b.name));
        const xattrs = reader.xattrs(ino);
        const dirName = name[name.length - 1] === SLASH ? name : Buffer.concat([name, Buffer.from('/')]);
        return () => {
          member({ name: dirName, type: TYPE.dir, ...owner(i), size: 0, ...times(i), xattrs });
          result.dirs++;
          const inside = where === '/' ? '/' : `${where}/`;
          const below = new Set(ancestors).add(ino);
          for (const e of entries) {
            const shown = inside + Buffer.from(e.name).toString('utf8');
            try {
              safeName(e.name, where);
            } catch (err) {
              skip(shown, err);
              continue;
            }
            const child = Buffer.concat([dirName, e.name]);
            visit(e.inode, child, shown, depth + 1, below);
          }
        };
      }
      case 'file': {
        reader.checkReadable(ino, i);
        const segs = dataSegments(reader, ino, i);
        const xattrs = reader.xattrs(ino);
        const dataBytes = segs.reduce((a, [, l]) => a + l, 0);
        const sparse = dataBytes < i.size;
        const map = sparse ? sparseMap(segs, i.size) : undefined;
        return () => {
          const size = (map?.length ?? 0) + dataBytes;
          member({
            name,
            type: TYPE.file,
            ...owner(i),
            size,
            ...times(i),
            sparseRealSize: sparse ? i.size : undefined,
            xattrs,
          });
          if (map) s.write(map);
          // The data must arrive as the map said: anything else would desynchronise the archive.
          let seg = 0;
          let within = 0;
          let written = 0;
          reader.readFile(
            ino,
            (data, off, len) => {
              if (!data) return;
              const at = segs[seg];
              if (!at || off !== at[0] + within || within + len > at[1])
                throw new Ext4Error('CORRUPT', `${where}: file data changed while it was archived`, { inode: ino });
              s.write(data);
              written += len;
              within += len;
              if (within === at[1]) {
                seg++;
                within = 0;
              }
            },
            i,
          );
          if (written !== dataBytes)
            throw new Ext4Error('CORRUPT', `${where}: file data changed while it was archived`, { inode: ino });
          s.pad();
          remember();
          result.files++;
          result.bytes += i.size;
          if (sparse) result.sparseFiles++;
        };
      }
      case 'symlink': {
        const target = reader.readLink(ino, i);
        const xattrs = reader.xattrs(ino);
        return () => {
          member({ name, type: TYPE.symlink, ...owner(i), size: 0, ...times(i), linkName: target, xattrs });
          remember();
          result.symlinks++;
        };
      }
      case 'chardev':
      case 'blockdev':
      case 'fifo': {
        const dev = t === 'fifo' ? undefined : reader.deviceNumbers(i);
        const xattrs = reader.xattrs(ino);
        const type = t === 'fifo' ? TYPE.fifo : t === 'chardev' ? TYPE.chardev : TYPE.blockdev;
        return () => {
          member({ name, type, ...owner(i), size: 0, ...times(i), dev, xattrs });
          remember();
          if (t === 'fifo') result.fifos++;
          else result.devices++;
        };
      }
    }
  };

  const isDir = (srcInode.mode & S_IFMT) === S_IFDIR;
  if (isDir) visit(srcIno, Buffer.from('./'), path.posix.resolve('/', srcPath), 0, new Set());
  else {
    const resolved = path.posix.resolve('/', srcPath);
    visit(srcIno, Buffer.from(path.posix.basename(resolved), 'utf8'), resolved, 0, new Set());
  }
  // The end of the archive: two zero records.
  s.zeros(2 * TAR_BLOCK);
  s.flush();
  result.archiveBytes = s.position;
  return result;
}
