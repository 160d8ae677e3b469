/**
 * What `check` reports: problems with a stable code, where they are (inode, block, group, path) and one
 * line of text. A hostile image can hold millions of problems: the list is capped, the count is not.
 */
import { Ext4Error } from '../core/errors.js';

/** Stable problem codes, by the pass of e2fsck that finds the same thing. */
export type ProblemCode =
  // superblock and descriptors (e2fsck pass 0)
  | 'SUPERBLOCK'
  | 'SUPERBLOCK_CHECKSUM'
  | 'GROUP_DESC'
  | 'GROUP_DESC_CHECKSUM'
  | 'GROUP_METADATA_OVERLAP'
  | 'JOURNAL'
  | 'NEEDS_RECOVERY'
  | 'ORPHANS'
  | 'RESIZE_INODE'
  // inodes and their blocks (pass 1)
  | 'INODE_CHECKSUM'
  | 'INODE_MODE'
  | 'INODE_FLAGS'
  | 'INODE_DTIME'
  | 'INODE_MAP'
  | 'INODE_SIZE'
  | 'INODE_BLOCKS'
  | 'INODE_EXTRA_SIZE'
  | 'BLOCK_RANGE'
  | 'BLOCK_CLAIMED_TWICE'
  | 'BLOCK_IS_METADATA'
  | 'XATTR'
  | 'XATTR_REFCOUNT'
  | 'SYMLINK'
  // directories (pass 2)
  | 'DIR_BLOCK'
  | 'DIR_ENTRY'
  | 'DIR_ENTRY_INODE'
  | 'DIR_ENTRY_TYPE'
  | 'DIR_DOT'
  | 'DIR_HTREE'
  | 'DIR_DUPLICATE'
  // connectivity and link counts (passes 3 and 4)
  | 'ROOT'
  | 'DIR_UNCONNECTED'
  | 'DIR_PARENT'
  | 'DIR_MULTIPLY_LINKED'
  | 'INODE_UNATTACHED'
  | 'LINK_COUNT'
  // bitmaps and counts (pass 5)
  | 'BLOCK_BITMAP'
  | 'INODE_BITMAP'
  | 'BITMAP_CHECKSUM'
  | 'BITMAP_PADDING'
  | 'FREE_BLOCKS_GROUP'
  | 'FREE_INODES_GROUP'
  | 'USED_DIRS_GROUP'
  | 'ITABLE_UNUSED'
  | 'UNINIT_GROUP';

export interface Problem {
  code: ProblemCode;
  /** One line, naming what is wrong and what was expected. */
  text: string;
  inode?: number;
  block?: number;
  group?: number;
  path?: string;
}

/** Problems kept in full; past this only their count grows. */
export const MAX_LISTED = 10_000;

export class Problems {
  readonly list: Problem[] = [];
  count = 0;
  /**
   * What e2fsck -n prints but does not count against the file system (its "IGNORED" answers): a
   * descriptor checksum it recomputes, a journal waiting for recovery. Reported, not failing.
   */
  readonly warnings: Problem[] = [];

  add(code: ProblemCode, text: string, where: Omit<Problem, 'code' | 'text'> = {}): void {
    this.count++;
    if (this.list.length < MAX_LISTED) this.list.push({ code, text, ...where });
  }

  warn(code: ProblemCode, text: string, where: Omit<Problem, 'code' | 'text'> = {}): void {
    if (this.warnings.length < MAX_LISTED) this.warnings.push({ code, text, ...where });
  }

  /** An error the reader raised about one item becomes a problem of that item. */
  fromError(code: ProblemCode, e: unknown, where: Omit<Problem, 'code' | 'text'> = {}): void {
    if (!(e instanceof Ext4Error) || e.code === 'IO_ERROR') throw e;
    const ctx = e.context;
    this.add(code, e.message, {
      inode: ctx.inode,
      block: ctx.block,
      group: ctx.group,
      ...where,
    });
  }
}
