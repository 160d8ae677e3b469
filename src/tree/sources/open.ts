/**
 * What `mkfs --from` accepts, opened as a tree source: a host directory, an ext4 image (optionally
 * `IMAGE:/path` inside it), a tar archive (plain or gzip; `-` is stdin), `oci:DIR[:TAG]` or
 * `docker-archive:FILE[:TAG]`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Ext4Error } from '../../core/errors.js';
import { Ext4Reader } from '../../fs/reader.js';
import { EXT4_MAGIC, SUPERBLOCK_OFFSET, superblockFieldOffset } from '../../ext4/superblock.js';
import { FileDevice } from '../../io/device.js';
import { lockForRead, type LockOptions } from '../../host/lock.js';
import { sameFile } from '../../host/atomic.js';
import { hostDirectorySource } from './host.js';
import { imageTreeSource, unreadableOption } from './image.js';
import { containerTreeSource } from './oci.js';
import { tarTreeSource } from './tar.js';
import type { TreeSource } from '../../core/types.js';
import { readXattrDump } from './xattr-dump.js';

export interface OpenSourceOptions {
  /** The image to be written: archives spool beside it, and an image source may not be it. */
  output: string;
  /** A getfattr dump for a host directory source. */
  xattrs?: string;
  /** Leave out (with a warning) entries of a source image that cannot be read. */
  skipUnreadable?: boolean;
  /** os/arch[/variant] for a multi-platform container image. */
  platform?: string;
  /** The root directory's time where an archive does not give it (seconds; default now). */
  timestamp?: number;
  onWarning?: (message: string) => void;
  /** An image source is read under a reader's lock (how long to wait for a writer of ours). */
  lock?: LockOptions;
}

export interface OpenedSource {
  source: TreeSource;
  /** Entries read from an archive or container image. */
  entries?: number;
  /** Releases an archive's file and spool, an image's file and lock; call after the image is written. */
  close?: () => void;
}

/** True when `p` is a regular file holding an ext4 (or ext2/3) superblock. */
export function isExt4Image(p: string): boolean {
  let fd: number | undefined;
  try {
    fd = fs.openSync(p, 'r');
    const b = Buffer.alloc(2);
    return (
      fs.readSync(fd, b, 0, 2, SUPERBLOCK_OFFSET + superblockFieldOffset('s_magic')) === 2 &&
      b.readUInt16LE(0) === EXT4_MAGIC
    );
  } catch {
    return false;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Opens `from` as a tree source; an archive or container image is read (and checked) in full first. */
export async function openTreeSource(from: string, o: OpenSourceOptions): Promise<OpenedSource> {
  const spoolDir = path.dirname(path.resolve(o.output));
  const rootTime = { sec: o.timestamp ?? Math.floor(Date.now() / 1000), nsec: 0 };
  const container = /^(oci|docker-archive):(.*)$/s.exec(from);
  const st = container ? undefined : fs.statSync(from, { throwIfNoEntry: false });
  const image = st?.isFile() && isExt4Image(from);
  const archive = !container && (from === '-' || (st !== undefined && !st.isDirectory() && !image));
  if (o.xattrs !== undefined && !st?.isDirectory())
    throw new Ext4Error(
      'BAD_OPTION',
      '--xattrs applies to a host directory; archives and images carry their own attributes',
    );
  if (o.platform !== undefined && !container)
    throw new Ext4Error('BAD_OPTION', '--platform goes with --from oci:DIR or docker-archive:FILE');
  if (container) {
    const c = await containerTreeSource(container[1] as 'oci' | 'docker-archive', container[2]!, {
      platform: o.platform,
      spoolDir,
      rootTime,
      onWarning: o.onWarning,
    });
    return { source: c.source, entries: c.entries, close: () => c.close() };
  }
  if (archive) {
    if (from === '-' && process.stdin.isTTY)
      throw new Ext4Error('BAD_OPTION', '--from - reads a tar archive from standard input, which is a terminal here');
    const t = await tarTreeSource(from, { spoolDir, rootTime, onWarning: o.onWarning });
    return { source: t.source, entries: t.entries, close: () => t.close() };
  }
  if (st?.isDirectory())
    return {
      source: hostDirectorySource(from, { xattrs: o.xattrs === undefined ? undefined : readXattrDump(o.xattrs) }),
    };
  let file = from;
  let inner = '/';
  if (!st) {
    const colon = from.lastIndexOf(':');
    if (colon > 0 && fs.statSync(from.slice(0, colon), { throwIfNoEntry: false })?.isFile()) {
      file = from.slice(0, colon);
      inner = from.slice(colon + 1) || '/';
    } else throw new Ext4Error('SOURCE_ERROR', `${from}: no such directory, image or archive`);
  }
  if (sameFile(file, o.output))
    throw new Ext4Error('BAD_OPTION', `the output ${o.output} is the source image itself`, { path: o.output });
  // Read until the new image is written (the caller's close): under a reader's lock all along.
  const lock = lockForRead(file, o.lock);
  let dev: FileDevice | undefined;
  const close = () => {
    dev?.close();
    lock.release();
  };
  try {
    dev = FileDevice.open(file);
    const reader = Ext4Reader.open(dev, { verifyChecksums: true, onWarning: o.onWarning });
    return {
      close,
      source: imageTreeSource(reader, inner, {
        skipRootNames: inner === '/' ? ['lost+found'] : [],
        ...unreadableOption(o.skipUnreadable, o.onWarning),
      }),
    };
  } catch (e) {
    close();
    throw e;
  }
}
