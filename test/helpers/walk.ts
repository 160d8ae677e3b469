/** Walks a whole image through the reader, the way extract would, with bounded work. */
import { Ext4Reader } from '../../src/fs/reader.js';
import { fileTypeOf } from '../../src/ext4/filetype.js';
import { Ext4Error } from '../../src/core/errors.js';

export interface WalkStats {
  entries: number;
  files: number;
  bytes: number;
  errors: Map<string, number>;
}

/** Visits every entry; Ext4Errors are counted per code, anything else is thrown. */
export function walkImage(r: Ext4Reader, limits = { entries: 200_000, bytes: 512 << 20 }): WalkStats {
  const st: WalkStats = { entries: 0, files: 0, bytes: 0, errors: new Map() };
  const note = (e: unknown) => {
    if (!(e instanceof Ext4Error)) throw e;
    st.errors.set(e.code, (st.errors.get(e.code) ?? 0) + 1);
  };
  const seenDirs = new Set<number>();
  const stack: number[] = [2];
  while (stack.length && st.entries < limits.entries) {
    const dir = stack.pop()!;
    if (seenDirs.has(dir)) continue;
    seenDirs.add(dir);
    let entries;
    try {
      entries = r.readDir(dir);
    } catch (e) {
      note(e);
      continue;
    }
    for (const e of entries) {
      if (++st.entries > limits.entries) break;
      try {
        const i = r.inode(e.inode);
        const t = fileTypeOf(i.mode);
        r.xattrs(e.inode);
        if (t === 'dir') stack.push(e.inode);
        else if (t === 'symlink') r.readLink(e.inode, i);
        else if (t === 'file' && st.bytes < limits.bytes) {
          st.files++;
          r.readFile(
            e.inode,
            (d, _o, len) => {
              st.bytes += len;
              if (st.bytes > limits.bytes) throw new Ext4Error('TOO_LARGE', 'walk byte budget used');
              void d;
            },
            i,
          );
        }
      } catch (err) {
        note(err);
      }
    }
  }
  return st;
}
