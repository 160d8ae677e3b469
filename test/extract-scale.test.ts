/**
 * extract at scale (issue 26): a generated tree of 20,000 entries in 40 directories, built in memory,
 * laid into an image by mkfs and extracted whole: every directory holds exactly the source's names,
 * every file its bytes, mode and time, every symlink its target.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatDevice } from '../src/mkfs/format.js';
import { MemoryDevice } from '../src/io/device.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { extract } from '../src/tree/extract.js';
import { memoryTreeSource, type MemoryEntry } from '../src/tree/sources/memory.js';
import { scratchDir } from './helpers/oracle.js';

const scratch = scratchDir('extract-scale');
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

const DIRS = 40;
const PER_DIR = 500;
const T = { sec: 1_700_000_000, nsec: 0 };

/** File `k` of directory `d`: 0 to about 3 KiB of bytes that tell it apart from every other. */
function content(d: number, k: number): Uint8Array {
  const n = (k * 97 + d * 13) % 3000;
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (d * 31 + k * 7 + i) & 0xff;
  return b;
}

describe('extract of a large generated tree', () => {
  it(`${DIRS * PER_DIR} entries come out equal to the source`, () => {
    const children: Record<string, MemoryEntry> = {};
    for (let d = 0; d < DIRS; d++) {
      const c: Record<string, MemoryEntry> = {};
      for (let k = 0; k < PER_DIR; k++)
        c[`f${k}`] =
          k % 100 === 99
            ? { target: `f${k - 1}`, time: T }
            : { data: content(d, k), perm: k % 2 ? 0o640 : 0o755, time: T };
      children[`d${d}`] = { children: c, time: T };
    }
    const dev = new MemoryDevice(512 << 20);
    formatDevice(dev, { sizeBytes: 512 << 20, source: memoryTreeSource({ children }, T), timestamp: T.sec });
    const dest = path.join(scratch, 'out');
    fs.mkdirSync(dest);
    const res = extract(Ext4Reader.open(dev), '/', dest, { owners: false });
    const links = DIRS * (PER_DIR / 100);
    expect(res.files + res.symlinks).toBe(DIRS * PER_DIR);
    expect(res.symlinks).toBe(links);
    expect(res.unreadable).toEqual([]);
    expect(fs.readdirSync(dest).sort()).toEqual([...Object.keys(children), 'lost+found'].sort());
    // Differences collected, asserted once (an expect per entry would cost more than the extract).
    const wrong: string[] = [];
    for (let d = 0; d < DIRS; d++) {
      const dir = path.join(dest, `d${d}`);
      if (fs.readdirSync(dir).length !== PER_DIR) wrong.push(`${dir}: ${fs.readdirSync(dir).length} entries`);
      for (let k = 0; k < PER_DIR; k++) {
        const p = path.join(dir, `f${k}`);
        const st = fs.lstatSync(p);
        if (k % 100 === 99) {
          if (!st.isSymbolicLink() || fs.readlinkSync(p) !== `f${k - 1}`) wrong.push(`${p}: not the symlink`);
          continue;
        }
        if ((st.mode & 0o7777) !== (k % 2 ? 0o640 : 0o755)) wrong.push(`${p}: mode ${st.mode.toString(8)}`);
        if (st.mtimeMs !== T.sec * 1000) wrong.push(`${p}: mtime ${st.mtimeMs}`);
        if (!fs.readFileSync(p).equals(Buffer.from(content(d, k)))) wrong.push(`${p}: content`);
      }
    }
    expect(wrong.slice(0, 20)).toEqual([]);
  });
});
