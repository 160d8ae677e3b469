/**
 * The time a reproducible build asks for: SOURCE_DATE_EPOCH (reproducible-builds.org), read here
 * once with one rule for every command that stamps times (mkfs, the editor). A value that is set but
 * is not a whole number of seconds ext4 can store is refused rather than quietly replaced by the clock.
 */
// Ext4Error moves to core/ in the layered redesign; until then it is the one import from below.
import { Ext4Error } from './errors.js';
import type { Timestamp } from './types.js';

/** The largest UNIX time an ext4 inode stores (34 bits of seconds: the year 2446). */
const MAX_SECONDS = 0x3_ffff_ffff;

/** `t` as UNIX seconds ext4 can store; BAD_OPTION otherwise. */
export function storableSeconds(t: number): number {
  if (!Number.isSafeInteger(t) || t < 0 || t > MAX_SECONDS)
    throw new Ext4Error('BAD_OPTION', `timestamp ${t} is not a UNIX time ext4 can store`);
  return t;
}

/** SOURCE_DATE_EPOCH in seconds; undefined when it is unset or empty, BAD_OPTION when it is not a time. */
export function sourceDateEpoch(env: string | undefined = process.env.SOURCE_DATE_EPOCH): number | undefined {
  if (env === undefined || env === '') return undefined;
  if (!/^\d+$/.test(env))
    throw new Ext4Error('BAD_OPTION', `SOURCE_DATE_EPOCH="${env}" is not a whole number of seconds`);
  return storableSeconds(Number(env));
}

/** The fixed time of an edit: `t` when given, else SOURCE_DATE_EPOCH, else none (the clock's). */
export function fixedTimeOf(t: number | Timestamp | undefined): Timestamp | undefined {
  if (t === undefined) t = sourceDateEpoch();
  return t === undefined ? undefined : typeof t === 'number' ? { sec: Math.floor(t), nsec: 0 } : t;
}
