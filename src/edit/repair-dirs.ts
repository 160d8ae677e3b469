/**
 * `check --repair=all`'s directory fixes (e2fsck pass 2, as `e2fsck -fy` makes them), from what the
 * check kept (EntryFix, DirFix): an entry naming an inode it cannot (free, deleted, out of range, a
 * second name of a directory) cleared (its inode set to 0, as e2fsck does); a wrong file type set; a
 * bad byte of a name ('/' or NUL) replaced with '.'; a block whose entries cannot be walked salvaged
 * (the bad entry and what follows it dropped into the entry before, or the block emptied) and its
 * checksum tail resealed; '.' and '..' rewritten over a first block's first two entries ('..' names
 * the root until the connectivity fix points it at the parent, as e2fsck does it); an htree index
 * that fails its checks cleared (the directory read linearly: e2fsck -y clears it too, then rebuilds).
 * Every fix is an operation of its own in the open edit; one that fails is rolled back and left.
 */
import { u16, u32, put16, put32 } from '../core/bytes.js';
import { S_IFMT, S_IFDIR, FL_INDEX, FL_INLINE_DATA, ROOT_INO, type Inode } from '../ext4/inode.js';
import { DIR_TAIL_SIZE, FT_DIR, decodeRecLen, encodeRecLen, hasDirTail, setDirBlockTail } from '../ext4/dirent.js';
import { blockRuns, physicalBlock } from '../fs/blockmap.js';
import type { CheckResult, EntryFix, Problem } from '../check/check.js';
import type { Volume } from './volume.js';

/** Reports a fix made (code, what was done, where). */
export type Report = (p: Problem) => void;

/** Applies pass 2's entry and block fixes; returns how many were made. */
export function fixEntries(v: Volume, res: CheckResult, report: Report): number {
  const byBlock = new Map<number, EntryFix[]>();
  for (const f of res.entryFixes ?? []) {
    const list = byBlock.get(f.block);
    if (list) list.push(f);
    else byBlock.set(f.block, [f]);
  }
  let n = 0;
  for (const [block, fixes] of byBlock) {
    const made: Problem[] = [];
    const ok = attempt(v, () => {
      const dir = fixes[0]!.dir;
      // A block of an htree directory that fails may be an index block: the index goes first.
      if (fixes.some((f) => f.fix === 'salvage') && v.readInode(dir).flags & FL_INDEX) {
        const what = unindex(v, dir);
        if (what) made.push({ code: 'DIR_HTREE', text: `directory ${dir}: ${what}`, inode: dir });
      }
      const i = v.readInode(dir);
      const b = v.tx.modify(block);
      for (const f of fixes) {
        const done = fixEntry(v, b, f);
        if (done) made.push({ code: codeOf(f), text: `directory ${dir}, block ${block}: ${done}`, inode: dir, block });
      }
      sealDirBlock(v, dir, i, block, b);
    });
    if (!ok) continue;
    made.forEach(report);
    n += fixes.length;
  }
  return n;
}

function codeOf(f: EntryFix): Problem['code'] {
  return f.fix === 'salvage'
    ? 'DIR_BLOCK'
    : f.fix === 'type'
      ? 'DIR_ENTRY_TYPE'
      : f.fix === 'name'
        ? 'DIR_ENTRY'
        : 'DIR_ENTRY_INODE';
}

/** One entry's fix in block `b`; returns what was done. */
function fixEntry(v: Volume, b: Uint8Array, f: EntryFix): string | undefined {
  const off = f.offset;
  const bs = v.bs;
  if (f.fix === 'salvage') return salvage(b, bs, v.csum);
  if (off < 0 || off + 8 > bs) return undefined;
  const name = JSON.stringify(Buffer.from(b.subarray(off + 8, off + 8 + b[off + 6]!)).toString('latin1'));
  if (f.fix === 'clear') {
    const ino = u32(b, off);
    put32(b, off, 0);
    return `entry ${name} (inode ${ino}) cleared`;
  }
  if (f.fix === 'type') {
    b[off + 7] = f.fileType ?? 0;
    return `entry ${name}: file type set to ${f.fileType}`;
  }
  for (let k = 0; k < b[off + 6]!; k++) if (b[off + 8 + k] === 0x2f || b[off + 8 + k] === 0) b[off + 8 + k] = 0x2e;
  return `entry ${name}: its bad bytes replaced with '.'`;
}

/**
 * Walks the block's entries and mends or cuts it at each bad one: a live entry whose rec_len is off
 * but whose name fits gets the rec_len after which a good entry follows (its value rounded down, or
 * the least its name needs; e2fsck's salvage does the same), or, the last one, is stretched to the
 * end; else the entry before takes the rest of the block (or, at its start, one unused entry spans
 * it). With metadata_csum the entries end before the checksum tail.
 */
function salvage(b: Uint8Array, bs: number, csum: boolean): string {
  const end = csum ? bs - DIR_TAIL_SIZE : bs;
  const good = (off: number) => {
    if (off === end) return true;
    if (off + 8 > end) return false;
    const rec = decodeRecLen(u16(b, off + 4), bs);
    return rec >= 8 && rec % 4 === 0 && off + rec <= end && (u32(b, off) === 0 || 8 + b[off + 6]! <= rec);
  };
  const done: string[] = [];
  let off = 0;
  let prev = -1;
  while (off < end) {
    if (good(off) && off + decodeRecLen(u16(b, off + 4), bs) !== off) {
      prev = off;
      off += decodeRecLen(u16(b, off + 4), bs);
      continue;
    }
    const inode = off + 8 <= end ? u32(b, off) : 0;
    const nameLen = off + 8 <= end ? b[off + 6]! : 0;
    const need = (8 + nameLen + 3) & ~3;
    if (inode !== 0 && nameLen > 0 && off + need <= end) {
      const rec = decodeRecLen(u16(b, off + 4), bs);
      const fit = [rec & ~3, need].find((r) => r >= need && off + r <= end && good(off + r));
      if (fit !== undefined) {
        put16(b, off + 4, encodeRecLen(fit));
        done.push(`entry at offset ${off}: rec_len ${rec} set to ${fit}`);
        prev = off;
        off += fit;
        continue;
      }
      put16(b, off + 4, encodeRecLen(end - off));
      done.push(`entry at offset ${off} stretched to the block's end`);
      break;
    }
    if (prev < 0) {
      put32(b, 0, 0);
      put16(b, 4, encodeRecLen(end));
      b[6] = 0;
      b[7] = 0;
      done.push('no entry could be read: the block emptied');
    } else {
      put16(b, prev + 4, encodeRecLen(end - prev));
      done.push(`entries from offset ${off} on dropped`);
    }
    break;
  }
  return done.join('; ') || 'its entries kept, its checksum resealed';
}

/** A leaf block's checksum tail (metadata_csum): written when missing, sealed at commit. */
function sealDirBlock(v: Volume, dir: number, i: Inode, block: number, b: Uint8Array): void {
  if (!v.csum) return;
  const seed = v.r.inodeSeed(dir, i.generation);
  if (!hasDirTail(b, v.bs)) {
    // Only where the entries leave room for it (a salvaged block always does).
    const t = v.bs - DIR_TAIL_SIZE;
    let off = 0;
    while (off < t) {
      const rec = decodeRecLen(u16(b, off + 4), v.bs);
      if (rec < 8 || off + rec > t) return;
      off += rec;
    }
    if (off !== t) return;
  }
  setDirBlockTail(b, v.bs, seed);
  v.sealLeafLater(block, seed);
}

/** Applies pass 2's '.'/'..' and htree fixes; returns how many were made. */
export function fixDirShapes(v: Volume, res: CheckResult, report: Report): number {
  let n = 0;
  const done = new Set<string>();
  for (const f of res.dirFixes ?? []) {
    if (f.fix !== 'dots' && f.fix !== 'unindex') continue;
    const key = `${f.fix}:${f.dir}`;
    if (done.has(key)) continue;
    done.add(key);
    attempt(v, () => {
      const what = f.fix === 'dots' ? fixDots(v, f.dir) : unindex(v, f.dir);
      if (!what) return;
      report({ code: f.fix === 'dots' ? 'DIR_DOT' : 'DIR_HTREE', text: `directory ${f.dir}: ${what}`, inode: f.dir });
      n++;
    });
  }
  return n;
}

/** Writes '.' and '..' over the first two entries of the directory's first block. */
function fixDots(v: Volume, dir: number): string | undefined {
  const i = v.readInode(dir);
  if ((i.mode & S_IFMT) !== S_IFDIR || i.flags & FL_INLINE_DATA) return undefined;
  const p0 = physicalBlock(blockRuns(v.r, dir, i), 0);
  if (p0 === undefined) return undefined;
  const bs = v.bs;
  const end = i.flags & FL_INDEX ? bs : v.csum && hasDirTail(v.r.readBlocks(p0), bs) ? bs - DIR_TAIL_SIZE : bs;
  const b = v.tx.modify(p0);
  const ft = v.r.hasFileType ? FT_DIR : 0;
  const rec0 = decodeRecLen(u16(b, 4), bs);
  if (rec0 < 12 || rec0 > end) return undefined;
  const out: string[] = [];
  if (!(u32(b, 0) === dir && b[6] === 1 && b[8] === 0x2e)) {
    put32(b, 0, dir);
    b[6] = 1;
    b[7] = ft;
    b[8] = 0x2e;
    // The name's padding is zeros (e2fsck: "not NULL terminated" otherwise).
    b.fill(0, 9, 12);
    out.push("'.' set");
    // The first entry held more than '.': the rest becomes the second entry.
    if (rec0 >= 24) {
      put16(b, 4, encodeRecLen(12));
      put32(b, 12, 0);
      put16(b, 16, encodeRecLen(rec0 - 12));
      b[18] = 0;
    }
  }
  const off1 = decodeRecLen(u16(b, 4), bs);
  const rec1 = off1 + 8 <= end ? decodeRecLen(u16(b, off1 + 4), bs) : 0;
  if (!(u32(b, off1) !== 0 && b[off1 + 6] === 2 && b[off1 + 8] === 0x2e && b[off1 + 9] === 0x2e)) {
    if (rec1 < 12 || off1 + rec1 > end) return out.length ? out.join(', ') : undefined;
    // The parent is not known here: the root, until the connectivity fix points it at the parent.
    put32(b, off1, ROOT_INO);
    b[off1 + 6] = 2;
    b[off1 + 7] = ft;
    b[off1 + 8] = 0x2e;
    b[off1 + 9] = 0x2e;
    b.fill(0, off1 + 10, off1 + 12);
    out.push("'..' set");
  }
  if (!(i.flags & FL_INDEX)) sealDirBlock(v, dir, i, p0, b);
  return out.join(', ') || undefined;
}

/**
 * Clears the htree index: the directory is read linearly. The root keeps '.' and '..' (which spans
 * its index); index nodes are empty entries spanning their block; with metadata_csum each gets the
 * leaf's checksum tail in place of the index's.
 */
function unindex(v: Volume, dir: number): string | undefined {
  const i = v.readInode(dir);
  if (!(i.flags & FL_INDEX)) return undefined;
  const bs = v.bs;
  const runs = blockRuns(v.r, dir, i);
  const blocks = Math.ceil(i.size / bs);
  for (let l = 0; l < blocks; l++) {
    const p = physicalBlock(runs, l);
    if (p === undefined || p >= v.blocksCount) continue;
    const cur = v.r.readBlocks(p);
    const isNode = l === 0 || (u32(cur, 0) === 0 && decodeRecLen(u16(cur, 4), bs) === bs);
    if (!isNode) continue;
    const b = v.tx.modify(p);
    const end = v.csum ? bs - DIR_TAIL_SIZE : bs;
    if (l === 0) {
      const rec0 = decodeRecLen(u16(b, 4), bs);
      if (rec0 >= 12 && rec0 + 12 <= end) put16(b, rec0 + 4, encodeRecLen(end - rec0));
    } else {
      put32(b, 0, 0);
      put16(b, 4, encodeRecLen(end));
      b[6] = 0;
      b[7] = 0;
    }
    if (v.csum) {
      setDirBlockTail(b, bs, v.r.inodeSeed(dir, i.generation));
      v.sealLeafLater(p, v.r.inodeSeed(dir, i.generation));
    }
  }
  i.flags &= ~FL_INDEX;
  v.writeInode(dir, i);
  return 'htree index cleared (read linearly)';
}

/** Runs one fix as an operation of its own: a fix that fails is rolled back and left to the report. */
export function attempt(v: Volume, fn: () => void): boolean {
  try {
    v.runOp(fn);
    return true;
  } catch {
    return false;
  }
}
