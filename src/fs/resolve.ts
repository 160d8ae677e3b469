/**
 * Names and paths: a name in a directory (inline, through the htree index, or block by block) and an
 * absolute path resolved to inodes, following symlinks inside the image.
 */
import { Ext4Error } from '../core/errors.js';
import { sameBytes } from '../core/bytes.js';
import { ROOT_INO, S_IFMT, S_IFDIR, S_IFLNK, FL_INLINE_DATA, type Inode } from '../ext4/inode.js';
import { checkReadable, readInode } from './inodes.js';
import { blockRuns } from './blockmap.js';
import { findLinear, type DirSlot } from './dir.js';
import { inlineDir } from './inline.js';
import { dxLookup, usesIndex } from './htree.js';
import { readLink } from './file.js';
import type { XattrVolume } from './volume.js';

/** Symlinks followed in one resolution (the kernel's limit). */
const MAX_SYMLINKS = 40;

/**
 * Finds `name` in directory `ino`: through the htree index when it has one (a malformed index falls
 * back to reading every block), else by reading the blocks in order.
 */
export function findEntry(v: XattrVolume, ino: number, name: Uint8Array, i: Inode): DirSlot | undefined {
  if ((i.mode & S_IFMT) !== S_IFDIR)
    throw new Ext4Error('NOT_A_DIRECTORY', `inode ${ino} is not a directory`, { inode: ino });
  checkReadable(ino, i);
  if (i.flags & FL_INLINE_DATA) {
    const { areas } = inlineDir(v, ino, i);
    for (let a = 0; a < areas.length; a++)
      for (const e of areas[a]!.entries)
        if (e.inode !== 0 && sameBytes(e.name, name))
          return { inode: e.inode, fileType: e.fileType, lblk: -1, pblk: a, offset: e.offset };
    return undefined;
  }
  if (usesIndex(v, i)) {
    const hit = dxLookup(v, ino, i, name, blockRuns(v, ino, i));
    if (hit !== undefined) return hit ?? undefined;
  }
  return findLinear(v, ino, i, name);
}

/**
 * Resolves an absolute path inside the image, returning the chain of inodes from the root to the result
 * (the directories walked through, after `..` and symlinks are applied). Symlinks in the middle of the
 * path are followed inside the image (absolute targets start at the image's root, so a path can never
 * leave it); the last component is followed only with `followLast`.
 */
export function resolvePath(v: XattrVolume, path: string, opts: { followLast?: boolean } = {}): number[] {
  let budget = MAX_SYMLINKS;
  const walk = (base: number[], p: string, followLast: boolean): number[] => {
    // `stack` is the chain of directory inodes from the root; its last element is the current inode.
    let stack = p.startsWith('/') ? [ROOT_INO] : [...base];
    const parts = p.split('/').filter((x) => x !== '' && x !== '.');
    for (let k = 0; k < parts.length; k++) {
      const part = parts[k]!;
      if (part === '..') {
        const i = readInode(v, stack[stack.length - 1]!);
        if ((i.mode & S_IFMT) !== S_IFDIR)
          throw new Ext4Error('NOT_A_DIRECTORY', `${path}: a component is not a directory`, { path });
        if (stack.length > 1) stack.pop();
        continue;
      }
      const dir = stack[stack.length - 1]!;
      const i = readInode(v, dir);
      if ((i.mode & S_IFMT) !== S_IFDIR)
        throw new Ext4Error('NOT_A_DIRECTORY', `${path}: a component is not a directory`, { path });
      const want = Buffer.from(part, 'utf8');
      if (want.length > 255) throw new Ext4Error('NAME_TOO_LONG', `${path}: a name is longer than 255 bytes`, { path });
      const hit = findEntry(v, dir, want, i);
      if (!hit) throw new Ext4Error('NOT_FOUND', `${path}: no such file or directory`, { path });
      const last = k === parts.length - 1;
      const child = readInode(v, hit.inode);
      if ((child.mode & S_IFMT) === S_IFLNK && (!last || followLast)) {
        if (--budget < 0) throw new Ext4Error('CORRUPT', `${path}: too many levels of symbolic links`, { path });
        const target = Buffer.from(readLink(v, hit.inode, child)).toString('utf8');
        stack = walk(stack, target, true);
        continue;
      }
      stack = [...stack, hit.inode];
    }
    return stack;
  };
  return walk([ROOT_INO], path.startsWith('/') ? path : '/' + path, opts.followLast ?? false);
}
