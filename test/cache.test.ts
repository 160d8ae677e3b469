/** The block cache's per-operation undo: what a failed operation changed comes back as it was. */
import { describe, expect, it } from 'vitest';
import { BlockCache } from '../src/io/cache.js';
import { MemoryDevice } from '../src/io/device.js';

describe('block cache undo', () => {
  it('pending data an operation changes in place is restored when it rolls back', () => {
    const bs = 1024;
    const cache = new BlockCache(new MemoryDevice(64 * bs), bs, 64);
    // Operation 1 adds two blocks of new data.
    cache.beginOp();
    cache.addData(10, cache.keepData(new Uint8Array(2 * bs).fill(7)));
    cache.endOp();
    // Operation 2 zeroes the tail of the second block, then fails.
    cache.beginOp();
    cache.modifyPending(11)!.fill(0, 100);
    expect(cache.readData(11, 1)[200]).toBe(0);
    cache.rollbackOp();
    expect([...cache.readData(10, 2)].every((x) => x === 7)).toBe(true);
    // Operation 3 does the same and succeeds: the change stays.
    cache.beginOp();
    cache.modifyPending(11)!.fill(0, 100);
    cache.endOp();
    const after = cache.readData(11, 1);
    expect(after[99]).toBe(7);
    expect(after[100]).toBe(0);
    // Blocks that no pending piece holds are not handed out.
    expect(cache.modifyPending(12)).toBeUndefined();
  });
});
