/**
 * Tree sources: what the writer consumes. A host directory is one source; an ext4 image subtree will be
 * another. The writer never touches the host file system except through this interface.
 */
import type { Timestamp } from '../ext4/inode.js';
import type { FileType } from '../ext4/filetype.js';
import type { XattrEntry } from '../ext4/xattr.js';

export type NodeKind = FileType;

export type { XattrEntry };

/** Sequential access to one file's bytes. */
export interface FileData {
  /** Reads up to `length` bytes at `position` into `buf` at offset 0; returns the count (0 at EOF). */
  read(buf: Uint8Array, length: number, position: number): number;
  /** Throws an Ext4Error (SOURCE_CHANGED) when the file changed while it was being read. */
  verifyUnchanged(bytesRead: number): void;
  close(): void;
}

export interface SourceNode {
  /** Entry name as raw bytes (empty for the root). */
  name: Uint8Array;
  /** Path for messages. */
  displayPath: string;
  kind: NodeKind;
  /** Permission bits including setuid/setgid/sticky (0o7777). */
  perm: number;
  uid: number;
  gid: number;
  atime: Timestamp;
  mtime: Timestamp;
  ctime: Timestamp;
  /** Birth time when the source knows it. */
  crtime?: Timestamp;
  /** Bytes of content (regular files) or of the link target (symlinks). */
  size: number;
  /** Bytes the source really stores (sparse files store less than `size`); used for the fit estimate. */
  allocatedBytes?: number;
  /** Device numbers for character and block devices. */
  rdevMajor?: number;
  rdevMinor?: number;
  /** Entries with the same key are hard links to one inode. Undefined: never hard-linked. */
  linkKey?: string;
  xattrs(): XattrEntry[];
  readLink(): Uint8Array;
  openData(): FileData;
  /** Children of a directory, in the order they are to be written. */
  children(): SourceNode[];
}

export interface TreeSource {
  root(): SourceNode;
}
