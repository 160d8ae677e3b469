/**
 * A new image's inode tables, written as they fill: inode numbers are handed out in order (group 0
 * first, as mkfs does), each record is encoded into its group's table the moment it is final, and a
 * group's table goes to the device once numbering has moved past it. Memory is one group's table, not a
 * record per inode of the tree (a million-entry tree would otherwise hold a million inode objects).
 *
 * Records finished after their group was written (a directory closes after its entries, the root and
 * lost+found after the whole tree, a hard link adds a link to an earlier file) are patched in place:
 * one record read, changed, checksummed and written back.
 */
import { Ext4Error } from '../core/errors.js';
import { type Inode, FIRST_INO, decodeInode, encodeInode, setInodeChecksum } from '../ext4/inode.js';
import { encodeInodeXattrs, type DiskXattr } from '../ext4/xattr.js';
import type { BlockDevice } from '../io/device.js';

export interface TableGeometry {
  inodesCount: number;
  inodesPerGroup: number;
  inodeSize: number;
  blockSize: number;
  /** Each group's first inode table block. */
  inodeTable: ArrayLike<number>;
}

export class InodeTables {
  /** The next inode number to hand out: every number below it is in use. */
  next = FIRST_INO + 1;
  /** Directories per group (the descriptors' used_dirs). */
  readonly dirs: Uint32Array;
  /** Bytes of inode table written to the device. */
  bytesWritten = 0;
  /**
   * The group whose table is being filled, and that table (records not yet set are zeros), grown as
   * records land further in: an image with a handful of files allocates a few KiB, not the 2 MiB of a
   * whole group's table. `used`: bytes of it that may be non-zero.
   */
  private group = 0;
  private table: Uint8Array;
  private used = 0;
  private readonly one: Uint8Array;

  constructor(
    private readonly g: TableGeometry,
    private readonly dev: BlockDevice,
    private readonly csumSeed: number,
    private readonly extraIsize: number,
  ) {
    this.dirs = new Uint32Array(g.inodeTable.length);
    this.table = new Uint8Array(Math.min(g.inodesPerGroup, 64) * g.inodeSize);
    this.one = new Uint8Array(g.inodeSize);
  }

  alloc(): number {
    if (this.next > this.g.inodesCount) throw new Ext4Error('NO_SPACE', `out of inodes (${this.g.inodesCount})`);
    const ino = this.next++;
    const group = Math.floor((ino - 1) / this.g.inodesPerGroup);
    if (group !== this.group) {
      this.writeTable(this.g.inodesPerGroup);
      this.group = group;
      this.table.fill(0, 0, this.used);
      this.used = 0;
    }
    return ino;
  }

  /** Stores an inode's final record (and its in-inode attributes). */
  set(ino: number, inode: Inode, isDir: boolean, xattrs?: DiskXattr[]): void {
    const { inodesPerGroup: ipg, inodeSize: isz } = this.g;
    const group = Math.floor((ino - 1) / ipg);
    if (isDir) this.dirs[group]!++;
    const here = group === this.group;
    const off = here ? ((ino - 1) % ipg) * isz : 0;
    if (here) this.reach(off + isz);
    const b = here ? this.table : this.one.fill(0);
    encodeInode(b, off, isz, inode);
    if (xattrs) encodeInodeXattrs(b, off, isz, this.extraIsize, xattrs);
    setInodeChecksum(this.csumSeed, ino, b, off, isz);
    if (!here) this.dev.write(this.position(ino), b);
  }

  /** One more name for an inode already stored (a hard link). */
  addLink(ino: number): void {
    const { inodesPerGroup: ipg, inodeSize: isz } = this.g;
    const here = Math.floor((ino - 1) / ipg) === this.group;
    const b = here ? this.table : this.dev.read(this.position(ino), isz);
    const off = here ? ((ino - 1) % ipg) * isz : 0;
    const inode = decodeInode(b, off, isz);
    inode.linksCount++;
    encodeInode(b, off, isz, inode);
    setInodeChecksum(this.csumSeed, ino, b, off, isz);
    if (!here) this.dev.write(this.position(ino), b);
  }

  /** Writes the table being filled (its used part): the last of the tables. */
  finish(): void {
    this.writeTable((this.next - 1) % this.g.inodesPerGroup || this.g.inodesPerGroup);
  }

  /** Inode numbers in use in a group: each group's used records are a prefix of its table. */
  usedIn(group: number): number {
    const ipg = this.g.inodesPerGroup;
    return Math.max(0, Math.min(ipg, this.next - 1 - group * ipg));
  }

  private writeTable(records: number): void {
    if (this.usedIn(this.group) === 0) return;
    const bytes = records * this.g.inodeSize;
    this.reach(bytes);
    this.dev.write(this.g.inodeTable[this.group]! * this.g.blockSize, this.table.subarray(0, bytes));
    this.bytesWritten += bytes;
  }

  /** Makes the table hold `end` bytes (doubling, up to a whole group's), marking them possibly used. */
  private reach(end: number): void {
    if (end > this.table.length) {
      const bigger = new Uint8Array(
        Math.min(Math.max(end, this.table.length * 2), this.g.inodesPerGroup * this.g.inodeSize),
      );
      bigger.set(this.table.subarray(0, this.used));
      this.table = bigger;
    }
    if (end > this.used) this.used = end;
  }

  private position(ino: number): number {
    const ipg = this.g.inodesPerGroup;
    const group = Math.floor((ino - 1) / ipg);
    return this.g.inodeTable[group]! * this.g.blockSize + ((ino - 1) % ipg) * this.g.inodeSize;
  }
}
