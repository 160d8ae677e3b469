/**
 * Crash safety with 4096-byte blocks (see helpers/crash.ts): a batch killed after every write and
 * fsync, recovered by us, by e2fsck and by the kernel, is clean and holds the old or the new state.
 * On a fresh mkfs.ext4 journal and on one the kernel has used.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HAVE_E2FSPROGS, IS_ROOT, haveTool, oracleAvailable, scratchDir } from './helpers/oracle.js';
import { crashHarness } from './helpers/crash.js';

const runIt = oracleAvailable('crash harness (e2fsprogs)', HAVE_E2FSPROGS);
const kernel = oracleAvailable('crash harness kernel recovery (root, mount)', IS_ROOT && haveTool('mount'));
const work = scratchDir('ext4wd-crash-4k');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe.runIf(runIt)('crash at every write and fsync, 4096-byte blocks', () => {
  for (const kernelUsed of [false, true])
    it.runIf(!kernelUsed || kernel)(
      kernelUsed ? 'a journal the kernel has used' : 'a fresh mkfs.ext4 journal',
      () => {
        const dir = path.join(work, kernelUsed ? 'used' : 'fresh');
        fs.mkdirSync(dir);
        const r = crashHarness(dir, { blockSize: 4096, kernelUsed, kernelRecovery: kernel });
        expect(r.old + r.new).toBe(4 * r.events);
      },
      600_000,
    );
});
