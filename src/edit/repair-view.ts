/**
 * The open edit of a repair as a read-only device: what the image will hold once the edit is
 * committed (its sealed blocks over the device's), so the check can run on the pending state and a
 * whole `--repair=all` stays one journal transaction. The superblock is the device's (the free counts
 * the edit changes are applied at commit; the check does not compare them).
 */
import { Ext4Error } from '../core/errors.js';
import type { BlockDevice } from '../io/device.js';
import type { Volume } from './volume.js';

export class PendingView implements BlockDevice {
  constructor(private readonly v: Volume) {}

  get size(): number {
    return this.v.dev.size;
  }

  read(position: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.readInto(position, out);
    return out;
  }

  /** Blocks of the file system through the edit's layer; bytes past it (an image's tail) as stored. */
  readInto(position: number, buf: Uint8Array): void {
    const { bs, dev } = this.v;
    const cache = this.v.r.cache;
    const end = position + buf.length;
    const first = Math.floor(position / bs);
    const last = Math.min(Math.ceil(end / bs), cache.blocksCount);
    let done = 0;
    if (first < last) {
      const data = cache.readData(first, last - first);
      const from = position - first * bs;
      done = Math.min(buf.length, data.length - from);
      buf.set(data.subarray(from, from + done));
    }
    if (done < buf.length) {
      const at = position + done;
      const rest = at < dev.size ? dev.read(at, Math.min(buf.length - done, dev.size - at)) : new Uint8Array(0);
      buf.set(rest, done);
      buf.fill(0, done + rest.length);
    }
  }

  write(): void {
    throw new Ext4Error('IO_ERROR', 'the pending state of a repair is read-only');
  }
  truncate(): void {
    throw new Ext4Error('IO_ERROR', 'the pending state of a repair is read-only');
  }
  sync(): void {}
  close(): void {}
}
