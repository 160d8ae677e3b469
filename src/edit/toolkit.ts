/**
 * The calls of the e2fsprogs-based seed toolkit, by their own shape, for code being ported from it:
 * each opens the image, makes one change and commits it.
 */
import { Ext4Error } from '../core/errors.js';
import { S_IFMT, S_IFDIR } from '../ext4/inode.js';
import { editImage, type EditorOptions } from './editor.js';

/**
 * Makes directory `path` with `mode`, owned by uid:gid; missing parents are made too (0755, same
 * owner). An existing directory gets the mode and owner (so the call can be repeated).
 */
export function mkdirExt4(
  image: string,
  path: string,
  mode: number,
  uid: number,
  gid: number,
  opts: EditorOptions = {},
): void {
  editImage(
    image,
    (ed) => {
      let exists = false;
      try {
        exists = (ed.reader.inode(ed.reader.lookup(path, { followLast: true })).mode & S_IFMT) === S_IFDIR;
      } catch (e) {
        if (!(e instanceof Ext4Error) || e.code !== 'NOT_FOUND') throw e;
      }
      if (!exists) ed.mkdir(path, { parents: true, mode: mode & 0o7777, uid, gid });
      ed.chmod(path, mode & 0o7777);
      ed.chown(path, uid, gid);
    },
    opts,
  );
}

/**
 * Writes `data` to `path` (created or replaced), then sets its mode and owner. Missing parent
 * directories are made (0755, same owner).
 */
export function writeExt4FileOwned(
  image: string,
  path: string,
  mode: number,
  uid: number,
  gid: number,
  data: Uint8Array | string,
  opts: EditorOptions = {},
): void {
  editImage(
    image,
    (ed) => {
      const parent = path.replace(/\/+[^/]*\/*$/, '') || '/';
      ed.mkdir(parent, { parents: true, uid, gid });
      ed.writeFile(path, data, { mode: mode & 0o7777, uid, gid });
      // Replacing an existing file keeps its inode: set what the caller asked for explicitly.
      ed.chown(path, uid, gid);
      ed.chmod(path, mode & 0o7777);
    },
    opts,
  );
}
