/**
 * Extended attributes, both ways (kernel doc: attributes.rst; the formats are the ext4/xattr.ts codec).
 * Read: the in-inode area after i_extra_isize, the attribute block (checksum verified), values kept in
 * EA inodes, the VFS view (full names, ACLs converted). Written: the whole set is placed again on every
 * change, in the inode's own area when it fits and in an attribute block for the rest; a block shared
 * with other inodes (refcount above one) is never changed in place: this inode gets its own copy.
 */
import { Ext4Error } from '../core/errors.js';
import { put32, sameBytes, u16, u32 } from '../core/bytes.js';
import { decodeInode, encodeInode, GOOD_OLD_INODE_SIZE, type Inode } from '../ext4/inode.js';
import {
  XATTR_MAGIC,
  XATTR_BLOCK_HEADER,
  aclFromDisk,
  decodeXattrEntries,
  encodeInodeXattrs,
  encodeXattrBlock,
  inodeXattrSpace,
  isInlineDataAttr,
  retargetValueInode,
  sealXattrBlock,
  xattrBlockChecksum,
  xattrFullName,
  xattrSpace,
  type DiskXattr,
  type RawXattr,
  type XattrEntry,
} from '../ext4/xattr.js';
import { inodeBytes } from './inodes.js';
import type { Ext4Volume, XattrVolume } from './volume.js';
import type { WritableVolume } from './writable.js';

/** Values kept in EA inodes are read into memory up to this size. */
const MAX_VALUE_INODE_BYTES = 64 << 20;

/** The attribute area inside an inode's bytes: [start, end) after i_extra_isize, when it has one. */
export function inodeXattrArea(v: Ext4Volume, raw: Uint8Array): { start: number; end: number } | undefined {
  if (v.inodeSize <= GOOD_OLD_INODE_SIZE) return undefined;
  const start = GOOD_OLD_INODE_SIZE + u16(raw, 128);
  if (start + 4 > v.inodeSize) return undefined;
  return { start, end: v.inodeSize };
}

/**
 * An inode's attributes as stored: in-inode entries, then those of its attribute block. Values kept
 * in EA inodes are read unless `withInodeValues` is false.
 */
export function storedXattrs(
  v: XattrVolume,
  ino: number,
  raw = inodeBytes(v, ino),
  withInodeValues = true,
): { inInode: RawXattr[]; block: RawXattr[]; blockNr: number; refcount: number } {
  const where = { inode: ino };
  const area = inodeXattrArea(v, raw);
  const inInode =
    area && u32(raw, area.start) === XATTR_MAGIC
      ? decodeXattrEntries(raw, area.start + 4, area.end, area.start + 4, area.end, where)
      : [];
  const i = decodeInode(raw, 0, v.inodeSize);
  let block: RawXattr[] = [];
  let refcount = 0;
  if (i.fileAcl) {
    const b = v.readBlocks(i.fileAcl);
    if (u32(b, 0) !== XATTR_MAGIC || u32(b, 8) !== 1)
      throw new Ext4Error('CORRUPT', `inode ${ino}: bad extended attribute block ${i.fileAcl}`, {
        inode: ino,
        block: i.fileAcl,
      });
    if (
      v.verify &&
      v.csum &&
      !v.cache.isTrusted(i.fileAcl) &&
      xattrBlockChecksum(v.csumSeed, i.fileAcl, b) !== u32(b, 16)
    )
      throw new Ext4Error('BAD_CHECKSUM', `inode ${ino}: extended attribute block ${i.fileAcl} checksum mismatch`, {
        inode: ino,
        block: i.fileAcl,
      });
    block = decodeXattrEntries(b, XATTR_BLOCK_HEADER, v.blockSize, 0, v.blockSize, { ...where, block: i.fileAcl });
    refcount = u32(b, 4);
  }
  if (withInodeValues)
    for (const x of [...inInode, ...block]) {
      if (!x.valueInum) continue;
      if (x.valueSize > MAX_VALUE_INODE_BYTES)
        throw new Ext4Error('CORRUPT', `inode ${ino}: attribute value of ${x.valueSize} bytes`, where);
      if (x.valueInum === ino)
        throw new Ext4Error('CORRUPT', `inode ${ino}: attribute value inode refers to itself`, where);
      x.value = v.readFileBytes(x.valueInum, MAX_VALUE_INODE_BYTES).slice(0, x.valueSize);
    }
  return { inInode, block, blockNr: i.fileAcl, refcount };
}

/** In-inode attributes then block attributes, as stored (index, name suffix, value). */
export function rawXattrs(
  v: XattrVolume,
  ino: number,
  raw = inodeBytes(v, ino),
): { index: number; name: Uint8Array; value: Uint8Array }[] {
  const s = storedXattrs(v, ino, raw);
  return [...s.inInode, ...s.block];
}

/** Extended attributes with full names, ACLs in the VFS format; inline-data storage is hidden. */
export function xattrs(v: XattrVolume, ino: number): XattrEntry[] {
  const out: XattrEntry[] = [];
  for (const x of rawXattrs(v, ino)) {
    if (isInlineDataAttr(x)) continue;
    const full = xattrFullName(x);
    if (full === undefined) continue;
    out.push({ name: full, value: x.index === 2 || x.index === 3 ? aclFromDisk(x.value) : x.value });
  }
  return out;
}

// ---- writing ----

/** An attribute as the editor handles it; `valueInum` marks a value kept in an EA inode (not editable). */
export interface StoredXattr extends DiskXattr {
  valueInum?: number;
}

/** Room for attributes inside an inode: after i_extra_isize, less the 4-byte magic. */
export function inodeAreaCapacity(v: WritableVolume, extraIsize: number): number {
  return inodeXattrSpace(v.inodeSize, extraIsize);
}

/** The inode's attributes, in-inode ones first (values of EA inodes are not read). */
export function listXattrs(v: WritableVolume, ino: number): StoredXattr[] {
  const s = storedXattrs(v.r, ino, undefined, false);
  return [...s.inInode, ...s.block].map((x) => ({
    index: x.index,
    name: x.name,
    value: x.value,
    ...(x.valueInum ? { valueInum: x.valueInum } : {}),
  }));
}

/** Same attribute (index and name)? */
export function sameXattr(a: { index: number; name: Uint8Array }, b: { index: number; name: Uint8Array }): boolean {
  return a.index === b.index && sameBytes(a.name, b.name);
}

/**
 * Stores `list` as the inode's whole attribute set. `inode` is the caller's current view of the inode
 * (its i_file_acl and i_blocks are updated here and the record written). Throws NO_SPACE, before
 * changing anything, when the set fits neither the inode nor one block.
 */
export function writeXattrs(v: WritableVolume, ino: number, inode: Inode, list: StoredXattr[]): void {
  if (list.some((x) => x.valueInum))
    throw new Ext4Error(
      'UNSUPPORTED_FEATURE',
      `inode ${ino} keeps an attribute value in its own inode (ea_inode), which the editor cannot change`,
      { inode: ino },
    );
  const cap = inodeAreaCapacity(v, inode.extraIsize);
  const inInode: DiskXattr[] = [];
  const inBlock: DiskXattr[] = [];
  const data = list.find(isInlineDataAttr);
  if (xattrSpace(list) <= cap) inInode.push(...list);
  else {
    // Inline data must stay in the inode; the others go in while they fit, the rest to the block.
    if (data) inInode.push(data);
    for (const x of list) {
      if (x === data) continue;
      if (xattrSpace([...inInode, x]) <= cap) inInode.push(x);
      else inBlock.push(x);
    }
    if (data && xattrSpace(inInode) > cap)
      throw new Ext4Error('NO_SPACE', `inode ${ino}: inline data does not fit its inode`, { inode: ino });
  }
  const bs = v.bs;
  if (xattrSpace(inBlock) > bs - 32)
    throw new Ext4Error(
      'NO_SPACE',
      `inode ${ino}: extended attributes need ${xattrSpace(inBlock)} bytes outside the inode; one ${bs}-byte block holds ${bs - 32}`,
      { inode: ino },
    );

  // The attribute block: changed in place when only this inode uses it, else a new one.
  const old = inode.fileAcl;
  const oldRefs = old ? u32(v.r.readBlocks(old), 4) : 0;
  if (!inBlock.length) {
    if (old) dropXattrBlock(v, old, oldRefs);
    if (old) v.addBlocks512(inode, -bs / 512);
    inode.fileAcl = 0;
  } else {
    const b = encodeXattrBlock(bs, inBlock);
    let target = old;
    if (!old || oldRefs !== 1) {
      if (old) dropXattrBlock(v, old, oldRefs);
      else v.addBlocks512(inode, bs / 512);
      target = v.allocBlock(v.inodeGoal(ino));
    }
    sealXattrBlock(b, target, 1, v.csumSeed);
    v.tx.put(target, b);
    inode.fileAcl = target;
  }

  // The inode's own area, then its fields.
  const { buf, offset } = v.inodeRecordForWrite(ino);
  if (v.inodeSize > GOOD_OLD_INODE_SIZE) {
    const start = offset + GOOD_OLD_INODE_SIZE + inode.extraIsize;
    if (start < offset + v.inodeSize) buf.fill(0, start, offset + v.inodeSize);
    if (inInode.length) encodeInodeXattrs(buf, offset, v.inodeSize, inode.extraIsize, inInode);
  } else if (inInode.length) throw new Ext4Error('NO_SPACE', `inode ${ino} has no room for attributes`, { inode: ino });
  encodeInode(buf, offset, v.inodeSize, inode);
  v.sealInode(ino);
}

/** Drops one reference to an attribute block: freed when it was the last. */
export function dropXattrBlock(v: WritableVolume, block: number, refs: number): void {
  if (refs <= 1) {
    v.freeLater(block, 1);
    return;
  }
  const b = v.tx.modify(block);
  if (u32(b, 0) !== XATTR_MAGIC) throw new Ext4Error('CORRUPT', `bad extended attribute block ${block}`, { block });
  sealXattrBlock(b, block, refs - 1, v.csumSeed);
}

/** Releases everything an inode's attributes hold (when the inode is deleted). */
export function releaseXattrs(v: WritableVolume, ino: number, inode: Inode): void {
  const s = storedXattrs(v.r, ino, undefined, false);
  if ([...s.inInode, ...s.block].some((x) => x.valueInum))
    throw new Ext4Error(
      'UNSUPPORTED_FEATURE',
      `inode ${ino} keeps an attribute value in its own inode (ea_inode); deleting it is not supported`,
      { inode: ino },
    );
  if (inode.fileAcl) dropXattrBlock(v, inode.fileAcl, s.refcount);
}

/**
 * Points inode `owner`'s attributes whose value lives in inode `from` at inode `to` (an EA inode
 * renumbered by a shrink): in the inode's own area and in its attribute block (shared or not: every
 * sharer names the same value inode).
 */
export function retargetXattrValueInode(v: WritableVolume, owner: number, from: number, to: number): void {
  const { buf, offset } = v.inodeRecordForWrite(owner);
  const raw = buf.subarray(offset, offset + v.inodeSize);
  const area = inodeXattrArea(v.r, raw);
  if (area && u32(raw, area.start) === XATTR_MAGIC && retargetValueInode(raw, area.start + 4, area.end, from, to))
    v.sealInode(owner);
  const acl = decodeInode(raw, 0, v.inodeSize).fileAcl;
  if (!acl || !retargetValueInode(v.r.readBlocks(acl).slice(), XATTR_BLOCK_HEADER, v.bs, from, to)) return;
  const b = v.tx.modify(acl);
  retargetValueInode(b, XATTR_BLOCK_HEADER, v.bs, from, to);
  if (v.csum) put32(b, 16, xattrBlockChecksum(v.csumSeed, acl, b));
}
