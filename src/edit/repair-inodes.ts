/**
 * `check --repair=all`'s inode fixes (e2fsck pass 1, as `e2fsck -fy` makes them), from what the check
 * kept (InodeFix): an inode it condemns (a mode of no file type, a block map or extent tree that
 * cannot be read, a feature flag the file system lacks) cleared: no links, a deletion time (its
 * entries are then cleared by pass 2's fixes, its blocks and number freed by pass 5's bitmaps, in the
 * rounds after); the htree flag of a file that is no directory cleared; i_blocks and i_size set to
 * what its map holds; a deletion time an orphan list left behind cleared (set, when no link is left).
 * Where e2fsck keeps the readable part of a damaged map, this clears the inode: a known difference.
 */
import type { CheckResult, Problem } from '../check/check.js';
import { RO_COMPAT } from '../ext4/features.js';
import { sealXattrBlock, setXattrRefcount } from '../ext4/xattr.js';
import type { Volume } from './volume.js';
import { fixedTimeOf, opTime } from './inodes.js';
import { attempt, type Report } from './repair-dirs.js';

/** Applies pass 1's inode fixes; returns how many were made. */
export function fixInodes(v: Volume, res: CheckResult, report: Report): number {
  const now = opTime(fixedTimeOf(undefined));
  let n = 0;
  for (const [ino, f] of res.inodeFixes ?? []) {
    if (
      !f.clear &&
      f.clearFlags === undefined &&
      f.blocks === undefined &&
      f.size === undefined &&
      !f.lowDtime &&
      !f.dropXattrBlock
    )
      continue;
    const done: Problem[] = [];
    const ok = attempt(v, () => {
      // Read as stored: its checksum may be what is wrong too (sealed again at commit).
      const { buf, offset } = v.inodeRecordForWrite(ino);
      const i = v.r.decodeRecord(ino, buf, offset);
      const at = { inode: ino };
      if (f.clear) {
        i.linksCount = 0;
        i.dtime = now.sec >>> 0;
        done.push({ code: 'INODE_MODE', text: `inode ${ino} cleared (its entries and blocks go next)`, ...at });
      } else {
        if (f.lowDtime) {
          i.dtime = i.linksCount ? 0 : now.sec >>> 0;
          done.push({
            code: 'INODE_DTIME',
            text: `inode ${ino}: the orphan list's deletion time ${i.dtime ? 'set' : 'cleared'}`,
            ...at,
          });
        }
        if (f.clearFlags !== undefined) {
          i.flags &= ~f.clearFlags;
          done.push({ code: 'INODE_FLAGS', text: `inode ${ino}: flags 0x${f.clearFlags.toString(16)} cleared`, ...at });
        }
        if (f.blocks !== undefined) {
          done.push({ code: 'INODE_BLOCKS', text: `inode ${ino}: i_blocks ${i.blocks} set to ${f.blocks}`, ...at });
          i.blocks = f.blocks;
        }
        if (f.dropXattrBlock) {
          done.push({
            code: 'XATTR',
            text: `inode ${ino}: attribute block ${i.fileAcl}, outside the file system, dropped`,
            ...at,
          });
          i.fileAcl = 0;
        }
        // A size past 2 GiB needs large_file, which a revision 0 file system cannot have: left.
        if (f.size !== undefined && (f.size <= 0x7fffffff || v.sb.s_rev_level > 0)) {
          if (f.size > 0x7fffffff) v.needRoCompat(RO_COMPAT.large_file);
          done.push({ code: 'INODE_SIZE', text: `inode ${ino}: size ${i.size} set to ${f.size}`, ...at });
          i.size = f.size;
        }
      }
      v.writeInode(ino, i);
    });
    if (!ok) continue;
    done.forEach(report);
    n += done.length;
  }
  // Attribute blocks' reference counts (e2fsck pass 1's "reference count ..., should be ...").
  for (const [block, refs] of res.refcountFixes ?? [])
    if (
      attempt(v, () => {
        const b = v.tx.modify(block);
        if (v.csum) sealXattrBlock(b, block, refs, v.csumSeed);
        else setXattrRefcount(b, refs);
      })
    ) {
      report({ code: 'XATTR_REFCOUNT', text: `attribute block ${block}: reference count set to ${refs}`, block });
      n++;
    }
  return n;
}
