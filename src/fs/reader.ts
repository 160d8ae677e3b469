/**
 * The reader: a read-only front over the fs/ modules. It opens an ext2/3/4 image (replaying a dirty
 * journal in memory when asked) and resolves paths, directories, file data, symlinks, devices and
 * extended attributes. Corrupt images are data: every structure is bounds-checked, walks are
 * depth-limited and loop-checked, and failures are Ext4Errors with a code and a location.
 */
import type { Inode } from '../ext4/inode.js';
import type { RawXattr, XattrEntry } from '../ext4/xattr.js';
import type { BlockDevice } from '../io/device.js';
import { Ext4Volume, type ReaderOptions, type XattrVolume } from './volume.js';
import * as inodes from './inodes.js';
import * as blockmap from './blockmap.js';
import * as file from './file.js';
import * as xattr from './xattrs.js';
import * as dir from './dir.js';
import * as htree from './htree.js';
import * as inline from './inline.js';
import * as resolve from './resolve.js';
import { journalMap, replayInMemory } from './journal.js';
import type { BlockRun, FileMapping } from './blockmap.js';
import type { DirBlock, DirEntryInfo, DirSlot } from './dir.js';
import type { DxFrame } from './htree.js';
import type { RawDirent } from '../ext4/dirent.js';

export type { ReaderOptions };

export class Ext4Reader extends Ext4Volume implements XattrVolume {
  protected constructor(dev: BlockDevice, opts: ReaderOptions) {
    super(dev, opts);
    if (this.dirty && opts.replayJournal) replayInMemory(this, opts.onWarning);
  }

  static open(dev: BlockDevice, opts: ReaderOptions = {}): Ext4Reader {
    return new Ext4Reader(dev, opts);
  }

  journalMap(onWarning?: (message: string) => void): (n: number) => number {
    return journalMap(this, onWarning);
  }

  // ---- inodes (fs/inodes.ts) ----
  inode(ino: number): Inode {
    return inodes.readInode(this, ino);
  }
  inodeBytes(ino: number): Uint8Array {
    return inodes.inodeBytes(this, ino);
  }
  inodeLocation(ino: number): { block: number; offset: number; group: number; index: number } {
    return inodes.inodeLocation(this, ino);
  }
  decodeRecord(ino: number, buf: Uint8Array, off: number): Inode {
    return inodes.decodeRecord(this, ino, buf, off);
  }
  allocatedBytes(i: Inode): number {
    return inodes.allocatedBytes(this, i);
  }
  inodeSeed(ino: number, gen: number): number {
    return inodes.inodeSeed(this, ino, gen);
  }
  hasBlockMap(i: Inode): boolean {
    return inodes.hasBlockMap(i);
  }
  isFastSymlink(i: Inode): boolean {
    return inodes.isFastSymlink(i);
  }
  checkReadable(ino: number, i: Inode): void {
    inodes.checkReadable(ino, i);
  }

  // ---- block maps (fs/blockmap.ts) ----
  blockRuns(ino: number, i: Inode): BlockRun[] {
    return blockmap.blockRuns(this, ino, i);
  }
  mapping(ino: number, i: Inode, all: boolean, strict = false): FileMapping {
    return blockmap.mapping(this, ino, i, all, strict);
  }
  physicalBlock(runs: readonly BlockRun[], lblk: number): number | undefined {
    return blockmap.physicalBlock(runs, lblk);
  }

  // ---- file data (fs/file.ts) ----
  inlineData(ino: number, i: Inode): Uint8Array {
    return inline.inlineData(this, ino, i);
  }
  readFile(
    ino: number,
    sink: (data: Uint8Array | undefined, offset: number, length: number) => void,
    i = this.inode(ino),
    runs?: readonly BlockRun[],
  ): void {
    file.readFile(this, ino, sink, i, runs);
  }
  readFileBytes(ino: number, max?: number): Uint8Array {
    return file.readFileBytes(this, ino, max);
  }
  readLink(ino: number, i = this.inode(ino)): Uint8Array {
    return file.readLink(this, ino, i);
  }
  deviceNumbers(i: Inode): [number, number] {
    return file.deviceNumbers(i);
  }

  // ---- directories (fs/dir.ts, fs/htree.ts, fs/resolve.ts) ----
  dirBlock(ino: number, i: Inode, lblk: number, pblk: number, leaf = false): DirBlock {
    return dir.dirBlock(this, ino, i, lblk, pblk, leaf);
  }
  dirBlockBuf(
    ino: number,
    i: Inode,
    lblk: number,
    pblk: number,
    leaf = false,
  ): { buf: Uint8Array; dx: boolean; tail: boolean } {
    return dir.dirBlockBuf(this, ino, i, lblk, pblk, leaf);
  }
  dirBlocks(ino: number, i: Inode): Generator<DirBlock> {
    return dir.dirBlocks(this, ino, i);
  }
  inlineDir(ino: number, i: Inode): { parent: number; areas: { data: Uint8Array; entries: RawDirent[] }[] } {
    return inline.inlineDir(this, ino, i);
  }
  readDir(ino: number, i = this.inode(ino)): DirEntryInfo[] {
    return dir.readDir(this, ino, i);
  }
  dirHashVersion(root: Uint8Array): number {
    return htree.dirHashVersion(this, root);
  }
  usesIndex(i: Inode): boolean {
    return htree.usesIndex(this, i);
  }
  dxProbe(ino: number, i: Inode, hash: number, runs: readonly BlockRun[]): { frames: DxFrame[]; leaf: number } {
    return htree.dxProbe(this, ino, i, hash, runs);
  }
  dxFind(
    ino: number,
    i: Inode,
    name: Uint8Array,
    runs: readonly BlockRun[],
  ): { frames: DxFrame[]; leaf: number; hash: number } {
    return htree.dxFind(this, ino, i, name, runs);
  }
  dxNextLeaf(
    ino: number,
    i: Inode,
    frames: DxFrame[],
    runs: readonly BlockRun[],
  ): { hash: number; leaf: number } | undefined {
    return htree.dxNextLeaf(this, ino, i, frames, runs);
  }
  findEntry(ino: number, name: Uint8Array, i = this.inode(ino)): DirSlot | undefined {
    return resolve.findEntry(this, ino, name, i);
  }

  /**
   * Resolves an absolute path inside the image; returns the inode number. Symlinks in the middle of the
   * path are followed inside the image; the last component is followed only with `followLast`. At most
   * 40 links are followed.
   */
  lookup(path: string, opts: { followLast?: boolean } = {}): number {
    const chain = resolve.resolvePath(this, path, opts);
    return chain[chain.length - 1]!;
  }
  /** Like `lookup`, returning the chain of inodes from the root to the result. */
  resolve(path: string, opts: { followLast?: boolean } = {}): number[] {
    return resolve.resolvePath(this, path, opts);
  }

  // ---- extended attributes (fs/xattrs.ts) ----
  inodeXattrArea(raw: Uint8Array): { start: number; end: number } | undefined {
    return xattr.inodeXattrArea(this, raw);
  }
  storedXattrs(
    ino: number,
    raw = this.inodeBytes(ino),
    withInodeValues = true,
  ): { inInode: RawXattr[]; block: RawXattr[]; blockNr: number; refcount: number } {
    return xattr.storedXattrs(this, ino, raw, withInodeValues);
  }
  rawXattrs(ino: number, raw = this.inodeBytes(ino)): { index: number; name: Uint8Array; value: Uint8Array }[] {
    return xattr.rawXattrs(this, ino, raw);
  }
  xattrs(ino: number): XattrEntry[] {
    return xattr.xattrs(this, ino);
  }
}
