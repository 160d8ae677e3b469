/**
 * What `tune` may change, as values: the library's `TuneChanges`, their parsing from tune2fs's words
 * (`-U random|time|clear|UUID`, `-i 2w`, `-c random`, `-e remount-ro`, `-O ^metadata_csum_seed`) and
 * their validation against the superblock, with tune2fs's limits, into superblock field values. Pure:
 * nothing here reads or writes an image. The limits were taken from tune2fs 1.47's behaviour (its
 * manual page and what it accepts), where one of ours differs the comment says why.
 */
import { Ext4Error } from '../core/errors.js';
import { parseUuid, randomBytes } from '../core/bytes.js';
import { INCOMPAT, RO_COMPAT } from '../ext4/features.js';
import { blocksCount, type Superblock } from '../ext4/superblock.js';

/** The changes `tuneImage` makes; each is optional, and they are made together, in one transaction. */
export interface TuneChanges {
  /** A UUID (8-4-4-4-12 hex, or 16 bytes), `random` (version 4), `time` (version 1) or `clear` (all zero). */
  uuid?: string | Uint8Array;
  /** Volume label, at most 16 bytes of UTF-8 (tune2fs truncates a longer one; we refuse it). */
  label?: string;
  /** Reserved blocks as a percentage of the blocks (0 to 50, fractions allowed), as tune2fs -m. */
  reservedPercent?: number;
  /** Reserved blocks as a count (at most half the blocks), as tune2fs -r. */
  reservedBlocks?: number;
  /** Who may use the reserved blocks (numeric ids, 0 to 65535), as tune2fs -u / -g. */
  reservedUid?: number;
  reservedGid?: number;
  /** Mounts between forced checks: -16000 to 16000 (0 and negative: never), or `random` (20 to 40). */
  maxMountCount?: number | 'random';
  /** The mount count itself (tune2fs -C), 0 to 65535. */
  mountCount?: number;
  /** Seconds between forced checks (0: never), or tune2fs's text: N[d|w|m|s] (no suffix: days). */
  checkInterval?: number | string;
  /** What the kernel does on an error: tune2fs -e. */
  errors?: 'continue' | 'remount-ro' | 'panic';
  /** Feature switches as tune2fs -O names them: `metadata_csum_seed` or `^metadata_csum_seed`. */
  features?: string[];
  /**
   * With metadata_csum, change the UUID by rewriting every checksum that depends on it (as tune2fs
   * does) instead of by keeping the checksum seed (metadata_csum_seed). See README, "Changing identity".
   */
  rewriteChecksums?: boolean;
}

export const ERRORS_BEHAVIOUR = { continue: 1, 'remount-ro': 2, panic: 3 } as const;
const LABEL_BYTES = 16;
const MAX_MOUNTS = 16000;
const DAY = 86400;

function bad(message: string): never {
  throw new Ext4Error('BAD_OPTION', message);
}

function wholeNumber(v: number, what: string, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) bad(`${what} must be a whole number from ${min} to ${max}, got ${v}`);
  return v;
}

/** 16 random bytes marked version 4, RFC 4122 variant. */
export function randomUuid(): Uint8Array {
  const b = randomBytes(16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return b;
}

/** 100-ns intervals from the Gregorian reform (1582-10-15) to the UNIX epoch (RFC 4122, 4.1.4). */
const GREGORIAN_OFFSET = 0x01b21dd213814000n;

/**
 * A version-1 (time-based) UUID for `nowMs`: the 60-bit count of 100-ns intervals since 1582, a random
 * clock sequence, and a random node id with the multicast bit set (RFC 4122, 4.5: no MAC address leaks).
 */
export function timeUuid(nowMs = Date.now()): Uint8Array {
  const t = BigInt(nowMs) * 10000n + GREGORIAN_OFFSET;
  const b = new Uint8Array(16);
  const low = Number(t & 0xffffffffn);
  const mid = Number((t >> 32n) & 0xffffn);
  const high = Number((t >> 48n) & 0x0fffn) | 0x1000;
  b.set([
    low >>> 24,
    (low >>> 16) & 0xff,
    (low >>> 8) & 0xff,
    low & 0xff,
    mid >>> 8,
    mid & 0xff,
    high >>> 8,
    high & 0xff,
  ]);
  const r = randomBytes(8);
  b[8] = (r[0]! & 0x3f) | 0x80;
  b[9] = r[1]!;
  b.set(r.subarray(2, 8), 10);
  b[10] = b[10]! | 0x01;
  return b;
}

/** The 16 bytes a `uuid` change asks for. */
export function uuidBytes(v: string | Uint8Array): Uint8Array {
  if (typeof v !== 'string') {
    if (v.length !== 16) throw new Ext4Error('BAD_UUID', `a UUID is 16 bytes, got ${v.length}`);
    return v.slice();
  }
  const word = v.trim().toLowerCase();
  if (word === 'random') return randomUuid();
  if (word === 'time') return timeUuid();
  if (word === 'clear' || word === 'null') return new Uint8Array(16);
  const u = parseUuid(word);
  if (!u)
    throw new Ext4Error(
      'BAD_UUID',
      `bad UUID "${v}": expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, random, time or clear`,
    );
  return u;
}

/** Seconds for tune2fs -i's text: N, Nd (days), Nw (weeks), Nm (months of 30 days), Ns (seconds). */
export function parseInterval(v: number | string): number {
  if (typeof v === 'number') return wholeNumber(v, 'the check interval', 0, 0xffffffff);
  const m = /^(\d+)([dwms]?)$/i.exec(v.trim());
  if (!m) bad(`bad check interval "${v}": expected a number of days, or N followed by d, w, m (30 days) or s`);
  const unit = { '': DAY, d: DAY, w: 7 * DAY, m: 30 * DAY, s: 1 }[m[2]!.toLowerCase()]!;
  const seconds = Number(m[1]) * unit;
  if (seconds > 0xffffffff) bad(`check interval "${v}" is too long (at most 4294967295 seconds, about 136 years)`);
  return seconds;
}

/** The superblock's stored value for tune2fs -c (a signed 16-bit number; 0 means never, stored as -1). */
export function maxMountValue(v: number | 'random'): number {
  if (v === 'random') return 20 + (randomBytes(1)[0]! % 21);
  wholeNumber(v, 'the maximum mount count', -MAX_MOUNTS, MAX_MOUNTS);
  return v === 0 ? 0xffff : v & 0xffff;
}

/** The label's bytes, checked for length. */
export function labelBytes(label: string): Uint8Array {
  const b = new TextEncoder().encode(label);
  if (b.length > LABEL_BYTES)
    throw new Ext4Error('TOO_LARGE', `the label "${label}" is ${b.length} bytes; a label holds at most ${LABEL_BYTES}`);
  if (b.includes(0)) bad('a label cannot hold a NUL byte');
  return b;
}

/** Feature switches, checked: only the ones that take O(1) work (a superblock change) are accepted. */
export function featureSwitches(list: readonly string[]): { csumSeed?: boolean } {
  const out: { csumSeed?: boolean } = {};
  for (const raw of list) {
    for (const item of raw.split(',')) {
      const word = item.trim();
      if (!word) continue;
      const off = word.startsWith('^') || word.startsWith('-');
      const name = word.replace(/^[\^+-]/, '');
      if (name !== 'metadata_csum_seed')
        throw new Ext4Error(
          'UNSUPPORTED_FEATURE',
          `tune switches only metadata_csum_seed on or off; "${name}" is not supported (tune2fs -O can)`,
        );
      out.csumSeed = !off;
    }
  }
  return out;
}

/** The superblock fields a set of changes sets, validated against `sb` (nothing is changed here). */
export interface TunePlan {
  uuid?: Uint8Array;
  label?: Uint8Array;
  reservedBlocks?: number;
  resuid?: number;
  resgid?: number;
  maxMountCount?: number;
  mountCount?: number;
  checkInterval?: number;
  errors?: number;
  csumSeed?: boolean;
  rewrite: boolean;
}

/** Checks `c` against the file system `sb` describes; every mistake is an Ext4Error before anything is written. */
export function planTune(c: TuneChanges, sb: Superblock): TunePlan {
  const plan: TunePlan = { rewrite: c.rewriteChecksums === true };
  if (c.uuid !== undefined) plan.uuid = uuidBytes(c.uuid);
  if (c.label !== undefined) plan.label = labelBytes(c.label);
  const blocks = blocksCount(sb);
  if (c.reservedPercent !== undefined && c.reservedBlocks !== undefined)
    bad('give the reserved blocks as a percentage or as a count, not both');
  if (c.reservedPercent !== undefined) {
    const p = c.reservedPercent;
    if (!Number.isFinite(p) || p < 0 || p > 50) bad(`the reserved percentage must be from 0 to 50, got ${p}`);
    plan.reservedBlocks = Math.floor((p * blocks) / 100);
  }
  if (c.reservedBlocks !== undefined) {
    const half = Math.floor(blocks / 2);
    if (!Number.isInteger(c.reservedBlocks) || c.reservedBlocks < 0)
      bad(`the reserved block count must be a whole number, got ${c.reservedBlocks}`);
    if (c.reservedBlocks > half)
      throw new Ext4Error('TOO_LARGE', `${c.reservedBlocks} reserved blocks is more than half the ${blocks} blocks`);
    plan.reservedBlocks = c.reservedBlocks;
  }
  if (c.reservedUid !== undefined) plan.resuid = wholeNumber(c.reservedUid, 'the reserved uid', 0, 0xffff);
  if (c.reservedGid !== undefined) plan.resgid = wholeNumber(c.reservedGid, 'the reserved gid', 0, 0xffff);
  if (c.maxMountCount !== undefined) plan.maxMountCount = maxMountValue(c.maxMountCount);
  if (c.mountCount !== undefined) plan.mountCount = wholeNumber(c.mountCount, 'the mount count', 0, 0xffff);
  if (c.checkInterval !== undefined) plan.checkInterval = parseInterval(c.checkInterval);
  if (c.errors !== undefined) {
    if (!Object.hasOwn(ERRORS_BEHAVIOUR, c.errors))
      bad(`bad error behaviour "${String(c.errors)}": expected continue, remount-ro or panic`);
    plan.errors = ERRORS_BEHAVIOUR[c.errors];
  }
  const f = featureSwitches(c.features ?? []);
  const csum = (sb.s_feature_ro_compat & RO_COMPAT.metadata_csum) !== 0;
  if (f.csumSeed !== undefined) {
    if (f.csumSeed && !csum)
      throw new Ext4Error(
        'UNSUPPORTED_FEATURE',
        'metadata_csum_seed needs metadata_csum, which this file system does not have',
      );
    plan.csumSeed = f.csumSeed;
  }
  if (plan.rewrite && !csum)
    bad('--rewrite-checksums applies to metadata_csum file systems only (this one has no checksum seed)');
  if (plan.rewrite && plan.csumSeed === true)
    bad('--rewrite-checksums and metadata_csum_seed contradict each other: the seed is what spares the rewrite');
  if (plan.rewrite && plan.uuid === undefined && plan.csumSeed === undefined)
    bad('--rewrite-checksums goes with a UUID change or ^metadata_csum_seed');
  if (plan.csumSeed === false && !(sb.s_feature_incompat & INCOMPAT.metadata_csum_seed)) plan.csumSeed = undefined;
  return plan;
}

/** True when the plan changes nothing. */
export function emptyPlan(p: TunePlan): boolean {
  return Object.entries(p).every(([k, v]) => k === 'rewrite' || v === undefined);
}
