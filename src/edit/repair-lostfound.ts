/**
 * `check --repair=all`'s connectivity fixes (e2fsck passes 3 and 4, as `e2fsck -fy` makes them): a
 * directory's '..' pointed at the directory that names it; a directory the root does not reach (the
 * top of its subtree, or where its parents loop) and an inode in use no directory names hung under
 * /lost+found as `#INO`, a directory's '..' then naming /lost+found; an unattached empty regular file
 * or directory (no blocks) cleared instead, as e2fsck clears it. /lost+found is made when missing as
 * e2fsck makes it: a directory of one block, mode 0700, owned by root, in the root. Link counts are
 * left to the next round's check (pass 4's LINK_COUNT, fixed by the preen's fixes), as e2fsck counts
 * them after reconnecting.
 */
import { Ext4Error } from '../core/errors.js';
import { utf8 } from '../core/bytes.js';
import { S_IFMT, S_IFDIR, S_IFREG, FL_EA_INODE, ROOT_INO } from '../ext4/inode.js';
import { fileTypeOfMode } from '../ext4/filetype.js';
import { addEntry, removeEntry, setDotDot } from '../fs/dir-edit.js';
import type { CheckResult } from '../check/check.js';
import type { Volume } from './volume.js';
import { makeDir } from './ops-dirs.js';
import { fixedTimeOf, opTime } from './inodes.js';
import { attempt, type Report } from './repair-dirs.js';

const LOST_FOUND = utf8('lost+found');

/** Applies passes 3 and 4's fixes; returns how many were made. */
export function fixConnectivity(v: Volume, res: CheckResult, report: Report): number {
  let n = 0;
  const now = opTime(fixedTimeOf(undefined));
  const seen = new Set<number>();
  for (const f of res.dirFixes ?? []) {
    if (f.fix !== 'dotdot' || f.parent === undefined || seen.has(f.dir)) continue;
    seen.add(f.dir);
    if (attempt(v, () => setDotDot(v, f.dir, f.parent!))) {
      report({ code: 'DIR_PARENT', text: `directory ${f.dir}: '..' set to ${f.parent}`, inode: f.dir });
      n++;
    }
  }
  const lost: number[] = [];
  for (const f of res.dirFixes ?? []) if (f.fix === 'reconnect' && !lost.includes(f.dir)) lost.push(f.dir);
  for (const p of res.problems)
    if (p.code === 'INODE_UNATTACHED' && p.inode !== undefined && !lost.includes(p.inode)) lost.push(p.inode);
  let lf: number | undefined;
  for (const ino of lost) {
    let text = '';
    if (lf === undefined) attempt(v, () => (lf = lostAndFound(v, now, report)));
    const ok = attempt(v, () => {
      const i = v.readInode(ino);
      // An attribute value inode belongs to an attribute, not to a directory.
      if (i.flags & FL_EA_INODE) throw new Ext4Error('CORRUPT', 'an attribute value inode');
      const isDir = (i.mode & S_IFMT) === S_IFDIR;
      // (A directory the root does not reach is always reconnected: pass 3's, never cleared.)
      if (!i.blocks && (i.mode & S_IFMT) === S_IFREG) {
        i.linksCount = 0;
        i.dtime = now.sec >>> 0;
        v.writeInode(ino, i);
        text = `unattached empty inode ${ino} cleared`;
        return;
      }
      if (lf === undefined) throw new Ext4Error('NOT_FOUND', 'no /lost+found');
      const name = utf8(`#${ino}`);
      if (v.r.findEntry(lf, name)) throw new Ext4Error('EXISTS', `/lost+found/#${ino} exists`);
      addEntry(v, lf, name, ino, fileTypeOfMode(i.mode), (p) => {
        if (isDir) p.linksCount++;
        p.mtime = p.ctime = now;
      });
      if (isDir) setDotDot(v, ino, lf);
      text = `inode ${ino} connected to /lost+found as #${ino}`;
    });
    if (!ok) continue;
    report({
      code: isDirFix(res, ino) ? 'DIR_UNCONNECTED' : 'INODE_UNATTACHED',
      text,
      inode: ino,
      path: text.includes('#') ? `/lost+found/#${ino}` : undefined,
    });
    n++;
  }
  return n;
}

function isDirFix(res: CheckResult, ino: number): boolean {
  return (res.dirFixes ?? []).some((f) => f.fix === 'reconnect' && f.dir === ino);
}

/** /lost+found's inode: found in the root, or made (a failure rolls back the reconnection that needed it). */
function lostAndFound(v: Volume, now: { sec: number; nsec: number }, report: Report): number {
  const hit = v.r.findEntry(ROOT_INO, LOST_FOUND);
  if (hit) {
    if ((v.readInode(hit.inode).mode & S_IFMT) === S_IFDIR) return hit.inode;
    // Not a directory: its name is taken from it (the inode is unattached then, and hung under the
    // new /lost+found in the next round), as e2fsck unlinks it.
    removeEntry(v, ROOT_INO, LOST_FOUND);
    report({
      code: 'INODE_UNATTACHED',
      text: `/lost+found (inode ${hit.inode}) is not a directory: unlinked`,
      inode: hit.inode,
      path: '/lost+found',
    });
  }
  const cx = { v, now, dirCache: new Map<string, number>() };
  const ino = makeDir(cx, ROOT_INO, LOST_FOUND, { mode: 0o700, uid: 0, gid: 0 });
  report({ code: 'DIR_UNCONNECTED', text: `/lost+found made (inode ${ino})`, inode: ino, path: '/lost+found' });
  return ino;
}
