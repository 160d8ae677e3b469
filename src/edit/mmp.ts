/**
 * Multiple-mount protection (MMP) for an edit: an image another node (or fsck) holds is refused, and
 * the image is marked held (sequence "fsck") while it is edited, clean again when the editor closes.
 */
import * as os from 'node:os';
import { Ext4Error } from '../core/errors.js';
import { u32, put32, lo32, hi32 } from '../core/bytes.js';
import { INCOMPAT } from '../ext4/features.js';
import { MMP_MAGIC, MMP_SEQ_CLEAN, MMP_SEQ_FSCK, MMP_CHECKSUM_OFFSET, mmpBlock, mmpChecksum } from '../ext4/mmp.js';
import type { Ext4Reader } from '../fs/reader.js';
import type { BlockDevice } from '../io/device.js';

/** Claims the MMP block for the edit; returns it (0: the file system has no MMP). */
export function claimMmp(dev: BlockDevice, r: Ext4Reader, name: string): number {
  if (!(r.sb.s_feature_incompat & INCOMPAT.mmp)) return 0;
  const blk = mmpBlock(r.sb);
  const b = r.readBlocks(blk).slice();
  if (u32(b, 0) !== MMP_MAGIC) throw new Ext4Error('CORRUPT', `${name}: bad MMP block ${blk}`, { block: blk });
  if (u32(b, 4) !== MMP_SEQ_CLEAN)
    throw new Ext4Error('IN_USE', `${name}: multiple-mount protection says the file system is in use`);
  writeMmp(dev, r, blk, b, MMP_SEQ_FSCK);
  return blk;
}

/** Marks the MMP block clean again (the edit is over). */
export function releaseMmp(dev: BlockDevice, r: Ext4Reader, blk: number): void {
  const b = dev.read(blk * r.blockSize, r.blockSize);
  writeMmp(dev, r, blk, b, MMP_SEQ_CLEAN);
}

/**
 * An MMP block a dead writer of ours left claimed (fsck state): released, so the next open can claim
 * it. Only a claim with that writer's host name, stamped while it held the lock (from `since`, its
 * lock's time in UNIX seconds, until a minute later: the claim follows the lock at once), so an
 * e2fsck started since is left alone.
 */
export function releaseDeadMmp(dev: BlockDevice, r: Ext4Reader, host: string, since: number): void {
  if (!(r.sb.s_feature_incompat & INCOMPAT.mmp)) return;
  const blk = mmpBlock(r.sb);
  const b = r.readBlocks(blk).slice();
  if (u32(b, 0) !== MMP_MAGIC || u32(b, 4) !== MMP_SEQ_FSCK) return;
  const node = new TextDecoder().decode(b.subarray(0x10, 0x50)).replace(/\0.*$/s, '');
  const stamped = u32(b, 8) + u32(b, 12) * 0x1_0000_0000;
  if (node !== host || !(stamped >= since - 1 && stamped <= since + 60)) return;
  writeMmp(dev, r, blk, b, MMP_SEQ_CLEAN);
}

function writeMmp(dev: BlockDevice, r: Ext4Reader, blk: number, b: Uint8Array, seq: number): void {
  put32(b, 4, seq);
  const now = Math.floor(Date.now() / 1000);
  put32(b, 8, lo32(now));
  put32(b, 12, hi32(now));
  b.fill(0, 0x10, 0x50);
  b.set(new TextEncoder().encode(os.hostname()).subarray(0, 63), 0x10);
  if (r.csum) put32(b, MMP_CHECKSUM_OFFSET, mmpChecksum(r.csumSeed, b));
  dev.write(blk * r.blockSize, b);
  dev.sync();
}
