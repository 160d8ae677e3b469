/**
 * A writer of cpio archives in the "newc" format, the one the Linux kernel unpacks as an initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst): written here so the guest helper needs
 * no `cpio` tool. Only what an initramfs needs: directories, regular files and symbolic links.
 */

/** One archive member; parent directories are added by `newcArchive` where the list leaves them out. */
export type CpioEntry =
  | { path: string; kind: 'dir'; mode?: number }
  | { path: string; kind: 'file'; data: Uint8Array; mode?: number }
  | { path: string; kind: 'symlink'; target: string };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const MAGIC = '070701';

/** Header fields after the magic, each 8 hex digits, in the format's order. */
const FIELDS = [
  'ino',
  'mode',
  'uid',
  'gid',
  'nlink',
  'mtime',
  'filesize',
  'devmajor',
  'devminor',
  'rdevmajor',
  'rdevminor',
  'namesize',
  'check',
] as const;
type Header = Record<(typeof FIELDS)[number], number>;

/** Header and name are padded together to a multiple of 4, and so is the data after them. */
const pad4 = (n: number): number => (4 - (n % 4)) % 4;

function member(h: Omit<Header, 'namesize' | 'filesize' | 'check'>, name: string, data: Uint8Array): Buffer {
  const nameBytes = Buffer.from(name + '\0', 'utf8');
  const full: Header = { ...h, namesize: nameBytes.length, filesize: data.length, check: 0 };
  const head = MAGIC + FIELDS.map((f) => full[f].toString(16).padStart(8, '0')).join('');
  const headLen = head.length + nameBytes.length;
  return Buffer.concat([
    Buffer.from(head, 'ascii'),
    nameBytes,
    Buffer.alloc(pad4(headLen)),
    data,
    Buffer.alloc(pad4(data.length)),
  ]);
}

/**
 * The archive of `entries`, in their order after the parent directories each needs (the kernel creates
 * a path only under a directory it has already unpacked). Paths are relative to the archive's root;
 * a leading `/` is dropped. Owner root, mtime 0.
 */
export function newcArchive(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const seen = new Set<string>();
  let ino = 1;
  const add = (name: string, mode: number, data: Uint8Array) => {
    const nlink = (mode & S_IFDIR) === S_IFDIR ? 2 : 1;
    parts.push(
      member(
        { ino: ino++, mode, uid: 0, gid: 0, nlink, mtime: 0, devmajor: 0, devminor: 0, rdevmajor: 0, rdevminor: 0 },
        name,
        data,
      ),
    );
  };
  const dirs = (name: string) => {
    const segs = name.split('/');
    for (let i = 1; i < segs.length; i++) {
      const dir = segs.slice(0, i).join('/');
      if (seen.has(dir)) continue;
      seen.add(dir);
      add(dir, S_IFDIR | 0o755, new Uint8Array(0));
    }
  };
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, '');
    if (name === '' || seen.has(name)) throw new Error(`cpio: empty or repeated path ${e.path}`);
    dirs(name);
    seen.add(name);
    if (e.kind === 'dir') add(name, S_IFDIR | (e.mode ?? 0o755), new Uint8Array(0));
    else if (e.kind === 'file') add(name, S_IFREG | (e.mode ?? 0o644), e.data);
    else add(name, S_IFLNK | 0o777, Buffer.from(e.target, 'utf8'));
  }
  add('TRAILER!!!', 0, new Uint8Array(0));
  return Buffer.concat(parts);
}
