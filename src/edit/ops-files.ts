/**
 * Regular files' content: `writeFile` (whole content or a stream; a new file or one replaced in place,
 * keeping its inode, links and attributes) and `truncate`.
 */
import { Ext4Error } from '../core/errors.js';
import { S_IFMT, S_IFDIR, S_IFREG, type Inode, type Timestamp } from '../ext4/inode.js';
import { writeContent, truncateFile, ContentWriter, type Hole } from '../fs/content.js';
import { sourceOf, type FileContent } from './content.js';
import { checkId, type NewEntryOptions } from './inodes.js';
import { linkNew } from './ops-links.js';
import { enc, parentOf, resolve, checkEditable, checkMode, newEntryInode, type OpContext } from './op-context.js';

export interface WriteFileOptions extends NewEntryOptions {
  /** Modification time (default: now); atime follows it unless given. */
  mtime?: Timestamp;
  atime?: Timestamp;
}

/** Where a write goes: an existing file, or a new inode still to be linked at `parent`/`name`. */
interface FileTarget {
  ino: number;
  inode: Inode;
  parent?: number;
  name?: Uint8Array;
}

export function writeFile(cx: OpContext, path: string, content: FileContent, opts: WriteFileOptions): void {
  const t = fileTarget(cx, path, opts);
  writeContent(cx.v, t.ino, t.inode, sourceOf(content));
  fileDone(cx, t, opts);
}

export async function writeFileStream(
  cx: OpContext,
  path: string,
  stream: AsyncIterable<Uint8Array | Hole>,
  opts: WriteFileOptions,
): Promise<void> {
  const t = fileTarget(cx, path, opts);
  const w = new ContentWriter(cx.v, t.ino, t.inode);
  for await (const c of stream) w.push(typeof c === 'string' ? enc.encode(c) : c);
  w.finish();
  fileDone(cx, t, opts);
}

/** The regular file a write goes to: the existing one (a symlink there followed), or a new inode. */
function fileTarget(cx: OpContext, path: string, opts: WriteFileOptions): FileTarget {
  const { parent, name, display, parentInode } = parentOf(cx, path);
  if (cx.v.r.findEntry(parent, name, parentInode)) {
    const target = resolve(cx, display, true);
    const t = target.inode.mode & S_IFMT;
    if (t === S_IFDIR) throw new Ext4Error('IS_A_DIRECTORY', `${display} is a directory`, { path: display });
    if (t !== S_IFREG) throw new Ext4Error('INVALID_ARGUMENT', `${display} is not a regular file`, { path: display });
    checkEditable(target.ino, target.inode, display);
    return target;
  }
  const { ino, inode } = newEntryInode(cx, 'file', opts, parent, parentInode);
  if (opts.mtime) inode.mtime = opts.mtime;
  inode.atime = opts.atime ?? inode.mtime;
  cx.v.initInode(ino, inode);
  return { ino, inode, parent, name };
}

/** After new content: a new file is linked in; a replaced one gets what the options ask and new times. */
function fileDone(cx: OpContext, t: FileTarget, opts: WriteFileOptions): void {
  const { ino, inode } = t;
  if (t.parent !== undefined) {
    cx.v.writeInode(ino, inode);
    linkNew(cx, t.parent, t.name!, ino, inode.mode);
    return;
  }
  if (opts.mode !== undefined) inode.mode = (inode.mode & S_IFMT) | checkMode(opts.mode);
  if (opts.uid !== undefined) inode.uid = checkId(opts.uid, 'uid');
  if (opts.gid !== undefined) inode.gid = checkId(opts.gid, 'gid');
  inode.mtime = opts.mtime ?? cx.now;
  inode.atime = opts.atime ?? opts.mtime ?? inode.atime;
  inode.ctime = cx.now;
  cx.v.writeInode(ino, inode);
}

/** A size `truncate` accepts (checked before the operation starts). */
export function checkSize(size: number): void {
  if (!Number.isSafeInteger(size) || size < 0) throw new Ext4Error('BAD_OPTION', `size ${size} is not a byte count`);
}

export function truncate(cx: OpContext, path: string, size: number): void {
  const { ino, inode } = resolve(cx, path, true);
  if ((inode.mode & S_IFMT) === S_IFDIR) throw new Ext4Error('IS_A_DIRECTORY', `${path} is a directory`, { path });
  if ((inode.mode & S_IFMT) !== S_IFREG)
    throw new Ext4Error('INVALID_ARGUMENT', `${path} is not a regular file`, { path });
  checkEditable(ino, inode, path);
  truncateFile(cx.v, ino, inode, size);
  inode.mtime = inode.ctime = cx.now;
  cx.v.writeInode(ino, inode);
}
