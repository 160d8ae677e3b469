/**
 * `check --repair=all`'s fix of names that appear twice in one directory (e2fsck pass 3A, as `e2fsck
 * -fy` makes it): of the entries sharing a name, the first keeps it; a later one naming the same inode
 * is cleared ("Duplicate entry ... Clear? yes"; the link count follows in pass 4's fixes), a later one
 * naming another inode is renamed ("has a non-unique filename. Rename to ...~0? yes"): its last bytes
 * replaced by `~N`, the first N giving a name the directory does not hold, so the name keeps its
 * length where it can. The entries of the name are taken out and put back through the directory code,
 * so an htree directory stays indexed (e2fsck rebuilds the whole directory instead).
 */
import { utf8 } from '../core/bytes.js';
import type { CheckResult } from '../check/check.js';
import { readDir, type DirEntryInfo } from '../fs/dir.js';
import { addEntry, removeEntry } from '../fs/dir-edit.js';
import type { Volume } from './volume.js';
import { attempt, type Report } from './repair-dirs.js';

/** Fixes every directory the check found holding a name twice; returns how many entries it changed. */
export function fixDuplicateNames(v: Volume, res: CheckResult, report: Report): number {
  const dirs = new Set(res.problems.filter((p) => p.code === 'DIR_DUPLICATE' && p.inode).map((p) => p.inode!));
  let n = 0;
  for (const dir of dirs) {
    const done: string[] = [];
    const ok = attempt(v, () => {
      const entries = readDir(v.r, dir, v.readInode(dir));
      const held = new Set(entries.map((e) => key(e.name)));
      const byName = new Map<string, DirEntryInfo[]>();
      for (const e of entries) {
        const k = key(e.name);
        const list = byName.get(k);
        if (list) list.push(e);
        else byName.set(k, [e]);
      }
      for (const list of byName.values()) {
        if (list.length < 2) continue;
        for (let c = 0; c < list.length; c++) removeEntry(v, dir, list[0]!.name);
        const kept = list[0]!;
        addEntry(v, dir, kept.name, kept.inode, kept.fileType);
        const named = new Set([kept.inode]);
        for (const e of list.slice(1)) {
          const shown = JSON.stringify(Buffer.from(e.name).toString('latin1'));
          if (named.has(e.inode)) {
            done.push(`duplicate entry ${shown} (inode ${e.inode}) cleared`);
            continue;
          }
          const name = uniqueName(e.name, held);
          held.add(key(name));
          addEntry(v, dir, name, e.inode, e.fileType);
          named.add(e.inode);
          done.push(
            `entry ${shown} (inode ${e.inode}) renamed to ${JSON.stringify(Buffer.from(name).toString('latin1'))}`,
          );
        }
      }
    });
    if (!ok) continue;
    for (const text of done) report({ code: 'DIR_DUPLICATE', text: `directory ${dir}: ${text}`, inode: dir });
    n += done.length;
  }
  return n;
}

/** A name's bytes as a map key (any byte value, one character each). */
const key = (name: Uint8Array): string => Buffer.from(name).toString('latin1');

/** `name` with its last bytes replaced by `~N` (appended to a name too short), for the first N not in `held`. */
function uniqueName(name: Uint8Array, held: ReadonlySet<string>): Uint8Array {
  for (let n = 0; ; n++) {
    const tail = utf8(`~${n}`);
    const keep = name.length > tail.length ? name.length - tail.length : name.length;
    const out = new Uint8Array(Math.min(255, keep + tail.length));
    out.set(name.subarray(0, out.length - tail.length));
    out.set(tail, out.length - tail.length);
    if (!held.has(key(out))) return out;
  }
}
