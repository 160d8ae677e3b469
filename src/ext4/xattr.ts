/**
 * Extended attributes (kernel doc: attributes.rst): entries in the inode after i_extra_isize, or in one
 * attribute block shared by every inode with the same set. POSIX ACLs are stored in ext4's compact ACL
 * format, converted from the VFS format that getxattr/setxattr use.
 */
import { put16, put32, u16, u32 } from '../core/bytes.js';
import { crc32c, crc32cU64 } from '../core/crc32c.js';
import { Ext4Error, type Ext4ErrorContext } from '../core/errors.js';
import type { XattrEntry } from '../core/types.js';

export const XATTR_MAGIC = 0xea020000;
const ENTRY_HEADER = 16;
export const XATTR_BLOCK_HEADER = 32;
const BLOCK_HEADER = XATTR_BLOCK_HEADER;

/** Name prefixes by index; longer prefixes first so the most specific one wins. */
const PREFIXES: [string, number][] = [
  ['system.posix_acl_access', 2],
  ['system.posix_acl_default', 3],
  ['system.richacl', 8],
  ['user.', 1],
  ['trusted.', 4],
  ['security.', 6],
  ['system.', 7],
];

export type { XattrEntry };

/** The name index and name of the attribute that holds inline data past i_block (system.data). */
export const INLINE_DATA_INDEX = 7;
export const INLINE_DATA_NAME = new TextEncoder().encode('data');

export function isInlineDataAttr(x: { index: number; name: Uint8Array }): boolean {
  return x.index === INLINE_DATA_INDEX && x.name.length === 4 && Buffer.from(x.name).toString('latin1') === 'data';
}

export interface DiskXattr {
  index: number;
  name: Uint8Array;
  value: Uint8Array;
}

const pad4 = (n: number) => (n + 3) & ~3;
export const entrySize = (nameLen: number) => pad4(ENTRY_HEADER + nameLen);

/** Splits a full attribute name into its on-disk index and suffix. */
export function xattrKey(fullName: string): { index: number; name: Uint8Array } {
  for (const [prefix, index] of PREFIXES) {
    const exact = index === 2 || index === 3 || index === 8;
    if (exact ? fullName === prefix : fullName.startsWith(prefix) && fullName.length > prefix.length) {
      const name = new TextEncoder().encode(exact ? '' : fullName.slice(prefix.length));
      if (name.length > 255) throw new Ext4Error('NAME_TOO_LONG', `extended attribute name ${fullName} is too long`);
      return { index, name };
    }
  }
  throw new Ext4Error(
    'UNSUPPORTED_FEATURE',
    `extended attribute namespace of "${fullName}" is not one ext4 stores (user., trusted., security., system.)`,
  );
}

const PREFIX_OF = new Map(PREFIXES.map(([prefix, index]) => [index, prefix]));

/** The full name of a stored attribute (prefix + suffix), or undefined for an unknown index. */
export function xattrFullName(x: { index: number; name: Uint8Array }): string | undefined {
  const prefix = PREFIX_OF.get(x.index);
  if (prefix === undefined) return undefined;
  const exact = x.index === 2 || x.index === 3 || x.index === 8;
  return exact ? prefix : prefix + Buffer.from(x.name).toString('utf8');
}

/** An attribute as stored: its key, and ACL values converted to ext4's format. */
export function toDisk(x: XattrEntry): DiskXattr {
  const { index, name } = xattrKey(x.name);
  return { index, name, value: index === 2 || index === 3 ? aclToDisk(x.value, x.name) : x.value };
}

/** POSIX ACL entry tags, the same in the VFS (version 2) and ext4 (version 1) formats. */
export const ACL_USER_OBJ = 0x01;
export const ACL_USER = 0x02;
export const ACL_GROUP_OBJ = 0x04;
export const ACL_GROUP = 0x08;
export const ACL_MASK = 0x10;
export const ACL_OTHER = 0x20;

/** VFS POSIX ACL (version 2, 8-byte entries) -> ext4 ACL (version 1, 4-byte short entries where no id). */
export function aclToDisk(v: Uint8Array, name: string): Uint8Array {
  if (v.length < 4 || (v.length - 4) % 8 !== 0 || u32(v, 0) !== 2)
    throw new Ext4Error('SOURCE_ERROR', `${name}: not a POSIX ACL in the xattr format (version 2)`);
  const n = (v.length - 4) / 8;
  const out: number[] = [1, 0, 0, 0];
  for (let i = 0; i < n; i++) {
    const o = 4 + i * 8;
    const tag = u16(v, o);
    const perm = u16(v, o + 2);
    out.push(tag & 0xff, tag >> 8, perm & 0xff, perm >> 8);
    if (tag === ACL_USER || tag === ACL_GROUP) {
      const id = u32(v, o + 4);
      out.push(id & 0xff, (id >>> 8) & 0xff, (id >>> 16) & 0xff, id >>> 24);
    } else if (![ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER].includes(tag)) {
      throw new Ext4Error('SOURCE_ERROR', `${name}: unknown ACL tag 0x${tag.toString(16)}`);
    }
  }
  return new Uint8Array(out);
}

/** ext4 ACL -> VFS format (for readers). */
export function aclFromDisk(v: Uint8Array): Uint8Array {
  const out: number[] = [2, 0, 0, 0];
  let o = 4;
  while (o + 4 <= v.length) {
    const tag = u16(v, o);
    const perm = u16(v, o + 2);
    let id = 0xffffffff;
    if (tag === ACL_USER || tag === ACL_GROUP) {
      if (o + 8 > v.length) throw new Ext4Error('CORRUPT', 'truncated ACL entry');
      id = u32(v, o + 4);
      o += 8;
    } else o += 4;
    out.push(tag & 0xff, tag >> 8, perm & 0xff, perm >> 8, id & 0xff, (id >>> 8) & 0xff, (id >>> 16) & 0xff, id >>> 24);
  }
  return new Uint8Array(out);
}

/** Entry hash: name bytes rotated in 5 bits at a time, then the value's 32-bit words 16 bits at a time. */
export function entryHash(x: DiskXattr): number {
  let h = 0;
  for (const c of x.name) h = ((h << 5) ^ (h >>> 27) ^ c) >>> 0;
  const padded = new Uint8Array(pad4(x.value.length));
  padded.set(x.value);
  for (let i = 0; i < padded.length; i += 4) h = ((h << 16) ^ (h >>> 16) ^ u32(padded, i)) >>> 0;
  return h;
}

/** Block entries are kept sorted by (index, name length, name): the kernel's lookup relies on it. */
export function sortXattrs(xs: DiskXattr[]): DiskXattr[] {
  return [...xs].sort((a, b) => a.index - b.index || a.name.length - b.name.length || Buffer.compare(a.name, b.name));
}

/** Bytes a set needs: entries + 4-byte end marker + padded values. */
export function xattrSpace(xs: DiskXattr[]): number {
  return xs.reduce((a, x) => a + entrySize(x.name.length) + pad4(x.value.length), 4);
}

/** Lays entries from `base + first` and values backwards from `base + end`; value offsets relative to `offBase`. */
function layOut(b: Uint8Array, base: number, first: number, end: number, offBase: number, xs: DiskXattr[]): number[] {
  let e = base + first;
  let v = base + end;
  const hashes: number[] = [];
  for (const x of xs) {
    v -= pad4(x.value.length);
    b[e] = x.name.length;
    b[e + 1] = x.index;
    put16(b, e + 2, x.value.length ? v - offBase : 0);
    put32(b, e + 4, 0);
    put32(b, e + 8, x.value.length);
    const h = entryHash(x);
    put32(b, e + 12, h);
    hashes.push(h);
    b.set(x.name, e + ENTRY_HEADER);
    b.set(x.value, v);
    e += entrySize(x.name.length);
  }
  put32(b, e, 0);
  if (e + 4 > v) throw new Ext4Error('NO_SPACE', 'extended attributes overflow their space');
  return hashes;
}

/** Space inside an inode of `inodeSize` bytes with `extraIsize` for attributes (after the 4-byte magic). */
export function inodeXattrSpace(inodeSize: number, extraIsize: number): number {
  return Math.max(0, inodeSize - 128 - extraIsize - 4);
}

/** Writes the in-inode attribute area into the inode bytes at `off`. */
export function encodeInodeXattrs(
  b: Uint8Array,
  off: number,
  inodeSize: number,
  extraIsize: number,
  xs: DiskXattr[],
): void {
  const start = off + 128 + extraIsize;
  put32(b, start, XATTR_MAGIC);
  layOut(b, start + 4, 0, inodeSize - 128 - extraIsize - 4, start + 4, sortXattrs(xs));
}

/** Builds an attribute block (refcount and checksum are filled by `sealXattrBlock`). */
export function encodeXattrBlock(blockSize: number, xs: DiskXattr[]): Uint8Array {
  const b = new Uint8Array(blockSize);
  put32(b, 0, XATTR_MAGIC);
  put32(b, 8, 1);
  const hashes = layOut(b, 0, BLOCK_HEADER, blockSize, 0, sortXattrs(xs));
  let h = 0;
  for (const eh of hashes) {
    if (!eh) {
      h = 0;
      break;
    }
    h = ((h << 16) ^ (h >>> 16) ^ eh) >>> 0;
  }
  put32(b, 12, h);
  return b;
}

/** metadata_csum checksum of an attribute block: crc32c(fs seed, le64 block number, the block with h_checksum zero). */
export function xattrBlockChecksum(csumSeed: number, block: number, b: Uint8Array): number {
  let c = crc32cU64(csumSeed, block);
  c = crc32c(c, b, 0, 16);
  c = crc32c(c, ZERO4, 0, 4);
  return crc32c(c, b, 20, b.length);
}
const ZERO4 = new Uint8Array(4);

/** Sets an attribute block's h_refcount (without metadata_csum nothing else is due; with it, seal). */
export function setXattrRefcount(b: Uint8Array, refcount: number): void {
  put32(b, 4, refcount);
}

/** Sets the reference count and the metadata_csum checksum (fs seed, le64 block number, block). */
export function sealXattrBlock(b: Uint8Array, block: number, refcount: number, csumSeed: number): void {
  setXattrRefcount(b, refcount);
  put32(b, 16, 0);
  put32(b, 16, xattrBlockChecksum(csumSeed, block, b));
}

/**
 * Points the entries of [first, end) whose value lives in inode `from` at inode `to` (the value inode
 * was renumbered). Neither an entry's hash nor the block's covers the number: they hash the name and
 * the value's own hash (attributes.rst). Returns how many entries changed.
 */
export function retargetValueInode(b: Uint8Array, first: number, end: number, from: number, to: number): number {
  let n = 0;
  for (let e = first; e + ENTRY_HEADER <= end && u32(b, e) !== 0; e += entrySize(b[e]!))
    if (u32(b, e + 4) === from) {
      put32(b, e + 4, to);
      n++;
    }
  return n;
}

/** An attribute as stored: a value in place, or (ea_inode) in inode `valueInum` of `valueSize` bytes. */
export interface RawXattr extends DiskXattr {
  valueInum: number;
  valueSize: number;
  hash: number;
}

/**
 * Decodes the entries that start at `first` and end at the zero word before `end`; value offsets are
 * relative to `valueBase` and must stay inside [valueBase, valueEnd). Values kept in an EA inode are
 * returned with their inode number and an empty `value`.
 */
export function decodeXattrEntries(
  b: Uint8Array,
  first: number,
  end: number,
  valueBase: number,
  valueEnd: number,
  where: Ext4ErrorContext,
): RawXattr[] {
  const out: RawXattr[] = [];
  let e = first;
  while (e + 4 <= end && u32(b, e) !== 0) {
    if (e + ENTRY_HEADER > end || out.length >= 10_000)
      throw new Ext4Error('CORRUPT', 'extended attribute entries overrun their area', where);
    const nameLen = b[e]!;
    const index = b[e + 1]!;
    const voff = u16(b, e + 2);
    const valueInum = u32(b, e + 4);
    const valueSize = u32(b, e + 8);
    if (e + ENTRY_HEADER + nameLen > end)
      throw new Ext4Error('CORRUPT', 'extended attribute name overruns its area', where);
    const name = b.slice(e + ENTRY_HEADER, e + ENTRY_HEADER + nameLen);
    let value = new Uint8Array(0);
    if (!valueInum) {
      if (valueBase + voff + valueSize > valueEnd)
        throw new Ext4Error('CORRUPT', 'extended attribute value lies outside its area', where);
      value = b.slice(valueBase + voff, valueBase + voff + valueSize);
    }
    out.push({ index, name, value, valueInum, valueSize, hash: u32(b, e + 12) });
    e += entrySize(nameLen);
  }
  return out;
}

// POSIX ACLs and the mode (kernel: posix_acl_update_mode, posix_acl_chmod).

/** Entries of an ext4 ACL value (version 1; short entries without an id). */
function aclEntries(v: Uint8Array): { tag: number; perm: number; off: number }[] {
  const out: { tag: number; perm: number; off: number }[] = [];
  let o = 4;
  while (o + 4 <= v.length) {
    const tag = u16(v, o);
    out.push({ tag, perm: u16(v, o + 2), off: o });
    o += tag === ACL_USER || tag === ACL_GROUP ? 8 : 4;
  }
  return out;
}

/** The mode an access ACL implies, and whether the ACL says nothing beyond the mode. */
export function aclMode(disk: Uint8Array, mode: number): { mode: number; equivalent: boolean } {
  let user = 0;
  let group = 0;
  let other = 0;
  let mask: number | undefined;
  let extended = false;
  for (const e of aclEntries(disk)) {
    if (e.tag === ACL_USER_OBJ) user = e.perm & 7;
    else if (e.tag === ACL_GROUP_OBJ) group = e.perm & 7;
    else if (e.tag === ACL_OTHER) other = e.perm & 7;
    else if (e.tag === ACL_MASK) {
      mask = e.perm & 7;
      extended = true;
    } else extended = true;
  }
  const g = mask ?? group;
  return { mode: (mode & ~0o777) | (user << 6) | (g << 3) | other, equivalent: !extended };
}

/** An access ACL after chmod: owner, group class (mask, else group) and other follow the mode. */
export function chmodAcl(disk: Uint8Array, perm: number): Uint8Array {
  const out = disk.slice();
  const entries = aclEntries(out);
  const hasMask = entries.some((e) => e.tag === ACL_MASK);
  for (const e of entries) {
    let p: number | undefined;
    if (e.tag === ACL_USER_OBJ) p = (perm >> 6) & 7;
    else if (e.tag === ACL_OTHER) p = perm & 7;
    else if (e.tag === ACL_MASK || (e.tag === ACL_GROUP_OBJ && !hasMask)) p = (perm >> 3) & 7;
    if (p !== undefined) put16(out, e.off + 2, p);
  }
  return out;
}
