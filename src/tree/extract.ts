/**
 * Extraction (like `debugfs -R "rdump PATH DEST"`): recreates an image subtree under a host directory,
 * never writing outside it: every name is checked (by the image source), nothing existing is followed
 * through a symlink, and files are created exclusively. A sink of the tree walk (tree/walk.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Ext4Error } from '../core/errors.js';
import { Ext4Reader } from '../fs/reader.js';
import { S_IFMT, S_IFDIR } from '../ext4/inode.js';
import type { SourceNode, Timestamp } from '../core/types.js';
import { imageNode, imageTreeSource } from './sources/image.js';
import { TreeWalk } from './walk.js';

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
  const dump: string[] = [];
  const fixups: { p: string; n: SourceNode }[] = [];

  const recordXattrs = (n: SourceNode, p: string) => {
    if (!opts.xattrDump) return;
    let xs;
    try {
      xs = n.xattrs();
    } catch (e) {
      // The entry is made; its attributes are what is missing, reported like any unreadable entry.
      return walk.unreadable(n.displayPath, e);
    }
    if (!xs.length) return;
    dump.push(
      `# file: ${p.replace(/\\/g, '\\\\').replace(/[\x00-\x1f\x7f]/g, (c) => '\\' + c.charCodeAt(0).toString(8).padStart(3, '0'))}`,
    );
    for (const x of xs) dump.push(`${x.name}=0x${Buffer.from(x.value).toString('hex')}`);
    dump.push('');
  };

  /** Creates a regular file and sets its owner, mode and times through the open descriptor. */
  const writeFile = (n: SourceNode, p: string): boolean => {
    let fd: number;
    try {
      fd = fs.openSync(
        p,
        fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
        n.perm & 0o777,
      );
    } catch (e) {
      throw hostError('create', p, e);
    }
    let done = false;
    try {
      let end = 0;
      const put = (data: Uint8Array, off: number) => {
        let done = 0;
        while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, off + done);
        end = off + data.length;
      };
      const d = n.openData();
      try {
        if (d.stream) d.stream(put);
        else copyData(d, n.size, put);
      } finally {
        d.close();
      }
      // A trailing hole only needs the size set.
      if (end !== n.size) fs.ftruncateSync(fd, n.size);
      // What the new file got is checked, not assumed: the umask or a default ACL on the destination
      // trims the creation bits, a setgid or grpid parent gives it the parent's group. Owner before
      // mode: changing the owner clears setuid/setgid.
      const st = fs.fstatSync(fd);
      const chown = owners && (st.uid !== n.uid || st.gid !== n.gid);
      if (chown) fs.fchownSync(fd, n.uid, n.gid);
      if (chown || (st.mode & 0o7777) !== n.perm) fs.fchmodSync(fd, n.perm);
      fs.futimesSync(fd, sec(n.atime), sec(n.mtime));
      done = true;
    } catch (e) {
      // One entry we cannot read does not stop the rest (as with debugfs rdump); host errors do.
      if (e instanceof Ext4Error) {
        walk.unreadable(n.displayPath, e);
        return false;
      }
      throw hostError('write or set the attributes of', p, e);
    } finally {
      fs.closeSync(fd);
      // A file whose content could not be read is not left behind half written.
      if (!done) fs.rmSync(p, { force: true });
    }
    result.bytes += n.size;
    result.files++;
    return true;
  };

  // Names are checked by the source (no '/', not '.' or '..'), so plain joining is exact and cheaper
  // than path.join.
  const hostPath = (dir: string, n: SourceNode) =>
    (dir === '/' ? '/' : `${dir}/`) + Buffer.from(n.name.buffer, n.name.byteOffset, n.name.length).toString('utf8');

  const walk: TreeWalk<string, string> = new TreeWalk(
    {
      dir(n, parent) {
        const p = hostPath(parent, n);
        try {
          fs.mkdirSync(p, 0o700);
        } catch (e) {
          const ex = fs.lstatSync(p, { throwIfNoEntry: false });
          if (!(ex && ex.isDirectory() && !ex.isSymbolicLink())) throw hostError('create', p, e);
        }
        result.dirs++;
        return p;
      },
      // Attributes after the entries; the rest of the metadata at the very end (see below).
      leave(n, p) {
        recordXattrs(n, p);
        fixups.push({ p, n });
      },
      leaf(n, parent) {
        const p = hostPath(parent, n);
        if (n.kind === 'file') {
          if (!writeFile(n, p)) return undefined;
          recordXattrs(n, p);
          return p;
        }
        if (n.kind === 'symlink') {
          const target = n.readLink();
          try {
            fs.symlinkSync(Buffer.from(target.buffer, target.byteOffset, target.length), p);
          } catch (e) {
            throw hostError('create', p, e);
          }
          result.symlinks++;
          recordXattrs(n, p);
          fixups.push({ p, n });
          return p;
        }
        // Node.js cannot create device nodes, FIFOs or sockets.
        result.specialSkipped++;
        opts.onWarning?.(`${n.displayPath}: ${n.kind} not created (Node.js has no mknod)`);
        return undefined;
      },
      link(n, parent, first) {
        const p = hostPath(parent, n);
        try {
          fs.linkSync(first, p);
        } catch (e) {
          throw hostError('link', p, e);
        }
        result.hardlinks++;
      },
    },
    {
      onUnreadable(where, e) {
        result.unreadable.push({ path: where, code: e.code, message: e.message });
        opts.onWarning?.(`${where}: not extracted: ${e.message}`);
      },
    },
  );

  const srcIno = reader.lookup(src);
  const srcInode = reader.inode(srcIno);
  const resolved = path.posix.resolve('/', src);
  if ((srcInode.mode & S_IFMT) === S_IFDIR && resolved === '/') {
    // rdump of / puts the root's contents straight into dest.
    walk.entries(imageTreeSource(reader, '/').root(), path.resolve(dest));
  } else {
    const base = Buffer.from(path.posix.basename(resolved), 'utf8');
    walk.entry(path.resolve(dest), src, () => imageNode(reader, srcIno, base, src));
  }

  // Metadata last, deepest first, so read-only directories do not block their own contents.
  for (const { p, n } of fixups.reverse()) {
    try {
      if (owners) fs.lchownSync(p, n.uid, n.gid);
      if (n.kind !== 'symlink') fs.chmodSync(p, n.perm);
      fs.lutimesSync(p, sec(n.atime), sec(n.mtime));
    } catch (e) {
      throw hostError('set attributes of', p, e);
    }
  }
  if (opts.xattrDump) fs.writeFileSync(opts.xattrDump, dump.join('\n'));
  return result;
}

/** A file's bytes by position, for sources that cannot stream them. */
function copyData(d: ReturnType<SourceNode['openData']>, size: number, put: (b: Uint8Array, off: number) => void) {
  const buf = new Uint8Array(Math.min(size, 1 << 20) || 1);
  for (let pos = 0; pos < size;) {
    const n = d.read(buf, Math.min(buf.length, size - pos), pos);
    if (n <= 0) break;
    put(buf.subarray(0, n), pos);
    pos += n;
  }
}
