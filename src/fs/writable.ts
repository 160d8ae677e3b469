/**
 * What the fs/ writers need of an open edit, and nothing more: the image as the edit has it (`r`), the
 * edit's blocks (`tx`), block allocation, inode records and the checksums due at commit. The editor's
 * Volume (src/edit/volume.ts) has this shape; fs/ never imports the editor, so a later user (resize,
 * repair) can drive the same writers with an edit of its own.
 */
import type { Superblock } from '../ext4/superblock.js';
import type { Inode } from '../ext4/inode.js';
import type { XattrVolume } from './volume.js';

/** The changed blocks of an edit: metadata changed in place or replaced, new file data pending. */
export interface BlockWrites {
  /** The block's current content to change in place (its old content is kept for undo). */
  modify(block: number): Uint8Array;
  /** Sets a block's whole new content (a newly allocated metadata block); `data` is kept, not copied. */
  put(block: number, data: Uint8Array): void;
  /** A copy of whole blocks of new file data that stays valid until the data is written. */
  keepData(src: Uint8Array): Uint8Array;
  /** New file data for blocks that were free before the edit. */
  addData(block: number, data: Uint8Array): void;
  /** Bytes of new file data not yet written. */
  readonly pendingDataBytes: number;
  /** Block `block` of pending new data to change in place (undefined when none holds it). */
  modifyPending(block: number): Uint8Array | undefined;
  /** File data blocks as they currently are (the edit's blocks and data patched in). */
  readData(block: number, count: number): Uint8Array;
}

/** A run of newly allocated blocks. */
export interface AllocRun {
  start: number;
  len: number;
}

/** An open edit as the fs/ writers see it. */
export interface WritableVolume {
  /** The image as the edit has it (reads see the edit's changes). */
  readonly r: XattrVolume;
  readonly tx: BlockWrites;
  readonly sb: Superblock;
  /** The block size. */
  readonly bs: number;
  readonly inodeSize: number;
  /** metadata_csum is on. */
  readonly csum: boolean;
  readonly csumSeed: number;
  /** The image's name for messages. */
  readonly name: string;
  /** Free blocks as the edit has them. */
  readonly freeBlocks: number;

  /** Allocates `count` blocks near `goal`, in as few runs as the free space allows. */
  allocBlocks(goal: number, count: number): AllocRun[];
  allocBlock(goal: number): number;
  /** Frees blocks at commit (never reused by this edit). */
  freeLater(start: number, len: number): void;
  /** The goal block for an inode's data. */
  inodeGoal(ino: number): number;
  /** Writes the pending new file data now (memory stays bounded). */
  writeDataEarly(): void;

  /** Inode `ino` as the edit has it. */
  readInode(ino: number): Inode;
  writeInode(ino: number, inode: Inode): void;
  /** Writes a new inode's whole record (zeros past the fields). */
  initInode(ino: number, inode: Inode): void;
  /** The raw record of inode `ino` for in-place changes; sealInode after. */
  inodeRecordForWrite(ino: number): { buf: Uint8Array; offset: number };
  /** The inode's checksum is due at commit. */
  sealInode(ino: number): void;
  /** A directory leaf block whose csum tail is due at commit. */
  sealLeafLater(block: number, seed: number): void;
  /** Sets i_blocks to `n` 512-byte units (huge_file encoding when needed). */
  setBlocks512(i: Inode, n: number): void;
  /** Adds `n` 512-byte units (negative: removes) to i_blocks. */
  addBlocks512(i: Inode, n: number): void;
  /** Sets a read-only-compatible feature bit at commit. */
  needRoCompat(bit: number): void;
}

/**
 * A view of an open edit with some of its methods replaced (an allocator held below a shrink's end,
 * frees held back for blocks still shared) and the rest its own, bound once: the writers call them
 * per block.
 */
export function withMethods<T extends object>(target: T, methods: Partial<T>): T {
  const bound = new Map<PropertyKey, unknown>();
  return new Proxy(target, {
    get(t, p) {
      if (p in methods) return methods[p as keyof T];
      const x = Reflect.get(t, p, t) as unknown;
      if (typeof x !== 'function') return x;
      let b = bound.get(p);
      if (!b) bound.set(p, (b = (x as (...a: unknown[]) => unknown).bind(t)));
      return b;
    },
  });
}
