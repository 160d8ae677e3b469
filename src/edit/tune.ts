/**
 * `tune`: what tune2fs changes in the superblock (UUID, label, reserved blocks and their owner, check
 * policy, error behaviour, the metadata_csum_seed switch), made in place as one journal transaction like
 * every edit: the primary superblock, every backup superblock, and what the change makes stale with it
 * (the descriptors' gdt_csum checksums, which hash the UUID; with `rewriteChecksums`, every metadata
 * checksum). Opening, locking, refusals and recovery are the editor's (volume.ts, recover.ts).
 *
 * A UUID change under metadata_csum keeps every checksum valid by default: when metadata_csum_seed is
 * not set yet it is set, storing the seed the old UUID gave (crc32c(~0, old uuid)), so nothing else
 * changes, as tune2fs does on a mounted file system and Fedora CoreOS at first boot. `rewriteChecksums`
 * instead moves every checksum to the new UUID's seed (csum-rewrite.ts), in the same single
 * transaction: the file system is the old or the new one after a crash. A rewrite larger than the
 * journal is refused before anything is written (see README, "Changing identity", for why it is not
 * split into several transactions).
 */
import { Ext4Error } from '../core/errors.js';
import { formatUuid } from '../core/bytes.js';
import { crc32c } from '../core/crc32c.js';
import { INCOMPAT, RO_COMPAT } from '../ext4/features.js';
import { groupDescCrc16, putGroupDescChecksum } from '../ext4/group-desc.js';
import { reservedBlocksCount, cString, type Superblock } from '../ext4/superblock.js';
import { lockForWrite } from '../host/lock.js';
import { Volume, type VolumeOptions } from './volume.js';
import { recoverJournal } from './recover.js';
import { rewriteChecksums, checkRewritable } from './csum-rewrite.js';
import { rewriteDescriptors, writeBackupSuperblocks } from './sb-copies.js';
import { emptyPlan, planTune, type TuneChanges, type TunePlan } from './tune-values.js';

export type { TuneChanges } from './tune-values.js';

export interface TuneOptions extends Omit<VolumeOptions, 'atomic' | 'recovering'> {
  /** Recover a journal that needs it first (as `recover`), instead of refusing with NEEDS_RECOVERY. */
  recover?: boolean;
}

export interface TuneResult {
  /** The UUID and label after the change. */
  uuid: string;
  label: string;
  /**
   * How a UUID change kept the checksums valid: 'seed' (metadata_csum_seed holds the old seed),
   * 'rewrite' (every checksum rewritten), 'descriptors' (gdt_csum descriptor checksums), 'none' (no
   * checksum depends on the UUID, or the UUID did not change).
   */
  checksums: 'seed' | 'rewrite' | 'descriptors' | 'none';
  /** Whether metadata_csum_seed is set after the change. */
  csumSeedFeature: boolean;
  /** Blocks the transaction wrote home (superblocks, descriptors, rewritten metadata). */
  blocksWritten: number;
  /** False when there was nothing to change (the image was not written). */
  changed: boolean;
}

/**
 * Changes an image's identity and policy fields in place (see TuneChanges), through its journal.
 * Refused before anything is written: bad values (BAD_OPTION, BAD_UUID, TOO_LARGE), a mounted or busy
 * image (IN_USE), one whose journal needs recovery (NEEDS_RECOVERY unless `recover`), one needing a
 * check (NEEDS_CHECK), features the editor cannot keep consistent (UNSUPPORTED_FEATURE), and a checksum
 * rewrite that does not fit the journal (NO_SPACE).
 */
export function tuneImage(imagePath: string, changes: TuneChanges, opts: TuneOptions = {}): TuneResult {
  const lock = lockForWrite(imagePath, opts.lock);
  try {
    if (opts.recover || lock.tookOverFrom)
      recoverJournal(imagePath, { sync: opts.sync, onWarning: opts.onWarning, deadWriter: lock.tookOverFrom });
    const v = Volume.open(imagePath, { ...opts, atomic: true });
    try {
      return tuneVolume(v, changes);
    } finally {
      v.close();
    }
  } finally {
    lock.release();
  }
}

/** The seed metadata_csum checksums start from when metadata_csum_seed is not set. */
function uuidSeed(uuid: Uint8Array): number {
  return crc32c(0xffffffff, uuid);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, k) => x === b[k]);
}

/** Makes the changes on an open volume and commits them (exported for in-memory images and tests). */
export function tuneVolume(v: Volume, changes: TuneChanges): TuneResult {
  const plan = planTune(changes, v.sb);
  const before: Superblock = { ...v.sb };
  let checksums: TuneResult['checksums'] = 'none';
  let blocksWritten = 0;
  if (!emptyPlan(plan)) {
    try {
      checksums = apply(v, plan);
      blocksWritten = v.tx.blocks.size + (v.tx.has(superblockBlock(v)) ? 0 : 1);
      v.sbChanged = true;
      v.commit();
    } catch (e) {
      // The superblock object is the edit's until the commit lands: put it back as it was.
      v.discard();
      Object.assign(v.sb, before);
      if (e instanceof Ext4Error && e.code === 'NO_SPACE' && checksums === 'rewrite')
        throw new Ext4Error(
          'NO_SPACE',
          `${v.name}: rewriting every checksum changes more metadata blocks than the journal holds as one transaction (${e.message.replace(/^.*?: /, '')}); change the UUID with the checksum seed instead (without --rewrite-checksums)`,
        );
      throw e;
    }
  }
  const sb = v.sb;
  return {
    uuid: formatUuid(sb.s_uuid),
    label: cString(sb.s_volume_name),
    checksums,
    csumSeedFeature: (sb.s_feature_incompat & INCOMPAT.metadata_csum_seed) !== 0,
    blocksWritten,
    changed: !emptyPlan(plan),
  };
}

function superblockBlock(v: Volume): number {
  return v.bs === 1024 ? 1 : 0;
}

/** Sets the planned fields on the volume's superblock and stages what they make stale. */
function apply(v: Volume, plan: TunePlan): TuneResult['checksums'] {
  const sb = v.sb;
  if (plan.label) {
    const l = new Uint8Array(16);
    l.set(plan.label);
    sb.s_volume_name = l;
  }
  if (plan.reservedBlocks !== undefined && plan.reservedBlocks !== reservedBlocksCount(sb)) {
    sb.s_r_blocks_count_lo = plan.reservedBlocks % 0x1_0000_0000;
    if (sb.s_feature_incompat & INCOMPAT['64bit'])
      sb.s_r_blocks_count_hi = Math.floor(plan.reservedBlocks / 0x1_0000_0000);
  }
  if (plan.resuid !== undefined) sb.s_def_resuid = plan.resuid;
  if (plan.resgid !== undefined) sb.s_def_resgid = plan.resgid;
  if (plan.maxMountCount !== undefined) sb.s_max_mnt_count = plan.maxMountCount;
  if (plan.mountCount !== undefined) sb.s_mnt_count = plan.mountCount;
  if (plan.checkInterval !== undefined) sb.s_checkinterval = plan.checkInterval;
  if (plan.errors !== undefined) sb.s_errors = plan.errors;
  const checksums = applyIdentity(v, plan);
  writeBackupSuperblocks(v.tx, v.r.geo, sb);
  return checksums;
}

/** The UUID and the checksum seed: which route keeps the checksums valid (see the module comment). */
function applyIdentity(v: Volume, plan: TunePlan): TuneResult['checksums'] {
  const sb = v.sb;
  const oldUuid = sb.s_uuid;
  const newUuid = plan.uuid ?? oldUuid;
  const uuidChanged = !sameBytes(oldUuid, newUuid);
  sb.s_uuid = newUuid.slice();
  if (!(sb.s_feature_ro_compat & RO_COMPAT.metadata_csum)) {
    if (!uuidChanged || !(sb.s_feature_ro_compat & RO_COMPAT.gdt_csum)) return 'none';
    // gdt_csum: each descriptor's crc16 starts with the UUID.
    const ds = v.r.descSize;
    rewriteDescriptors(v.tx, v.r.geo, (g, b, off) =>
      putGroupDescChecksum(b, off, groupDescCrc16(newUuid, g, b, off, ds)),
    );
    return 'descriptors';
  }
  const seedSet = (sb.s_feature_incompat & INCOMPAT.metadata_csum_seed) !== 0;
  const current = v.csumSeed;
  const wantSeedOff = plan.rewrite || plan.csumSeed === false;
  if (wantSeedOff) {
    const target = uuidSeed(newUuid);
    sb.s_feature_incompat &= ~INCOMPAT.metadata_csum_seed;
    sb.s_checksum_seed = 0;
    if (target === current) return 'none';
    checkRewritable(v);
    rewriteChecksums(v, current, target);
    return 'rewrite';
  }
  if (seedSet) return uuidChanged ? 'seed' : 'none';
  if (plan.csumSeed === true || uuidSeed(newUuid) !== current) {
    sb.s_feature_incompat |= INCOMPAT.metadata_csum_seed;
    sb.s_checksum_seed = current;
    return 'seed';
  }
  return 'none';
}
