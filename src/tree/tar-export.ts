/**
 * Exports an image subtree as a POSIX pax tar archive (`extract IMG PATH --tar OUT`): a sink of the tree
 * walk (tree/walk.ts) over the image source, writing members with tar/write.ts. The archive is streamed:
 * headers are built per entry, file data goes from the reader's read-ahead window to the output (small
 * pieces gathered in one reused buffer), so memory does not grow with file sizes.
 */
import * as path from 'node:path';
import { Ext4Error } from '../core/errors.js';
import { Ext4Reader } from '../fs/reader.js';
import { S_IFDIR, S_IFMT } from '../ext4/inode.js';
import type { SourceNode, XattrEntry } from '../core/types.js';
import { writeAtomically } from '../host/atomic.js';
import { imageNode } from './sources/image.js';
import { TAR_BLOCK, TYPE } from '../archive/header.js';
import { ArchiveStream, encodeMemberHeaders, fdWriter, sparseMap, type TarMember } from '../archive/write.js';
import { TreeWalk } from './walk.js';

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

/** Start the host's write-back of an archive file every so many bytes, so writing and flushing overlap. */
const FLUSH_EVERY = 64 << 20;
const SLASH = 0x2f;

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
  return writeArchive(reader, srcPath, srcIno, fdWriter(output.fd), opts);
}

function writeArchive(
  reader: Ext4Reader,
  srcPath: string,
  srcIno: number,
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
  const meta = (n: SourceNode) => ({
    perm: n.perm,
    uid: n.uid,
    gid: n.gid,
    mtime: n.mtime,
    atime: n.atime,
    ctime: n.ctime,
  });
  const member = (m: TarMember) => {
    s.write(encodeMemberHeaders(m));
    result.entries++;
  };
  /** The attributes, read before anything of the entry is written: one that cannot be read is left out. */
  const xattrsOf = (n: SourceNode): XattrEntry[] | undefined => {
    try {
      return n.xattrs();
    } catch (e) {
      walk.unreadable(n.displayPath, e);
      return undefined;
    }
  };
  // The directory handle is its member name ('./' at the top); the top entry's own name is `top`.
  const resolved = path.posix.resolve('/', srcPath);
  const top =
    (reader.inode(srcIno).mode & S_IFMT) === S_IFDIR
      ? Buffer.from('./')
      : Buffer.from(path.posix.basename(resolved), 'utf8');
  const nameOf = (n: SourceNode, parent: Uint8Array | undefined) =>
    parent === undefined ? top : Buffer.concat([parent, n.name]);

  const file = (n: SourceNode, name: Uint8Array, xattrs: XattrEntry[]) => {
    const data = n.openData();
    const segs = data.segments?.() ?? (n.size ? [[0, n.size] as [number, number]] : []);
    const dataBytes = segs.reduce((a, [, l]) => a + l, 0);
    const sparse = dataBytes < n.size;
    try {
      const map = sparse ? sparseMap(segs, n.size) : undefined;
      member({
        name,
        type: TYPE.file,
        ...meta(n),
        size: (map?.length ?? 0) + dataBytes,
        sparseRealSize: sparse ? n.size : undefined,
        xattrs,
      });
      if (map) s.write(map);
      // The data must arrive as the map said: anything else would desynchronise the archive.
      const changed = () =>
        new Ext4Error('CORRUPT', `${n.displayPath}: file data changed while it was archived`, { path: n.displayPath });
      let seg = 0;
      let within = 0;
      let written = 0;
      const put = (d: Uint8Array, off: number) => {
        const at = segs[seg];
        if (!at || off !== at[0] + within || within + d.length > at[1]) throw changed();
        s.write(d);
        written += d.length;
        within += d.length;
        if (within === at[1]) {
          seg++;
          within = 0;
        }
      };
      if (data.stream) data.stream(put);
      else {
        const buf = new Uint8Array(1 << 20);
        for (const [o, l] of segs)
          for (let at = o; at < o + l;) {
            const k = data.read(buf, Math.min(buf.length, o + l - at), at);
            if (k <= 0) throw changed();
            put(buf.subarray(0, k), at);
            at += k;
          }
      }
      if (written !== dataBytes) throw changed();
    } finally {
      data.close();
    }
    s.pad();
    result.files++;
    result.bytes += n.size;
    if (sparse) result.sparseFiles++;
  };

  const walk: TreeWalk<Uint8Array | undefined, Uint8Array> = new TreeWalk(
    {
      dir(n, parent) {
        const xattrs = xattrsOf(n);
        if (!xattrs) return undefined;
        const own = nameOf(n, parent);
        const name = own[own.length - 1] === SLASH ? own : Buffer.concat([own, Buffer.from('/')]);
        member({ name, type: TYPE.dir, ...meta(n), size: 0, xattrs });
        result.dirs++;
        return name;
      },
      leaf(n, parent) {
        if (n.kind === 'socket') {
          result.socketsSkipped++;
          opts.onWarning?.(`${n.displayPath}: socket not archived (tar has no socket type)`);
          return undefined;
        }
        const xattrs = xattrsOf(n);
        if (!xattrs) return undefined;
        const name = nameOf(n, parent);
        switch (n.kind) {
          case 'file':
            file(n, name, xattrs);
            break;
          case 'symlink':
            member({ name, type: TYPE.symlink, ...meta(n), size: 0, linkName: n.readLink(), xattrs });
            result.symlinks++;
            break;
          case 'fifo':
            member({ name, type: TYPE.fifo, ...meta(n), size: 0, xattrs });
            result.fifos++;
            break;
          default: {
            const type = n.kind === 'chardev' ? TYPE.chardev : TYPE.blockdev;
            member({ name, type, ...meta(n), size: 0, dev: [n.rdevMajor ?? 0, n.rdevMinor ?? 0], xattrs });
            result.devices++;
          }
        }
        return name;
      },
      link(n, parent, first) {
        member({ name: nameOf(n, parent), type: TYPE.hardlink, ...meta(n), size: 0, linkName: first });
        result.hardlinks++;
      },
    },
    {
      onUnreadable(where, e) {
        result.unreadable.push({ path: where, code: e.code, message: e.message });
        opts.onWarning?.(`${where}: not archived: ${e.message}`);
      },
    },
  );
  walk.entry(undefined, resolved, () => imageNode(reader, srcIno, top, resolved));
  // The end of the archive: two zero records.
  s.zeros(2 * TAR_BLOCK);
  s.flush();
  result.archiveBytes = s.position;
  return result;
}
