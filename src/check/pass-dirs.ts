/**
 * Passes 2 to 4 (e2fsck's): every directory's blocks and entries (checksums, rec_len and name_len,
 * '.' and '..', names, inode numbers, file types against the inodes, duplicates), then connectivity
 * (every directory reached from the root, its '..' naming the directory that holds it) and link
 * counts (every inode in use named as often as i_links_count says).
 */
import { u32 } from '../core/bytes.js';
import { Ext4Error } from '../core/errors.js';
import { INCOMPAT, RO_COMPAT } from '../ext4/features.js';
import {
  S_IFMT,
  S_IFDIR,
  S_IFREG,
  FL_INLINE_DATA,
  FL_CASEFOLD,
  FL_ENCRYPT,
  FL_EA_INODE,
  ROOT_INO,
  LINK_MAX,
} from '../ext4/inode.js';
import { hasDirTail, isDotOrDotDot } from '../ext4/dirent.js';
import { fileTypeOfMode } from '../ext4/filetype.js';
import type { CheckContext } from './context.js';
import type { InodeInfo } from './inode-table.js';
import { checkHtree } from './htree.js';
import { BlockEntries, NameSet } from './dir-names.js';

export function checkDirectories(ctx: CheckContext): void {
  const scratch = { entries: new BlockEntries(), names: new NameSet() };
  const t = ctx.inodes;
  for (let k = 0; k < t.size; k++) if (t.at(k).dir) checkDirectory(ctx, t.inoAt(k), t.at(k), scratch);
}

/** What the rules for one directory's entries depend on. */
interface DirRules {
  ino: number;
  /** Case-folded directories hold UTF-8 names (e2fsck's check). */
  casefold: boolean;
  /** Encrypted ones hold ciphertext (16 bytes at least) of encrypted inodes (e2fsck's checks). */
  encrypted: boolean;
  /** Entries carry file types to compare (the Hurd keeps none: e2fsck drops the feature for it). */
  fileType: boolean;
  /** The names seen so far. */
  names: NameSet;
}

/** A name for a message (only made when there is something to say). */
const quoted = (b: Uint8Array, off: number, len: number): string =>
  JSON.stringify(Buffer.from(b.buffer, b.byteOffset + off, len).toString('latin1'));

/** Whether the `len` bytes at `off` of `b` are '.' (len 1) or '..' (len 2). */
const isDots = (b: Uint8Array, off: number, len: number): boolean =>
  (len === 1 || len === 2) && b[off] === 0x2e && (len === 1 || b[off + 1] === 0x2e);

function checkDirectory(
  ctx: CheckContext,
  ino: number,
  info: InodeInfo,
  scratch: { entries: BlockEntries; names: NameSet },
): void {
  const p = ctx.problems;
  if (!info.dir) return;
  const { inode: i, runs } = info.dir;
  scratch.names.clear();
  const d: DirRules = {
    ino,
    casefold: ctx.has(INCOMPAT.casefold) && (i.flags & FL_CASEFOLD) !== 0,
    encrypted: (i.flags & FL_ENCRYPT) !== 0,
    fileType: ctx.has(INCOMPAT.filetype) && ctx.sb.s_creator_os !== 1,
    names: scratch.names,
  };
  if (i.flags & FL_INLINE_DATA) {
    let dir: ReturnType<typeof ctx.r.inlineDir>;
    try {
      dir = ctx.r.inlineDir(ino, i);
    } catch (e) {
      p.fromError('DIR_BLOCK', e, { inode: ino });
      return;
    }
    info.refs++; // '.' is implied
    info.dotdot = dir.parent;
    countDotDot(ctx, dir.parent);
    for (const a of dir.areas)
      for (const e of a.entries) {
        if (e.inode && isDotOrDotDot(e.name))
          p.add('DIR_DOT', `directory ${ino}: an inline directory holds a '.' or '..' entry`, { inode: ino });
        else if (e.inode) checkEntry(ctx, d, e.name, 0, e.name.length, e.inode, e.fileType, -1, -1);
      }
    return;
  }
  const bs = ctx.bs;
  const list = scratch.entries;
  let sawFirst = false;
  for (const r of runs) {
    if (r.uninit) continue;
    for (let k = 0; k < r.len; k++) {
      const lblk = r.lblk + k;
      if (lblk * bs >= i.size) break;
      const pblk = r.pblk + k;
      let b: Uint8Array;
      // The block's checksum and kind, then where its entries lie (all of them, before any counts).
      try {
        if (pblk < ctx.blocksCount) ctx.readAheadDir(pblk);
        const blk = ctx.r.dirBlockBuf(ino, i, lblk, pblk);
        b = blk.buf;
        // An htree index block lists no entries, but the root keeps '.' and '..' in front of its index.
        if (!blk.dx || lblk === 0) list.read(b, bs, { inode: ino, block: pblk });
        else list.count = 0;
        // With metadata_csum every leaf ends in its checksum tail (e2fsck: "directory has no checksum").
        if (!blk.dx && ctx.raw.csum && !hasDirTail(b, bs)) {
          p.add('DIR_BLOCK', `directory ${ino}, block ${lblk}: no checksum tail`, { inode: ino, block: pblk });
          ctx.fixEntry({ dir: ino, block: pblk, offset: 0, fix: 'salvage' });
        }
      } catch (e) {
        if (!(e instanceof Ext4Error) || e.code === 'IO_ERROR') throw e;
        p.add('DIR_BLOCK', `directory ${ino}, block ${lblk}: ${e.message}`, { inode: ino, block: pblk });
        if (pblk < ctx.blocksCount) ctx.fixEntry({ dir: ino, block: pblk, offset: 0, fix: 'salvage' });
        if (lblk === 0) sawFirst = true;
        continue;
      }
      let from = 0;
      if (lblk === 0) {
        sawFirst = true;
        from = checkDots(ctx, ino, info, b, list);
      }
      for (let x = from; x < list.count; x++) {
        const off = list.offsets[x]!;
        const inode = u32(b, off);
        if (!inode) continue;
        const len = b[off + 6]!;
        if (isDots(b, off + 8, len)) {
          p.add('DIR_DOT', `directory ${ino}, block ${lblk}: a second '${len === 1 ? '.' : '..'}' entry`, {
            inode: ino,
          });
          ctx.fixEntry({ dir: ino, block: pblk, offset: off, fix: 'clear' });
        } else checkEntry(ctx, d, b, off + 8, len, inode, b[off + 7]!, lblk, pblk);
      }
    }
  }
  if (!sawFirst) p.add('DIR_BLOCK', `directory ${ino} has no first block`, { inode: ino });
  else if (ctx.r.usesIndex(i)) {
    const before = p.count;
    checkHtree(ctx, ino, i, runs);
    if (p.count > before) ctx.fixDir({ dir: ino, fix: 'unindex' });
  }
}

/**
 * The live entry naming `inode` with file type byte `type`, its name the `len` bytes at `off` of `b`,
 * in block `lblk` (physical `pblk`) of the directory (-1: an inline directory, whose entries a repair
 * does not fix here).
 */
function checkEntry(
  ctx: CheckContext,
  d: DirRules,
  b: Uint8Array,
  off: number,
  len: number,
  inode: number,
  type: number,
  lblk: number,
  pblk: number,
): void {
  const p = ctx.problems;
  const ino = d.ino;
  // One pass: the name's hash (FNV-1a) and whether it holds a '/' or a NUL.
  let h = 0x811c9dc5 | 0;
  let badByte = false;
  for (let k = 0; k < len; k++) {
    const c = b[off + k]!;
    if (c === 0x2f || c === 0) badByte = true;
    h = Math.imul(h ^ c, 0x01000193);
  }
  if (len === 0 || badByte) {
    p.add(
      'DIR_ENTRY',
      `directory ${ino}${lblk < 0 ? '' : `, block ${lblk}`}: entry ${quoted(b, off, len)} has a bad name`,
      { inode: ino },
    );
    // e2fsck clears a name of no bytes and replaces a bad byte with '.'.
    fixAt(ctx, ino, pblk, off, len === 0 ? 'clear' : 'name');
  }
  if (!d.names.add(h, b, off, len))
    p.add('DIR_DUPLICATE', `directory ${ino}: the name ${quoted(b, off, len)} appears twice`, { inode: ino });
  if (inode > ctx.inodesCount || (inode < ctx.firstIno && inode !== ROOT_INO)) {
    p.add('DIR_ENTRY_INODE', `directory ${ino}: ${quoted(b, off, len)} names inode ${inode}, which it cannot`, {
      inode: ino,
    });
    fixAt(ctx, ino, pblk, off, 'clear');
    return;
  }
  const target = ctx.inodes.get(inode);
  if (!target) {
    p.add('DIR_ENTRY_INODE', `directory ${ino}: ${quoted(b, off, len)} names inode ${inode}, which is not in use`, {
      inode: ino,
    });
    fixAt(ctx, ino, pblk, off, 'clear');
    return;
  }
  target.refs++;
  if (d.casefold && !d.encrypted && !validUtf8(b.subarray(off, off + len)))
    p.add('DIR_ENTRY', `directory ${ino}: ${quoted(b, off, len)} is not valid UTF-8 in a case-folded directory`, {
      inode: ino,
    });
  if (d.encrypted && len < 16)
    p.add('DIR_ENTRY', `directory ${ino}: encrypted name ${quoted(b, off, len)} is shorter than 16 bytes`, {
      inode: ino,
    });
  if (d.encrypted && !(target.flags & FL_ENCRYPT))
    p.add('DIR_ENTRY', `directory ${ino}: encrypted entry ${quoted(b, off, len)} names unencrypted inode ${inode}`, {
      inode: ino,
    });
  if (d.fileType && type !== fileTypeOfMode(target.mode)) {
    p.add(
      'DIR_ENTRY_TYPE',
      `directory ${ino}: ${quoted(b, off, len)} has file type ${type}, inode ${inode} is type ${fileTypeOfMode(target.mode)}`,
      { inode: ino },
    );
    fixAt(ctx, ino, pblk, off, 'type', fileTypeOfMode(target.mode));
  }
  if ((target.mode & S_IFMT) === S_IFDIR) {
    if (target.parent !== undefined) {
      p.add('DIR_MULTIPLY_LINKED', `directory ${inode} is named in directory ${target.parent} and in ${ino}`, {
        inode,
      });
      // e2fsck clears the second entry naming a directory.
      fixAt(ctx, ino, pblk, off, 'clear');
    } else target.parent = ino;
  }
}

/** A repair's fix of the entry whose name is at `off` of block `pblk` (-1: inline, not fixed here). */
function fixAt(
  ctx: CheckContext,
  dir: number,
  pblk: number,
  off: number,
  fix: 'clear' | 'type' | 'name',
  fileType?: number,
): void {
  if (pblk >= 0 && ctx.entryFixes) ctx.fixEntry({ dir, block: pblk, offset: off - 8, fix, fileType });
}

/** '.' (itself) and '..' open a directory's first block; returns how many entries they were. */
function checkDots(ctx: CheckContext, ino: number, info: InodeInfo, b: Uint8Array, list: BlockEntries): number {
  const p = ctx.problems;
  const dot = list.count > 0 ? list.offsets[0]! : -1;
  const dotdot = list.count > 1 ? list.offsets[1]! : -1;
  let n = 0;
  if (dot < 0 || u32(b, dot) !== ino || b[dot + 6] !== 1 || !isDots(b, dot + 8, 1)) {
    p.add('DIR_DOT', `directory ${ino}: its first entry is not '.' naming itself`, { inode: ino });
    ctx.fixDir({ dir: ino, fix: 'dots' });
  } else {
    info.refs++;
    n = 1;
  }
  if (dotdot < 0 || !u32(b, dotdot) || b[dotdot + 6] !== 2 || !isDots(b, dotdot + 8, 2)) {
    p.add('DIR_DOT', `directory ${ino}: its second entry is not '..'`, { inode: ino });
    ctx.fixDir({ dir: ino, fix: 'dots' });
  } else {
    info.dotdot = u32(b, dotdot);
    countDotDot(ctx, info.dotdot);
    n = 2;
  }
  return n;
}

/** A '..' counts as a link of the directory it names (when that is one). */
function countDotDot(ctx: CheckContext, parent: number): void {
  const t = ctx.inodes.get(parent);
  if (t && (t.mode & S_IFMT) === S_IFDIR) t.refs++;
}

/** Passes 3 and 4: every directory connected to the root through its parent; link counts. */
export function checkConnectivity(ctx: CheckContext): void {
  const p = ctx.problems;
  const root = ctx.inodes.get(ROOT_INO);
  if (!root || (root.mode & S_IFMT) !== S_IFDIR) {
    if (!root) p.add('ROOT', 'the root directory (inode 2) is not in use', { inode: ROOT_INO });
    return;
  }
  if (root.dotdot !== undefined && root.dotdot !== ROOT_INO) {
    p.add('DIR_PARENT', `the root's '..' names inode ${root.dotdot}`, { inode: ROOT_INO });
    ctx.fixDir({ dir: ROOT_INO, fix: 'dotdot', parent: ROOT_INO });
  }
  // The root reaches itself; every other directory reaches the root through its parents, without a loop.
  const reached = new Map<number, boolean>([[ROOT_INO, true]]);
  const reaches = (start: number): boolean => {
    const path: number[] = [];
    let cur: number | undefined = start;
    const onPath = new Set<number>();
    while (cur !== undefined && !reached.has(cur) && !onPath.has(cur)) {
      onPath.add(cur);
      path.push(cur);
      cur = ctx.inodes.get(cur)?.parent;
    }
    const ok = cur !== undefined && reached.get(cur) === true;
    for (const x of path) reached.set(x, ok);
    return ok;
  };
  const t = ctx.inodes;
  const tops = new Map<number, number | undefined>();
  for (let k = 0; k < t.size; k++) {
    const ino = t.inoAt(k);
    const info = t.at(k);
    if ((info.mode & S_IFMT) !== S_IFDIR || ino === ROOT_INO || ctx.orphans.has(ino)) continue;
    if (ino < ctx.firstIno) continue;
    if (info.parent === undefined) {
      p.add('DIR_UNCONNECTED', `directory ${ino} is not named in any directory`, { inode: ino });
      ctx.fixDir({ dir: ino, fix: 'reconnect' });
      continue;
    }
    if (!reaches(ino)) {
      p.add('DIR_UNCONNECTED', `directory ${ino} is not connected to the root`, { inode: ino });
      // A loop of directories (no top without a parent) is cut where it closes, as e2fsck does.
      const top = loopTop(ctx, ino, tops);
      if (top !== undefined) ctx.fixDir({ dir: top, fix: 'reconnect' });
    }
    if (info.dotdot !== undefined && info.dotdot !== info.parent) {
      p.add('DIR_PARENT', `directory ${ino}: '..' names ${info.dotdot}, its parent is ${info.parent}`, { inode: ino });
      ctx.fixDir({ dir: ino, fix: 'dotdot', parent: info.parent });
    }
  }
  const dirNlink = ctx.hasRo(RO_COMPAT.dir_nlink);
  for (let k = 0; k < t.size; k++) {
    const ino = t.inoAt(k);
    const info = t.at(k);
    if ((ino < ctx.firstIno && ino !== ROOT_INO) || info.system) {
      // An attribute value inode (a regular file) no attribute and no directory names is as lost as a
      // file no directory names. (The flag on a directory means nothing to e2fsck.)
      if (
        info.flags & FL_EA_INODE &&
        (info.mode & S_IFMT) === S_IFREG &&
        info.refs === 0 &&
        ctx.eaValuesComplete &&
        !ctx.eaValueInodes.has(ino)
      )
        p.add('INODE_UNATTACHED', `attribute value inode ${ino} is in use but no attribute names it`, { inode: ino });
      continue;
    }
    if (ctx.orphans.has(ino) && info.refs === 0) continue;
    const isDir = (info.mode & S_IFMT) === S_IFDIR;
    if (info.refs === 0) {
      if (!isDir) p.add('INODE_UNATTACHED', `inode ${ino} is in use but no directory names it`, { inode: ino });
      continue;
    }
    if (isDir && !info.dir) continue;
    // Past the limit a directory's count is 1 (dir_nlink), as e2fsck counts it.
    const counted = isDir && info.refs > LINK_MAX && dirNlink ? 1 : info.refs;
    if (info.links !== counted) {
      p.add('LINK_COUNT', `inode ${ino}: link count ${info.links}, named ${info.refs} time(s)`, { inode: ino });
      // (More links than the field holds, without dir_nlink, is not a count to write.)
      if (counted <= LINK_MAX) ctx.fixInode(ino, { links: counted });
    }
  }
}

/**
 * A repair's: the directory of a parentless chain above `ino` where its parents loop back (e2fsck's
 * choice of which one to hang under /lost+found); undefined when the chain ends in a directory with no
 * parent (that one is reported and reconnected itself).
 */
function loopTop(ctx: CheckContext, ino: number, memo: Map<number, number | undefined>): number | undefined {
  if (!ctx.dirFixes) return undefined;
  const seen = new Set<number>();
  let cur = ino;
  let top: number | undefined;
  for (;;) {
    if (memo.has(cur)) {
      top = memo.get(cur);
      break;
    }
    seen.add(cur);
    const parent = ctx.inodes.get(cur)?.parent;
    if (parent === undefined) break;
    if (seen.has(parent)) {
      top = cur;
      break;
    }
    cur = parent;
  }
  // Every directory on the way shares the answer: each chain is walked once.
  for (const x of seen) memo.set(x, top);
  return top;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
function validUtf8(b: Uint8Array): boolean {
  try {
    utf8.decode(b);
    return true;
  } catch {
    return false;
  }
}
