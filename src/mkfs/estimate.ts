/**
 * What a tree needs of an ext4 image, from its metadata alone (no file is read), for the fit check
 * before anything is written and for `--size auto`; and the one rule for names an image can store. A
 * sink of the tree walk (tree/walk.ts), like the writer that follows it.
 */
import { Ext4Error } from '../core/errors.js';
import { GOOD_OLD_INODE_SIZE, EXTRA_ISIZE, I_BLOCK_SIZE } from '../ext4/inode.js';
import { extentTreeBlockCount, MAX_INIT_EXTENT_LEN } from '../ext4/extent.js';
import { direntSize, MAX_NAME_LEN, DIR_TAIL_SIZE } from '../ext4/dirent.js';
import { toDisk, xattrSpace, inodeXattrSpace, encodeXattrBlock } from '../ext4/xattr.js';
import type { SourceNode, TreeSource } from '../core/types.js';
import { TreeWalk, sourcePolicy } from '../tree/walk.js';

export interface TreeEstimate {
  inodes: number;
  blocks: number;
  files: number;
  dataBytes: number;
  /** The largest regular file, in bytes. */
  largestFile: number;
  /** The longest symlink target, in bytes (it must fit one block). */
  longestSymlink: number;
}

/** A source entry's name must be one ext4 can store: 1 to 255 bytes, no '/' or NUL. */
export function checkName(node: SourceNode): void {
  if (node.name.length > MAX_NAME_LEN)
    throw new Ext4Error(
      'NAME_TOO_LONG',
      `name of ${node.displayPath} is ${node.name.length} bytes; ext4 allows ${MAX_NAME_LEN}`,
      { path: node.displayPath },
    );
  if (node.name.length === 0 || node.name.includes(0x2f) || node.name.includes(0))
    throw new Ext4Error('SOURCE_ERROR', `invalid entry name in ${node.displayPath}`, { path: node.displayPath });
}

/** A directory being sized: the bytes of its entries so far. */
interface Sizing {
  bytes: number;
}

/**
 * An upper estimate of what `source` needs, from metadata alone (no file is read): inodes, and blocks
 * for data (sparse files by what the source really stores), directories, extent trees and attribute
 * blocks (one per distinct set that does not fit inside `inodeSize`-byte inodes, shared as the writer
 * shares them). Each hard-linked inode is counted once.
 */
export function estimateTree(source: TreeSource, blockSize: number, inodeSize = 256): TreeEstimate {
  const est: TreeEstimate = { inodes: 0, blocks: 0, files: 0, dataBytes: 0, largestFile: 0, longestSymlink: 0 };
  const inInode = inodeXattrSpace(inodeSize, inodeSize > GOOD_OLD_INODE_SIZE ? EXTRA_ISIZE : 0);
  const xattrBlocks = new Set<string>();
  const countXattrs = (n: SourceNode) => {
    const list = n.xattrs();
    if (!list.length) return;
    const xs = list.map(toDisk);
    // Too big for a block: the writer refuses it when the node is written.
    if (xattrSpace(xs) <= inInode || xattrSpace(xs) > blockSize - 32) return;
    const data = encodeXattrBlock(blockSize, xs);
    const key = Buffer.from(data.buffer, data.byteOffset, data.length).toString('latin1');
    if (!xattrBlocks.has(key)) {
      xattrBlocks.add(key);
      est.blocks++;
    }
  };
  const dirBlocks = (entryBytes: number) => {
    const leaves = Math.ceil(entryBytes / (blockSize - DIR_TAIL_SIZE));
    return leaves <= 1 ? 1 : leaves + 1 + Math.ceil(leaves / ((blockSize - 8) / 8 - 1)) + Math.ceil(leaves / 2);
  };
  // Every directory counts '.', '..' and (an overestimate below the root) lost+found.
  const newDir = (): Sizing => ({ bytes: direntSize(1) + direntSize(2) + direntSize(10) });
  /** An entry named in `parent`: its name checked and counted. */
  const named = (n: SourceNode, parent: Sizing) => {
    checkName(n);
    parent.bytes += direntSize(n.name.length);
  };
  const walk = new TreeWalk<Sizing, true>(
    {
      dir(n, parent) {
        named(n, parent);
        est.inodes++;
        countXattrs(n);
        return newDir();
      },
      leave(_n, d) {
        est.blocks += dirBlocks(d.bytes);
      },
      leaf(c, parent) {
        named(c, parent);
        est.inodes++;
        countXattrs(c);
        if (c.kind === 'file') {
          est.files++;
          if (c.size > est.largestFile) est.largestFile = c.size;
          const full = Math.ceil(c.size / blockSize);
          const stored =
            c.allocatedBytes === undefined || c.allocatedBytes >= c.size
              ? full
              : Math.min(full, Math.ceil(c.allocatedBytes / blockSize) + 1);
          est.dataBytes += stored * blockSize;
          // Extents hold at most 32768 blocks; holes split them further, at worst one per stored block run.
          const extents = Math.ceil(full / MAX_INIT_EXTENT_LEN) + (stored < full ? stored : 0);
          est.blocks += stored + extentTreeBlockCount(extents, blockSize);
        } else if (c.kind === 'symlink') {
          if (c.size >= I_BLOCK_SIZE) est.blocks += 1;
          if (c.size > est.longestSymlink) est.longestSymlink = c.size;
        }
        return true;
      },
      link: named,
    },
    sourcePolicy(source),
  );
  const root = source.root();
  countXattrs(root);
  const top = newDir();
  walk.entries(root, top);
  est.blocks += dirBlocks(top.bytes);
  return est;
}
