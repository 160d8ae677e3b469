/**
 * What an edit refuses before it writes anything: the superblock's features and state, and with
 * `check` an image the full check finds damaged. (Whether the
 * image is mounted is the host's to say, host/mounts.ts; whether another node holds it, MMP, mmp.ts.)
 */
import { Ext4Error } from '../core/errors.js';
import { COMPAT, INCOMPAT, RO_COMPAT, READ_INCOMPAT, WRITE_INCOMPAT, WRITE_RO_COMPAT } from '../ext4/features.js';
import { STATE_VALID, type Superblock } from '../ext4/superblock.js';
import { FileDevice } from '../io/device.js';
import { checkDevice, problemSummary } from '../check/check.js';

export const STATE_ERROR = 0x2;

const FEATURE_WHY: Record<string, string> = {
  bigalloc: 'allocation in clusters (bigalloc)',
  casefold: 'case-insensitive directories (casefold)',
  encrypt: 'encrypted directories (encrypt)',
  verity: 'verity-protected files (verity)',
  quota: 'quota accounting (quota), which every change would leave stale',
  compression: 'compression',
  dirdata: 'dirdata',
  journal_dev: 'an external journal device',
  shared_blocks: 'shared blocks',
  has_snapshot: 'snapshots',
  replica: 'replicas',
  readonly: 'the read-only flag',
};

/**
 * Refuses, before anything is written, an image the editor must not change: features it cannot keep
 * consistent, an external journal, a journal that needs recovery, a file system marked with errors or
 * not cleanly unmounted (allowed when `repairing`), orphan inodes to clean up (all but the features are
 * allowed when `recovering`).
 */
export function checkWritable(sb: Superblock, name: string, recovering: boolean, repairing = false): void {
  checkEditableFeatures(sb, name, recovering);
  if (sb.s_feature_compat & COMPAT.has_journal && !sb.s_journal_inum)
    throw new Ext4Error('UNSUPPORTED_FEATURE', `${name}: the journal is on an external device, which is not supported`);
  if (recovering) return;
  if (sb.s_feature_incompat & INCOMPAT.needs_recovery)
    throw new Ext4Error(
      'NEEDS_RECOVERY',
      `${name}: the journal needs recovery (the image is mounted, or was not cleanly unmounted); recover it first (\`ext4-workdisk recover\`, or --recover)`,
    );
  // A repair is what such a file system waits for: it checks everything before it writes.
  if (!repairing && (sb.s_state & STATE_ERROR || !(sb.s_state & STATE_VALID))) {
    const journaled = (sb.s_feature_compat & COMPAT.has_journal) !== 0;
    if (sb.s_state & STATE_ERROR)
      throw new Ext4Error(
        'NEEDS_CHECK',
        `${name}: the file system is marked as having errors; check it first (e2fsck)`,
      );
    throw new Ext4Error(
      journaled ? 'NEEDS_CHECK' : 'IN_USE',
      `${name}: the file system was not cleanly unmounted${journaled ? '' : ' (or is mounted)'}; check it first (e2fsck)`,
    );
  }
  if (sb.s_last_orphan || sb.s_feature_ro_compat & RO_COMPAT.orphan_present)
    throw new Ext4Error(
      'NEEDS_RECOVERY',
      `${name}: the file system has orphan inodes to clean up (it was not cleanly unmounted); recover it first (\`ext4-workdisk recover\`, or --recover)`,
    );
}

/**
 * Refuses features the editor cannot keep consistent. Recovery only frees orphan inodes and clears a
 * flag, which needs no understanding of encrypted names, case-folding or verity; clusters (bigalloc) and
 * quota usage it still cannot keep right.
 */
export function checkEditableFeatures(sb: Superblock, name: string, recovering = false): void {
  const names = (word: Record<string, number>, bits: number) =>
    Object.entries(word)
      .filter(([, b]) => bits & b)
      .map(([n]) => n);
  const incompatOk = recovering ? READ_INCOMPAT : WRITE_INCOMPAT;
  const roOk = recovering ? WRITE_RO_COMPAT | RO_COMPAT.verity : WRITE_RO_COMPAT;
  const badIncompat = sb.s_feature_incompat & ~incompatOk;
  const badRo = sb.s_feature_ro_compat & ~roOk;
  if (badIncompat || badRo) {
    const bad = [...names(INCOMPAT, badIncompat), ...names(RO_COMPAT, badRo)];
    const what = bad.length ? bad.map((n) => FEATURE_WHY[n] ?? n).join(', ') : 'unknown features';
    throw new Ext4Error(
      'UNSUPPORTED_FEATURE',
      `${name}: ${recovering ? 'recovery' : 'editing'} is not supported with ${what}`,
    );
  }
}

/**
 * Refuses (NEEDS_CHECK) an image the full check finds anything wrong with. Run under the editor's
 * write lock (or a job's read lock), so the image checked is the one read next; `replay` checks the
 * state after the journal's replay.
 */
export function refuseDamaged(imagePath: string, opts: { replay?: boolean } = {}): void {
  const dev = FileDevice.open(imagePath);
  try {
    let res;
    try {
      res = checkDevice(dev, { replay: opts.replay });
    } catch (e) {
      if (e instanceof Ext4Error) throw e;
      throw new Ext4Error('CORRUPT', `${imagePath}: the check stopped: ${(e as Error).message}`, { cause: e });
    }
    if (!res.clean)
      throw new Ext4Error(
        'NEEDS_CHECK',
        `${imagePath}: the check finds ${problemSummary(res)}; nothing was written (repair it first: check --repair, e2fsck)`,
        { path: imagePath },
      );
  } finally {
    dev.close();
  }
}
