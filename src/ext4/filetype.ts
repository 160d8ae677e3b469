/**
 * The kinds of file an inode can be, in one table: the S_IFMT bits of i_mode, the name the package uses
 * (`FileType`, also a tree source's node kind), the directory entry's file_type byte (kernel doc:
 * inodes.rst "i_mode", directory.rst "file_type") and the letter `ls -l` shows for it. Every mapping
 * between them is read from here.
 */
import type { FileType } from '../core/types.js';
import { S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK } from './inode.js';
import { FT_REG_FILE, FT_DIR, FT_SYMLINK, FT_CHRDEV, FT_BLKDEV, FT_FIFO, FT_SOCK, FT_UNKNOWN } from './dirent.js';

export type { FileType };

const FILE_TYPES: readonly { type: FileType; mode: number; dirent: number; letter: string }[] = [
  { type: 'file', mode: S_IFREG, dirent: FT_REG_FILE, letter: '-' },
  { type: 'dir', mode: S_IFDIR, dirent: FT_DIR, letter: 'd' },
  { type: 'symlink', mode: S_IFLNK, dirent: FT_SYMLINK, letter: 'l' },
  { type: 'chardev', mode: S_IFCHR, dirent: FT_CHRDEV, letter: 'c' },
  { type: 'blockdev', mode: S_IFBLK, dirent: FT_BLKDEV, letter: 'b' },
  { type: 'fifo', mode: S_IFIFO, dirent: FT_FIFO, letter: 'p' },
  { type: 'socket', mode: S_IFSOCK, dirent: FT_SOCK, letter: 's' },
];

/** The S_IFMT bits of each file type. */
export const MODE_OF_TYPE = Object.fromEntries(FILE_TYPES.map((t) => [t.type, t.mode])) as Record<FileType, number>;
/** The directory entry file_type of each file type. */
export const DIRENT_TYPE_OF = Object.fromEntries(FILE_TYPES.map((t) => [t.type, t.dirent])) as Record<FileType, number>;

// Indexed by the four S_IFMT bits, so the lookups run per inode and per entry cost no search.
const TYPE_BY_FMT: (FileType | undefined)[] = new Array<FileType | undefined>(16).fill(undefined);
const DIRENT_BY_FMT: number[] = new Array<number>(16).fill(FT_UNKNOWN);
const LETTER_BY_FMT: string[] = new Array<string>(16).fill('?');
for (const t of FILE_TYPES) {
  TYPE_BY_FMT[t.mode >>> 12] = t.type;
  DIRENT_BY_FMT[t.mode >>> 12] = t.dirent;
  LETTER_BY_FMT[t.mode >>> 12] = t.letter;
}

/** The file type of an inode mode, or undefined when its S_IFMT bits name none. */
export function fileTypeOf(mode: number): FileType | undefined {
  return TYPE_BY_FMT[(mode >>> 12) & 0xf];
}

/** The directory entry file_type of an inode mode; FT_UNKNOWN if its S_IFMT bits name none. */
export function fileTypeOfMode(mode: number): number {
  return DIRENT_BY_FMT[(mode >>> 12) & 0xf]!;
}

/** The letter `ls -l` shows for an inode mode's file type; '?' if its S_IFMT bits name none. */
export function typeLetterOf(mode: number): string {
  return LETTER_BY_FMT[(mode >>> 12) & 0xf]!;
}
