/**
 * The inodes in use pass 1 finds, and what the later passes learn of them: kept in the order pass 1
 * meets them (by number, as it reads the tables in order), found by number through a per-group index
 * made for the groups that have an inode in use. No map keyed by number, no per-lookup hashing.
 */
import type { BlockRun } from '../fs/blockmap.js';
import type { Inode } from '../ext4/inode.js';

/** A directory's record and block map as pass 1 read them. */
export interface DirMap {
  inode: Inode;
  runs: BlockRun[];
}

/** What pass 1 learns about an inode in use (one shape for all: the passes' code stays monomorphic). */
export class InodeInfo {
  /** Entries naming it (pass 2): for a directory, '.' and its subdirectories' '..' included. */
  refs = 0;
  /** A directory: the directory whose entry names it (pass 2), and what its '..' says. */
  parent: number | undefined = undefined;
  dotdot: number | undefined = undefined;
  constructor(
    readonly mode: number,
    readonly flags: number,
    readonly links: number,
    /** A file of the file system itself (journal, orphan file, quota): no directory names it. */
    readonly system = false,
    /** A directory whose map could be read: its inode and block map as pass 1 read them. */
    readonly dir: DirMap | undefined = undefined,
  ) {}
}

export class InodeTable {
  private readonly inos: number[] = [];
  private readonly infos: InodeInfo[] = [];
  /** Per group, each of its inodes' place in the lists + 1 (0: not in use). */
  private readonly index: (Int32Array | undefined)[] = [];

  constructor(private readonly inodesPerGroup: number) {}

  get size(): number {
    return this.infos.length;
  }

  /** The `k`-th inode recorded (0 <= k < size), and its number. */
  at(k: number): InodeInfo {
    return this.infos[k]!;
  }
  inoAt(k: number): number {
    return this.inos[k]!;
  }

  /** Records inode `ino` (a second record of it replaces the first, in the first's place). */
  set(ino: number, info: InodeInfo): void {
    const g = Math.floor((ino - 1) / this.inodesPerGroup);
    const i = (ino - 1) % this.inodesPerGroup;
    let idx = this.index[g];
    if (!idx) this.index[g] = idx = new Int32Array(this.inodesPerGroup);
    if (idx[i]) {
      this.infos[idx[i] - 1] = info;
      return;
    }
    this.inos.push(ino);
    this.infos.push(info);
    idx[i] = this.infos.length;
  }

  get(ino: number): InodeInfo | undefined {
    if (!(ino >= 1)) return undefined;
    const slot = this.index[Math.floor((ino - 1) / this.inodesPerGroup)]?.[(ino - 1) % this.inodesPerGroup];
    return slot ? this.infos[slot - 1] : undefined;
  }

  has(ino: number): boolean {
    return this.get(ino) !== undefined;
  }
}
