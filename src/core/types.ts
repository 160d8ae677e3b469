/**
 * Types shared across the layers: timestamps, extended attribute entries, and the tree source
 * interface that the image writer, the editor's copy-in, extract and the tar export consume. Imports
 * nothing of ours, so the lowest layer can use it.
 */

/** Seconds (may be negative or past 2038) and nanoseconds. */
export interface Timestamp {
  sec: number;
  nsec: number;
}

/** An extended attribute as stored: full name with its namespace prefix (user., trusted., security., system.). */
export interface XattrEntry {
  name: string;
  value: Uint8Array;
}

/** The kinds of file the package names (the mode bits and dirent types of each: ext4/filetype.ts). */
export type FileType = 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket';
/** A tree source node's kind: a file type. */
export type NodeKind = FileType;

/** Sequential access to one file's bytes. */
export interface FileData {
  /** Reads up to `length` bytes at `position` into `buf` at offset 0; returns the count (0 at EOF). */
  read(buf: Uint8Array, length: number, position: number): number;
  /** Throws an Ext4Error (SOURCE_CHANGED) when the file changed while it was being read. */
  verifyUnchanged(bytesRead: number): void;
  close(): void;
  /**
   * Where the data lies, when the source knows its holes: (offset, length) pieces in order; the rest
   * of the file reads as zeros. Absent: the whole file is data.
   */
  segments?(): [offset: number, length: number][];
  /**
   * The data pieces in order, handed to `sink` without a copy (only valid during the call), for
   * sources that can; holes are skipped. Each call's bytes lie inside one of `segments()`.
   */
  stream?(sink: (data: Uint8Array, offset: number) => void): void;
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
  /**
   * A directory's identity where the source can have loops (a damaged image): the walker refuses a
   * directory whose key is already on its path. Undefined: the source cannot loop.
   */
  dirKey?: string;
  xattrs(): XattrEntry[];
  readLink(): Uint8Array;
  openData(): FileData;
  /**
   * Children of a directory, in the order they are to be written. A source that can meet entries it
   * cannot read (a damaged image) hands each to `skip` with its path and leaves it out; without `skip`
   * the first such entry fails the listing.
   */
  children(skip?: (path: string, error: Error) => void): SourceNode[];
}

export interface TreeSource {
  root(): SourceNode;
  /**
   * The source's own choice for entries it cannot read (an image opened to skip them): a walk given no
   * choice of its own reports each here and leaves it out. Absent: such an entry fails the walk.
   */
  onUnreadable?: (path: string, error: Error) => void;
}
