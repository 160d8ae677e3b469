/** A tree described in memory as a tree source: build an image from generated files, no host directory. */
import { Ext4Error } from '../../core/errors.js';
import type { Timestamp } from '../../ext4/inode.js';
import type { NodeKind, SourceNode, TreeSource, XattrEntry } from '../../core/types.js';

export interface MemoryEntry {
  /** Default: 'dir' when `children` is given, 'symlink' when `target` is, else 'file'. */
  kind?: NodeKind;
  /** Permission bits; default 0755 for directories, 0644 otherwise (0777 for symlinks). */
  perm?: number;
  uid?: number;
  gid?: number;
  /** One time for atime, mtime and ctime; default the creation time of the source. */
  time?: Timestamp;
  /** File contents. */
  data?: Uint8Array | string;
  /** Symlink target. */
  target?: string;
  children?: Record<string, MemoryEntry>;
  xattrs?: XattrEntry[];
  /** Device numbers for 'chardev' and 'blockdev'. */
  rdev?: [major: number, minor: number];
}

const enc = new TextEncoder();

/** A tree source from a nested description; children are written in byte order of their names. */
export function memoryTreeSource(
  root: MemoryEntry,
  now: Timestamp = { sec: Math.floor(Date.now() / 1000), nsec: 0 },
): TreeSource {
  const make = (name: string, e: MemoryEntry, where: string): SourceNode => {
    const kind: NodeKind = e.kind ?? (e.children ? 'dir' : e.target !== undefined ? 'symlink' : 'file');
    const data = typeof e.data === 'string' ? enc.encode(e.data) : (e.data ?? new Uint8Array(0));
    const target = enc.encode(e.target ?? '');
    if (kind === 'symlink' && e.target === undefined)
      throw new Ext4Error('SOURCE_ERROR', `${where}: a symlink needs a target`);
    const t = e.time ?? now;
    return {
      name: enc.encode(name),
      displayPath: where,
      kind,
      perm: e.perm ?? (kind === 'dir' ? 0o755 : kind === 'symlink' ? 0o777 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      atime: t,
      mtime: t,
      ctime: t,
      size: kind === 'file' ? data.length : kind === 'symlink' ? target.length : 0,
      rdevMajor: e.rdev?.[0],
      rdevMinor: e.rdev?.[1],
      xattrs: () => e.xattrs ?? [],
      readLink: () => target,
      openData: () => ({
        read: (buf, length, position) => {
          const n = Math.max(0, Math.min(length, data.length - position));
          buf.set(data.subarray(position, position + n));
          return n;
        },
        verifyUnchanged: () => {},
        close: () => {},
      }),
      children: () =>
        Object.keys(e.children ?? {})
          .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
          .map((n) => make(n, e.children![n]!, `${where === '/' ? '' : where}/${n}`)),
    };
  };
  const r = make('', { kind: 'dir', ...root }, '/');
  return { root: () => r };
}
