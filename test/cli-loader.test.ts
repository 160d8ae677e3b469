/**
 * The executable's loader (src/cli-loader.ts): a command's code cache is written after its first run
 * and used by the next, keyed by the runtime and its engine's version; a directory others may write is
 * not used.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cli, scratchDir } from './helpers/oracle.js';

const work = scratchDir('ext4wd-loader');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const run = (cache: string) =>
  cli(['--help'], { ...process.env, XDG_CACHE_HOME: cache, EXT4_WORKDISK_DEBUG_CODE_CACHE: '1' });

describe('the code cache', () => {
  it('is written by the first run, used by the second, named by runtime and V8 version', () => {
    const cache = path.join(work, 'cache');
    expect(run(cache).stderr).toMatch(/code cache missing/);
    const files = fs.readdirSync(path.join(cache, 'ext4-workdisk'));
    expect(files).toHaveLength(1);
    expect(files[0]).toContain(`-node${process.version}-${process.versions.v8}-`);
    expect(run(cache).stderr).toMatch(/code cache used/);
  });

  it('is not used from a directory others may write', () => {
    const cache = path.join(work, 'open');
    fs.mkdirSync(path.join(cache, 'ext4-workdisk'), { recursive: true });
    fs.chmodSync(path.join(cache, 'ext4-workdisk'), 0o777);
    const r = run(cache);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/code cache missing \(off\)/);
    expect(fs.readdirSync(path.join(cache, 'ext4-workdisk'))).toHaveLength(0);
  });
});
