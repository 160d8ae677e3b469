/**
 * Extraction (like `debugfs -R "rdump PATH DEST"`): recreates an image subtree under a host directory,
 * never writing outside it: every name is checked, nothing existing is followed through a symlink, and
 * files are created exclusively.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Ext4Error } from './ext4/errors.js';
import { Ext4Reader } from './fs/reader.js';
import { fileTypeOf } from './ext4/filetype.js';
import { S_IFMT, S_IFDIR, type Inode, type Timestamp } from './ext4/inode.js';
import { isDotOrDotDot } from './ext4/dirent.js';

export interface ExtractOptions {
  /** Restore owners (default: when running as root). */
  owners?: boolean;
  /** Write the extended attributes as a `setfattr --restore` file here (Node cannot set them itself). */
  xattrDump?: string;
  onWarning?: (message: string) => void;
}

export interface ExtractResult {
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  specialSkipped: number;
  bytes: number;
  /**
   * Entries that could not be read from the image (encrypted, compressed, damaged) and were left out,
   * with what stopped each; everything else was extracted. Empty when the extract is complete.
   */
  unreadable: { path: string; code: string; message: string }[];
}

/** Errors that concern one entry of the image (skipped), not the destination or the device (fatal). */
export const ENTRY_ERRORS = new Set(['UNSUPPORTED_FEATURE', 'CORRUPT', 'BAD_CHECKSUM']);

/** A directory entry's name as a host name; CORRUPT for '', '.', '..' and names holding '/' or NUL. */
export function safeName(name: Uint8Array, where: string): string {
  const s = Buffer.from(name);
  if (s.length === 0 || s.includes(0x2f) || s.includes(0) || isDotOrDotDot(s))
    throw new Ext4Error('CORRUPT', `unsafe entry name ${JSON.stringify(s.toString('latin1'))} in ${where}`);
  return s.toString('utf8');
}

/**
 * Node.js sets times from a double (microsecond precision) and treats negative numbers as "now", so
 * times before 1970 go through a Date (millisecond precision).
 */
// Half a microsecond keeps the double's rounding from landing one microsecond short.
const sec = (t: Timestamp): number | Date =>
  t.sec < 0
    ? new Date(t.sec * 1000 + Math.floor(t.nsec / 1e6))
    : t.sec + (Math.floor(t.nsec / 1000) * 1000 + 500) / 1e9;

function hostError(what: string, p: string, e: unknown): Ext4Error {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'EEXIST')
    return new Ext4Error('IO_ERROR', `${p} already exists; extract does not overwrite or follow existing entries`, {
      path: p,
      cause: e,
    });
  return new Ext4Error('IO_ERROR', `cannot ${what} ${p}: ${err.message}`, { path: p, cause: e });
}

/** Extracts the image path `src` into the existing host directory `dest`. */
export function extract(reader: Ext4Reader, src: string, dest: string, opts: ExtractOptions = {}): ExtractResult {
  const result: ExtractResult = {
    files: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    specialSkipped: 0,
    bytes: 0,
    unreadable: [],
  };
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dest);
  } catch (e) {
    throw hostError('open', dest, e);
  }
  if (!st.isDirectory()) throw new Ext4Error('IO_ERROR', `${dest} is not a directory`, { path: dest });
  const owners = opts.owners ?? (typeof process.getuid === 'function' && process.getuid() === 0);
  const links = new Map<number, string>();
  const dump: string[] = [];
  const fixups: { p: string; i: Inode; isDir: boolean }[] = [];

  const recordXattrs = (ino: number, p: string) => {
    if (!opts.xattrDump) return;
    const xs = reader.xattrs(ino);
    if (!xs.length) return;
    dump.push(
      `# file: ${p.replace(/\\/g, '\\\\').replace(/[\x00-\x1f\x7f]/g, (c) => '\\' + c.charCodeAt(0).toString(8).padStart(3, '0'))}`,
    );
    for (const x of xs) dump.push(`${x.name}=0x${Buffer.from(x.value).toString('hex')}`);
    dump.push('');
  };

  /** Creates a regular file and sets its owner, mode and times through the open descriptor. */
  const writeFile = (ino: number, i: Inode, p: string) => {
    let fd: number;
    try {
      fd = fs.openSync(
        p,
        fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
        i.mode & 0o777,
      );
    } catch (e) {
      throw hostError('create', p, e);
    }
    let done = false;
    try {
      let end = 0;
      reader.readFile(
        ino,
        (data, off) => {
          if (!data) return;
          let done = 0;
          while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, off + done);
          end = off + data.length;
        },
        i,
      );
      // A trailing hole only needs the size set.
      if (end !== i.size) fs.ftruncateSync(fd, i.size);
      // What the new file got is checked, not assumed: the umask or a default ACL on the destination
      // trims the creation bits, a setgid or grpid parent gives it the parent's group. Owner before
      // mode: changing the owner clears setuid/setgid.
      const st = fs.fstatSync(fd);
      const chown = owners && (st.uid !== i.uid || st.gid !== i.gid);
      if (chown) fs.fchownSync(fd, i.uid, i.gid);
      if (chown || (st.mode & 0o7777) !== (i.mode & 0o7777)) fs.fchmodSync(fd, i.mode & 0o7777);
      fs.futimesSync(fd, sec(i.atime), sec(i.mtime));
      done = true;
    } catch (e) {
      throw e instanceof Ext4Error ? e : hostError('write or set the attributes of', p, e);
    } finally {
      fs.closeSync(fd);
      // A file whose content could not be read is not left behind half written.
      if (!done) fs.rmSync(p, { force: true });
    }
    result.bytes += i.size;
    result.files++;
  };

  /**
   * One entry we cannot read (encrypted, compressed, damaged) does not stop the rest, as with debugfs
   * rdump: it is named in a warning, left out, and reported in the result. Host errors stop everything.
   */
  const visit = (ino: number, p: string, where: string, depth: number, ancestors: Set<number>) => {
    try {
      visitEntry(ino, p, where, depth, ancestors);
    } catch (e) {
      if (!(e instanceof Ext4Error) || !ENTRY_ERRORS.has(e.code)) throw e;
      result.unreadable.push({ path: where, code: e.code, message: e.message });
      opts.onWarning?.(`${where}: not extracted: ${e.message}`);
    }
  };

  /** The entries of a directory at host path `p` (image path `where`). */
  const visitChildren = (
    entries: { inode: number; name: Uint8Array }[],
    p: string,
    where: string,
    depth: number,
    ancestors: Set<number>,
  ) => {
    const inside = where === '/' ? '/' : `${where}/`;
    const host = p === '/' ? '/' : `${p}/`;
    for (const e of entries) {
      let name: string;
      try {
        name = safeName(e.name, where);
      } catch (err) {
        const shown = inside + Buffer.from(e.name).toString('latin1');
        result.unreadable.push({ path: shown, code: 'CORRUPT', message: (err as Error).message });
        opts.onWarning?.(`${shown}: not extracted: ${(err as Error).message}`);
        continue;
      }
      // Names are checked (no '/', not '.' or '..'), so plain joining is exact and cheaper than path.join.
      visit(e.inode, host + name, inside + name, depth, ancestors);
    }
  };

  const visitEntry = (ino: number, p: string, where: string, depth: number, ancestors: Set<number>) => {
    if (depth > 4096) throw new Ext4Error('CORRUPT', `${where}: directory tree deeper than 4096 levels`);
    const i = reader.inode(ino);
    const t = fileTypeOf(i.mode);
    const linked = t === 'file' || t === 'symlink' ? i.linksCount > 1 : false;
    const first = linked ? links.get(ino) : undefined;
    if (first) {
      try {
        fs.linkSync(first, p);
      } catch (e) {
        throw hostError('link', p, e);
      }
      result.hardlinks++;
      return;
    }
    switch (t) {
      case 'dir': {
        if (ancestors.has(ino))
          throw new Ext4Error('CORRUPT', `${where}: directory loop through inode ${ino}`, { inode: ino });
        // Listed before it is created: a directory that cannot be listed is not made at all.
        const entries = reader.readDir(ino, i);
        try {
          fs.mkdirSync(p, 0o700);
        } catch (e) {
          const ex = fs.lstatSync(p, { throwIfNoEntry: false });
          if (!(ex && ex.isDirectory() && !ex.isSymbolicLink())) throw hostError('create', p, e);
        }
        result.dirs++;
        visitChildren(entries, p, where, depth + 1, new Set(ancestors).add(ino));
        break;
      }
      case 'file':
        writeFile(ino, i, p);
        if (linked) links.set(ino, p);
        break;
      case 'symlink': {
        const target = Buffer.from(reader.readLink(ino, i));
        try {
          fs.symlinkSync(target, p);
        } catch (e) {
          throw hostError('create', p, e);
        }
        if (linked) links.set(ino, p);
        result.symlinks++;
        break;
      }
      case undefined:
        throw new Ext4Error('CORRUPT', `${where}: inode ${ino} has an unknown file type`, { inode: ino });
      default:
        // Node.js cannot create device nodes, FIFOs or sockets.
        result.specialSkipped++;
        opts.onWarning?.(`${where}: ${t} not created (Node.js has no mknod)`);
        return;
    }
    recordXattrs(ino, p);
    // Regular files are finished already (through their descriptor); the rest is set at the end.
    if (t !== 'file') fixups.push({ p, i, isDir: t === 'dir' });
  };

  const srcIno = reader.lookup(src);
  const srcInode = reader.inode(srcIno);
  const isRootDir = (srcInode.mode & S_IFMT) === S_IFDIR && path.posix.resolve('/', src) === '/';
  if (isRootDir) {
    // rdump of / puts the root's contents straight into dest.
    visitChildren(reader.readDir(srcIno, srcInode), path.resolve(dest), '/', 1, new Set([srcIno]));
  } else {
    const base = path.posix.basename(path.posix.resolve('/', src));
    visit(srcIno, path.join(path.resolve(dest), safeName(Buffer.from(base), src)), src, 0, new Set());
  }

  // Metadata last, deepest first, so read-only directories do not block their own contents.
  for (const f of fixups.reverse()) {
    try {
      if (owners) fs.lchownSync(f.p, f.i.uid, f.i.gid);
      if (fileTypeOf(f.i.mode) !== 'symlink') fs.chmodSync(f.p, f.i.mode & 0o7777);
      fs.lutimesSync(f.p, sec(f.i.atime), sec(f.i.mtime));
    } catch (e) {
      throw hostError('set attributes of', f.p, e);
    }
  }
  if (opts.xattrDump) fs.writeFileSync(opts.xattrDump, dump.join('\n'));
  return result;
}
