/**
 * Passes 2 to 4 (e2fsck's): every directory's blocks and entries (checksums, rec_len and name_len,
 * '.' and '..', names, inode numbers, file types against the inodes, duplicates), then connectivity
 * (every directory reached from the root, its '..' naming the directory that holds it) and link
 * counts (every inode in use named as often as i_links_count says).
 */
import { sameBytes } from '../core/bytes.js';
import { Ext4Error } from '../core/errors.js';
import { INCOMPAT, RO_COMPAT } from '../ext4/features.js';
import { S_IFMT, S_IFDIR, FL_INLINE_DATA, FL_CASEFOLD, FL_ENCRYPT, ROOT_INO, LINK_MAX } from '../ext4/inode.js';
import { isDotOrDotDot, type RawDirent } from '../ext4/dirent.js';
import { fileTypeOfMode } from '../ext4/filetype.js';
import type { CheckContext, InodeInfo } from './context.js';
import { checkHtree } from './htree.js';

/** Directories past this many subdirectories keep a link count of 1 (dir_nlink). */

export function checkDirectories(ctx: CheckContext): void {
  for (const [ino, info] of ctx.inodes) if (info.dir) checkDirectory(ctx, ino, info);
}

/** A name for a message (only made when there is something to say). */
const nameText = (n: Uint8Array): string => Buffer.from(n.buffer, n.byteOffset, n.length).toString('latin1');

function checkDirectory(ctx: CheckContext, ino: number, info: InodeInfo): void {
  const p = ctx.problems;
  if (!info.dir) return;
  const { inode: i, runs } = info.dir;
  // Names seen, by a hash of their bytes (no string per entry); a hit is compared byte for byte.
  const names = new Map<number, Uint8Array | Uint8Array[]>();
  // Case-folded directories hold UTF-8 names; encrypted ones hold ciphertext (16 bytes at least) of
  // encrypted inodes (e2fsck's checks of both).
  const casefold = ctx.has(INCOMPAT.casefold) && (i.flags & FL_CASEFOLD) !== 0;
  const encrypted = (i.flags & FL_ENCRYPT) !== 0;
  // The Hurd keeps no file types in entries (e2fsck drops the feature for it).
  const fileType = ctx.has(INCOMPAT.filetype) && ctx.sb.s_creator_os !== 1;
  const entry = (e: RawDirent, where: string) => {
    if (!e.inode) return;
    const name = e.name;
    // One pass: the name's hash (FNV-1a) and whether it holds a '/' or a NUL.
    let h = 0x811c9dc5;
    let badByte = false;
    for (let k = 0; k < name.length; k++) {
      const c = name[k]!;
      if (c === 0x2f || c === 0) badByte = true;
      h = Math.imul(h ^ c, 0x01000193);
    }
    if (name.length === 0 || badByte)
      p.add('DIR_ENTRY', `directory ${ino}${where}: entry ${JSON.stringify(nameText(name))} has a bad name`, {
        inode: ino,
      });
    const seen = names.get(h);
    if (seen === undefined) names.set(h, name);
    else {
      const list = seen instanceof Uint8Array ? [seen] : seen;
      if (list.some((n) => sameBytes(n, name)))
        p.add('DIR_DUPLICATE', `directory ${ino}: the name ${JSON.stringify(nameText(name))} appears twice`, {
          inode: ino,
        });
      else {
        list.push(name);
        names.set(h, list);
      }
    }
    if (e.inode > ctx.inodesCount || (e.inode < ctx.firstIno && e.inode !== ROOT_INO)) {
      p.add(
        'DIR_ENTRY_INODE',
        `directory ${ino}: ${JSON.stringify(nameText(name))} names inode ${e.inode}, which it cannot`,
        {
          inode: ino,
        },
      );
      return;
    }
    const target = ctx.inodes.get(e.inode);
    if (!target) {
      p.add(
        'DIR_ENTRY_INODE',
        `directory ${ino}: ${JSON.stringify(nameText(name))} names inode ${e.inode}, which is not in use`,
        {
          inode: ino,
        },
      );
      return;
    }
    target.refs++;
    if (casefold && !encrypted && !validUtf8(e.name))
      p.add(
        'DIR_ENTRY',
        `directory ${ino}: ${JSON.stringify(nameText(name))} is not valid UTF-8 in a case-folded directory`,
        {
          inode: ino,
        },
      );
    if (encrypted && e.name.length < 16)
      p.add(
        'DIR_ENTRY',
        `directory ${ino}: encrypted name ${JSON.stringify(nameText(name))} is shorter than 16 bytes`,
        {
          inode: ino,
        },
      );
    if (encrypted && !(target.flags & FL_ENCRYPT))
      p.add(
        'DIR_ENTRY',
        `directory ${ino}: encrypted entry ${JSON.stringify(nameText(name))} names unencrypted inode ${e.inode}`,
        {
          inode: ino,
        },
      );
    if (fileType && e.fileType !== fileTypeOfMode(target.mode))
      p.add(
        'DIR_ENTRY_TYPE',
        `directory ${ino}: ${JSON.stringify(nameText(name))} has file type ${e.fileType}, inode ${e.inode} is type ${fileTypeOfMode(target.mode)}`,
        { inode: ino },
      );
    if ((target.mode & S_IFMT) === S_IFDIR) {
      if (target.parent !== undefined)
        p.add('DIR_MULTIPLY_LINKED', `directory ${e.inode} is named in directory ${target.parent} and in ${ino}`, {
          inode: e.inode,
        });
      else target.parent = ino;
    }
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
        else entry(e, '');
      }
    return;
  }
  const bs = ctx.bs;
  let sawFirst = false;
  for (const r of runs) {
    if (r.uninit) continue;
    for (let k = 0; k < r.len; k++) {
      const lblk = r.lblk + k;
      if (lblk * bs >= i.size) break;
      let entries: RawDirent[];
      try {
        if (r.pblk + k < ctx.blocksCount) ctx.readAheadDir(r.pblk + k);
        entries = ctx.r.dirBlock(ino, i, lblk, r.pblk + k).entries;
      } catch (e) {
        if (!(e instanceof Ext4Error) || e.code === 'IO_ERROR') throw e;
        p.add('DIR_BLOCK', `directory ${ino}, block ${lblk}: ${e.message}`, { inode: ino, block: r.pblk + k });
        if (lblk === 0) sawFirst = true;
        continue;
      }
      let from = 0;
      if (lblk === 0) {
        sawFirst = true;
        from = checkDots(ctx, ino, info, entries);
      }
      for (let x = from; x < entries.length; x++) {
        const e = entries[x]!;
        if (e.inode && isDotOrDotDot(e.name))
          p.add('DIR_DOT', `directory ${ino}, block ${lblk}: a second '${Buffer.from(e.name).toString()}' entry`, {
            inode: ino,
          });
        else entry(e, `, block ${lblk}`);
      }
    }
  }
  if (!sawFirst) p.add('DIR_BLOCK', `directory ${ino} has no first block`, { inode: ino });
  else if (ctx.r.usesIndex(i)) checkHtree(ctx, ino, i, runs);
}

/** '.' (itself) and '..' open a directory's first block; returns how many entries they were. */
function checkDots(ctx: CheckContext, ino: number, info: InodeInfo, entries: RawDirent[]): number {
  const p = ctx.problems;
  const dot = entries[0];
  const dotdot = entries[1];
  let n = 0;
  if (!dot || dot.inode !== ino || Buffer.from(dot.name).toString('latin1') !== '.')
    p.add('DIR_DOT', `directory ${ino}: its first entry is not '.' naming itself`, { inode: ino });
  else {
    info.refs++;
    n = 1;
  }
  if (!dotdot || !dotdot.inode || Buffer.from(dotdot.name).toString('latin1') !== '..')
    p.add('DIR_DOT', `directory ${ino}: its second entry is not '..'`, { inode: ino });
  else {
    info.dotdot = dotdot.inode;
    countDotDot(ctx, dotdot.inode);
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
  if (root.dotdot !== undefined && root.dotdot !== ROOT_INO)
    p.add('DIR_PARENT', `the root's '..' names inode ${root.dotdot}`, { inode: ROOT_INO });
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
  for (const [ino, info] of ctx.inodes) {
    if ((info.mode & S_IFMT) !== S_IFDIR || ino === ROOT_INO || ctx.orphans.has(ino)) continue;
    if (ino < ctx.firstIno) continue;
    if (info.parent === undefined) {
      p.add('DIR_UNCONNECTED', `directory ${ino} is not named in any directory`, { inode: ino });
      continue;
    }
    if (!reaches(ino)) p.add('DIR_UNCONNECTED', `directory ${ino} is not connected to the root`, { inode: ino });
    if (info.dotdot !== undefined && info.dotdot !== info.parent)
      p.add('DIR_PARENT', `directory ${ino}: '..' names ${info.dotdot}, its parent is ${info.parent}`, { inode: ino });
  }
  const dirNlink = ctx.hasRo(RO_COMPAT.dir_nlink);
  for (const [ino, info] of ctx.inodes) {
    if ((ino < ctx.firstIno && ino !== ROOT_INO) || info.system) continue;
    if (ctx.orphans.has(ino) && info.refs === 0) continue;
    const isDir = (info.mode & S_IFMT) === S_IFDIR;
    if (info.refs === 0) {
      if (!isDir) p.add('INODE_UNATTACHED', `inode ${ino} is in use but no directory names it`, { inode: ino });
      continue;
    }
    if (isDir && !info.dir) continue;
    // Past the limit a directory's count is 1 (dir_nlink), as e2fsck counts it.
    const counted = isDir && info.refs > LINK_MAX && dirNlink ? 1 : info.refs;
    if (info.links !== counted)
      p.add('LINK_COUNT', `inode ${ino}: link count ${info.links}, named ${info.refs} time(s)`, { inode: ino });
  }
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
