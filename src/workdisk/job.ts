/**
 * The work-disk job: a rootfs image's /root becomes a small work-seed image, and each VM gets a fresh
 * sparse work disk of its requested size holding the seed's contents, all root:root with modes kept.
 * Image to image, in-process: no temporary directory, no root, no e2fsprogs.
 */
import * as fs from 'node:fs';
import { Ext4Error } from '../core/errors.js';
import { Ext4Reader } from '../fs/reader.js';
import { FileDevice } from '../io/device.js';
import { underReadLock, type LockOptions } from '../host/lock.js';
import { formatImage, sameFile } from '../mkfs/image.js';
import { imageTreeSource, unreadableOption } from '../tree/sources/image.js';
import type { SourceNode, TreeSource } from '../core/types.js';
export { unreadableOption } from '../tree/sources/image.js';
import type { Spec } from '../tree/sources/spec.js';
import { memoryTreeSource } from '../tree/sources/memory.js';
import { TreeWalk, sourcePolicy, type TreeSink } from '../tree/walk.js';
import { workSeedSizeBytes } from './paths.js';
import { refuseDamaged } from '../edit/guard.js';

export type Stage = 'reading rootfs' | 'writing work seed' | 'formatting' | 'applying work seed' | 'syncing';

export interface JobOptions {
  /** Called as each stage starts (the CLI shows it on a terminal). */
  onProgress?: (stage: Stage) => void;
  /** Keep only directories and regular files (the old flow's behaviour); default keeps everything. */
  regularOnly?: boolean;
  /** Deterministic output. */
  uuid?: string;
  hashSeed?: string;
  timestamp?: number;
  /** fsync before the rename (default true). */
  sync?: boolean;
  /** Replay a dirty journal of the input image in memory (the input is not changed). */
  replayJournal?: boolean;
  /** Warnings about the input (a dirty journal read as it is, an entry left out, ...). */
  onWarning?: (message: string) => void;
  /**
   * Leave out entries of the input that cannot be read (encrypted, compressed, damaged), each named in
   * a warning. Default: such an entry fails the job, naming it (a silently missing entry would change
   * what the output holds).
   */
  skipUnreadable?: boolean;
  /** The reader's lock on the input image (how long to wait for a writer of ours). */
  lock?: LockOptions;
  /** Check the output (`check`) before it is renamed into place; one with problems is refused. */
  verify?: boolean;
  /**
   * Check the input image first (the full `check`, of the state after a replay with `replayJournal`);
   * one with problems is refused (NEEDS_CHECK) before anything is written.
   */
  check?: boolean;
  /**
   * Per-path metadata (an mtree spec, see `readSpec`) over the copied tree: paths relative to the seed
   * directory (seed) or the seed's root (materialize). Every entry is root:root first; the spec may
   * then give the paths it names other owners, modes, times and attributes.
   */
  spec?: Spec;
}

export interface SeedResult {
  seedPath: string;
  sizeBytes: number;
  regularFileBytes: number;
  entries: number;
  /** False when the rootfs has no such directory (the seed is empty). */
  found: boolean;
}

function openImage(p: string, options: JobOptions): Ext4Reader {
  if (options.check) refuseDamaged(p, { replay: options.replayJournal });
  return Ext4Reader.open(FileDevice.open(p), { replayJournal: options.replayJournal, onWarning: options.onWarning });
}

/** Refuses an output that is the input itself (same path, or a link to the same file). */
function distinct(input: string, output: string): void {
  if (sameFile(input, output))
    throw new Ext4Error('BAD_OPTION', `the output ${output} is the input image itself`, { path: output });
}

/** Wraps a source's nodes: drops what `keep` rejects and, for regularOnly, unlinks hard links. */
function filtered(src: TreeSource, opts: { regularOnly?: boolean; rootPerm?: number }): TreeSource {
  const wrap = (n: SourceNode, isRoot: boolean): SourceNode => {
    const w = Object.create(n) as SourceNode;
    if (isRoot && opts.rootPerm !== undefined) Object.defineProperty(w, 'perm', { value: opts.rootPerm });
    if (opts.regularOnly && n.kind !== 'dir') Object.defineProperty(w, 'linkKey', { value: undefined });
    w.children = (skip) =>
      n
        .children(skip)
        .filter((c) => !opts.regularOnly || c.kind === 'dir' || c.kind === 'file')
        .map((c) => wrap(c, false));
    return w;
  };
  const root = wrap(src.root(), true);
  return { root: () => root, onUnreadable: src.onUnreadable };
}

/** Formats `path` holding `src`, every entry root:root. */
function writeRootOwned(path: string, sizeBytes: number, src: TreeSource | undefined, options: JobOptions) {
  return formatImage(path, {
    sizeBytes,
    source: src,
    owner: { uid: 0, gid: 0 },
    uuid: options.uuid,
    hashSeed: options.hashSeed,
    timestamp: options.timestamp,
    sync: options.sync,
    verify: options.verify,
    spec: options.spec,
  });
}

/** Bytes of regular files under a source (each inode once), and its entries (every name). */
function regularBytes(src: TreeSource): { bytes: number; entries: number } {
  let bytes = 0;
  let entries = 0;
  const sink: TreeSink<true, true> = {
    dir: () => (entries++, true),
    leaf(c) {
      entries++;
      if (c.kind === 'file') bytes += c.size;
      return true;
    },
    link: () => void entries++,
  };
  new TreeWalk(sink, sourcePolicy(src)).entries(src.root(), true);
  return { bytes, entries };
}

/** What a rootfs without the seed directory gives: an empty directory, 0700 like /root. */
const emptySource = (): TreeSource => memoryTreeSource({ kind: 'dir', perm: 0o700, children: {} }, { sec: 0, nsec: 0 });

/**
 * Builds the work seed: the `path` directory (default /root) of the rootfs image, root-owned, modes
 * kept, in an image sized by workSeedSizeBytes. A rootfs without that directory gives an empty seed.
 */
export function buildWorkSeedImage(
  rootfsPath: string,
  outPath: string,
  options: JobOptions & { path?: string } = {},
): SeedResult {
  distinct(rootfsPath, outPath);
  // The input is read until the output is written: one reader's lock over both.
  return underReadLock(rootfsPath, options.lock, () => seedLocked(rootfsPath, outPath, options));
}

function seedLocked(rootfsPath: string, outPath: string, options: JobOptions & { path?: string }): SeedResult {
  options.onProgress?.('reading rootfs');
  const reader = openImage(rootfsPath, options);
  const inner = options.path ?? '/root';
  let src: TreeSource;
  let found = true;
  try {
    src = imageTreeSource(reader, inner, unreadableOption(options.skipUnreadable, options.onWarning));
  } catch (e) {
    if (!(e instanceof Ext4Error) || e.code !== 'NOT_FOUND') throw e;
    src = emptySource();
    found = false;
  }
  src = filtered(src, { regularOnly: options.regularOnly });
  const { bytes, entries } = regularBytes(src);
  const sizeBytes = workSeedSizeBytes(bytes);
  options.onProgress?.('writing work seed');
  writeRootOwned(outPath, sizeBytes, src, options);
  return { seedPath: outPath, sizeBytes, regularFileBytes: bytes, entries, found };
}

export interface MaterializeResult {
  workDiskPath: string;
  sizeBytes: number;
  entries: number;
  dataBytes: number;
}

/**
 * Makes a fresh sparse ext4 of exactly `sizeBytes` at `workDiskPath` whose root holds the seed's root
 * contents (not its lost+found), every entry root:root with modes kept and `/` 0755 (what sshd wants
 * of /root). Without a seed the disk is empty. Written atomically beside the target.
 */
export function materializeWorkDisk(
  seedPath: string | undefined,
  workDiskPath: string,
  sizeBytes: number,
  options: JobOptions = {},
): MaterializeResult {
  if (seedPath) {
    distinct(seedPath, workDiskPath);
    return underReadLock(seedPath, options.lock, () => materializeLocked(seedPath, workDiskPath, sizeBytes, options));
  }
  return materializeLocked(undefined, workDiskPath, sizeBytes, options);
}

function materializeLocked(
  seedPath: string | undefined,
  workDiskPath: string,
  sizeBytes: number,
  options: JobOptions,
): MaterializeResult {
  let src: TreeSource | undefined;
  let entries = 0;
  if (seedPath) {
    options.onProgress?.('reading rootfs');
    const reader = openImage(seedPath, options);
    const skip = unreadableOption(options.skipUnreadable, options.onWarning);
    src = filtered(imageTreeSource(reader, '/', { skipRootNames: ['lost+found'], ...skip }), {
      regularOnly: options.regularOnly,
      rootPerm: 0o755,
    });
  }
  options.onProgress?.(src ? 'applying work seed' : 'formatting');
  const r = writeRootOwned(workDiskPath, sizeBytes, src, options);
  if (src) entries = regularBytes(src).entries;
  return { workDiskPath, sizeBytes, entries, dataBytes: r.dataBytes };
}

/**
 * Reads a list file: CR stripped, `#` comments removed, whitespace trimmed, blank lines dropped. An
 * empty result is an error naming the file.
 */
export function readNormalizedLines(path: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    throw new Ext4Error('IO_ERROR', `cannot read ${path}: ${(e as Error).message}`, { path, cause: e });
  }
  const lines = text
    .split('\n')
    .map((l) => l.replace(/\r/g, ''))
    .map((l) => {
      const hash = l.indexOf('#');
      return (hash >= 0 ? l.slice(0, hash) : l).trim();
    })
    .filter((l) => l !== '');
  if (!lines.length)
    throw new Ext4Error('BAD_OPTION', `${path} has no entries (only blank lines or comments)`, { path });
  return lines;
}

/**
 * Copies `src` to `dst` as a reflink clone where the host file system supports it (instant, shares
 * blocks), else as a full copy made durable with fsync. Keeps the mode; never overwrites `dst`.
 * Returns how it copied.
 */
export function copyFilePreferClone(src: string, dst: string): 'clone' | 'copy' {
  let st: fs.Stats;
  try {
    st = fs.statSync(src);
  } catch (e) {
    throw new Ext4Error('IO_ERROR', `cannot read ${src}: ${(e as Error).message}`, { path: src, cause: e });
  }
  if (fs.existsSync(dst) || fs.lstatSync(dst, { throwIfNoEntry: false }))
    throw new Ext4Error('IO_ERROR', `${dst} already exists; refusing to overwrite it`, { path: dst });
  try {
    fs.copyFileSync(src, dst, fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE_FORCE);
    fs.chmodSync(dst, st.mode & 0o7777);
    return 'clone';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST')
      throw new Ext4Error('IO_ERROR', `${dst} already exists; refusing to overwrite it`, { path: dst });
    // No reflinks here (ENOTSUP, EXDEV, EINVAL, ...): fall back to a durable copy.
  }
  let out: number | undefined;
  let inp: number | undefined;
  try {
    inp = fs.openSync(src, 'r');
    out = fs.openSync(dst, 'wx', st.mode & 0o7777);
    const buf = Buffer.allocUnsafe(8 << 20);
    const zero = Buffer.alloc(buf.length);
    let pos = 0;
    for (;;) {
      const n = fs.readSync(inp, buf, 0, buf.length, pos);
      if (!n) break;
      if (buf.compare(zero, 0, n, 0, n) === 0) {
        pos += n; // keep holes: skip all-zero chunks, the final size is set below
        continue;
      }
      let done = 0;
      while (done < n) done += fs.writeSync(out, buf, done, n - done, pos + done);
      pos += n;
    }
    fs.ftruncateSync(out, st.size);
    fs.fchmodSync(out, st.mode & 0o7777);
    fs.fsyncSync(out);
    return 'copy';
  } catch (e) {
    if (out !== undefined) {
      fs.closeSync(out);
      out = undefined;
      fs.rmSync(dst, { force: true });
    }
    if (e instanceof Ext4Error) throw e;
    throw new Ext4Error('IO_ERROR', `cannot copy ${src} to ${dst}: ${(e as Error).message}`, { path: dst, cause: e });
  } finally {
    if (out !== undefined) fs.closeSync(out);
    if (inp !== undefined) fs.closeSync(inp);
  }
}
