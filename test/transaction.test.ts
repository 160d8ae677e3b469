/** The edit's transaction: its undo log (blocks, pending data, state outside blocks) and the cache layer it is. */
import { describe, expect, it } from 'vitest';
import { BlockCache } from '../src/io/cache.js';
import { FixedLayer } from '../src/io/layer.js';
import { MemoryDevice } from '../src/io/device.js';
import { Transaction } from '../src/edit/transaction.js';

describe('transaction undo', () => {
  it('pending data an operation changes in place is restored when it rolls back', () => {
    const bs = 1024;
    const tx = new Transaction(new BlockCache(new MemoryDevice(64 * bs), bs, 64));
    // Operation 1 adds two blocks of new data.
    tx.begin();
    tx.addData(10, tx.keepData(new Uint8Array(2 * bs).fill(7)));
    tx.end();
    // Operation 2 zeroes the tail of the second block, then fails.
    tx.begin();
    tx.modifyPending(11)!.fill(0, 100);
    expect(tx.readData(11, 1)[200]).toBe(0);
    tx.rollback();
    expect([...tx.readData(10, 2)].every((x) => x === 7)).toBe(true);
    // Operation 3 does the same and succeeds: the change stays.
    tx.begin();
    tx.modifyPending(11)!.fill(0, 100);
    tx.end();
    const after = tx.readData(11, 1);
    expect(after[99]).toBe(7);
    expect(after[100]).toBe(0);
    // Blocks that no pending piece holds are not handed out.
    expect(tx.modifyPending(12)).toBeUndefined();
  });

  it('a part saved by modifyRange is restored on rollback, also when the whole block is saved after it', () => {
    const bs = 1024;
    const tx = new Transaction(new BlockCache(new MemoryDevice(64 * bs), bs, 64));
    tx.begin();
    tx.modify(3).fill(1);
    tx.end();
    // Only part of the block changes: the whole of it comes back.
    tx.begin();
    tx.modifyRange(3, 256, 256).fill(2, 256, 512);
    tx.modifyRange(3, 512, 256).fill(3, 512, 768);
    expect(tx.read(3)[300]).toBe(2);
    tx.rollback();
    expect([...tx.read(3)].every((x) => x === 1)).toBe(true);
    // A part, then the whole block changed in the same operation (saved whole after the part changed).
    tx.begin();
    tx.modifyRange(3, 0, 128).fill(4, 0, 128);
    tx.modify(3).fill(5, 128);
    tx.rollback();
    expect([...tx.read(3)].every((x) => x === 1)).toBe(true);
    // A block no earlier operation changed: no part is saved, the block is dropped on rollback.
    tx.begin();
    tx.modifyRange(7, 0, 16).fill(6, 0, 16);
    tx.rollback();
    expect(tx.has(7)).toBe(false);
    // Kept when the operation ends.
    tx.begin();
    tx.modifyRange(3, 0, 16).fill(8, 0, 16);
    tx.end();
    expect(tx.read(3)[0]).toBe(8);
    expect(tx.read(3)[16]).toBe(1);
  });

  it('one rollback restores blocks, map and set entries, counters and appended lists, then runs the hooks', () => {
    const bs = 1024;
    const cache = new BlockCache(new MemoryDevice(64 * bs), bs, 64);
    const tx = new Transaction(cache);
    const descs = new Map<number, string>([[1, 'one']]);
    const groups = new Set<number>([4]);
    const counts = { free: 10, features: 0 };
    const frees: number[] = [1];
    let hooks = 0;
    tx.onRollback(() => hooks++);
    tx.modify(3)[0] = 1;
    tx.begin();
    tx.modify(3)[0] = 2;
    tx.put(5, new Uint8Array(bs).fill(9));
    tx.saveEntry(descs, 1);
    descs.set(1, 'changed');
    tx.saveEntry(descs, 2);
    descs.set(2, 'new');
    tx.saveEntry(groups, 6);
    groups.add(6);
    tx.saveFields(counts);
    counts.free -= 3;
    tx.saveFields(counts);
    counts.features |= 4;
    tx.saveLength(frees);
    frees.push(2, 3);
    expect(cache.read(3)[0]).toBe(2);
    expect(cache.overlaid(5)).toBe(true);
    tx.rollback();
    expect(cache.read(3)[0]).toBe(1);
    expect(cache.overlaid(5)).toBe(false);
    expect(cache.read(5)[0]).toBe(0);
    expect([...descs]).toEqual([[1, 'one']]);
    expect([...groups]).toEqual([4]);
    expect(counts).toEqual({ free: 10, features: 0 });
    expect(frees).toEqual([1]);
    expect(hooks).toBe(1);
    // Outside an operation nothing is recorded (and a rollback has nothing to restore).
    tx.saveFields(counts);
    counts.free = 1;
    tx.rollback();
    expect(counts.free).toBe(1);
  });

  it('is the layer the cache reads through: blocks it changed are trusted, and become clean once written', () => {
    const bs = 1024;
    const dev = new MemoryDevice(64 * bs);
    const cache = new BlockCache(dev, bs, 64);
    const tx = new Transaction(cache);
    expect(cache.changed).toBe(false);
    tx.modify(7)[0] = 42;
    expect(cache.changed).toBe(true);
    expect(cache.isTrusted(7)).toBe(true);
    expect(cache.isTrusted(8)).toBe(false);
    // Written by a commit: the device has it, the cache keeps it clean and verified.
    dev.write(7 * bs, tx.blocks.get(7)!);
    tx.blocksWritten();
    expect(cache.changed).toBe(false);
    expect(cache.overlaid(7)).toBe(false);
    expect(cache.isTrusted(7)).toBe(true);
    expect(cache.read(7)[0]).toBe(42);
  });

  it('a replayed journal is a read-only layer: its blocks win, are not trusted, and no edit stacks over it', () => {
    const bs = 1024;
    const cache = new BlockCache(new MemoryDevice(64 * bs), bs, 64);
    cache.stack(new FixedLayer(new Map([[2, new Uint8Array(bs).fill(5)]])));
    expect(cache.read(2)[0]).toBe(5);
    expect(cache.read(1, 2)[bs]).toBe(5);
    cache.markVerified(2);
    expect(cache.isTrusted(2)).toBe(false);
    expect(() => new Transaction(cache)).toThrowError(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
