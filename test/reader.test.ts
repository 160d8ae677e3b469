/**
 * The reader against images other tools wrote: mkfs.ext4 -d under many option sets, and images the
 * kernel wrote. `extract /` must equal the source tree (and what debugfs rdump produces); `cat` must
 * equal `debugfs cat`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { extract } from '../src/tree/extract.js';
import { formatImage } from '../src/mkfs/image.js';
import { hostDirectorySource } from '../src/tree/sources/host.js';
import { HAVE_E2FSPROGS, IS_ROOT, oracleAvailable, run, scratchDir, cli, haveTool } from './helpers/oracle.js';
import { makeVariedTree, snapshot, type NodeInfo } from './helpers/tree.js';

const runIt = oracleAvailable('reader suite (mkfs.ext4 -d images)', HAVE_E2FSPROGS);
const work = scratchDir('ext4wd-read');
const srcAll = path.join(work, 'src');
const srcSmall = path.join(work, 'src-1k');
const src = srcAll;
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
beforeAll(() => {
  makeVariedTree(srcAll);
  makeVariedTree(srcSmall);
  fs.rmSync(path.join(srcSmall, 'link-4095'));
});

/** What extraction can reproduce on any host: no special files, times to the microsecond. */
/** JSON with sorted keys, so objects built in different orders compare equal. */
function canon(v: unknown): string {
  if (v === undefined) return 'undefined';
  const o = v as Record<string, unknown>;
  return JSON.stringify(
    Object.fromEntries(
      Object.keys(o)
        .sort()
        .filter((k) => o[k] !== undefined)
        .map((k) => [k, o[k]]),
    ),
  );
}

function comparable(
  m: Map<string, NodeInfo>,
  opts: { links?: boolean; dirSeconds?: boolean } = {},
): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [k, v] of m) {
    if (!['file', 'dir', 'symlink'].includes(v.type)) continue;
    const { atimeNs: _a, mtimeNs, nlink, ...rest } = v;
    // Node sets times with microsecond precision (milliseconds before 1970).
    const floorDiv = (a: bigint, b: bigint) => (a >= 0n ? a / b : -((-a + b - 1n) / b));
    let us = mtimeNs < 0n ? floorDiv(mtimeNs, 1_000_000n) * 1000n : mtimeNs / 1000n;
    // mkfs.ext4 -d keeps only whole seconds, and only the 32-bit range (it drops the epoch bits).
    if (opts.dirSeconds) us = floorDiv(us, 1_000_000n) * 1_000_000n;
    const outOfRange = opts.dirSeconds && (us < -(2n ** 31n) * 1_000_000n || us >= 2n ** 31n * 1_000_000n);
    out.set(k, {
      ...rest,
      mtimeUs: v.type === 'symlink' || k === '/' || outOfRange ? undefined : us.toString(),
      nlink: opts.links && v.type !== 'dir' ? nlink : undefined,
    });
  }
  return out;
}

/** [name, mkfs.ext4 options, 1 KiB blocks (no room for a 4095-byte symlink target)] */
const VARIANTS: [string, string[], boolean?][] = [
  ['default ext4', []],
  ['1 KiB blocks', ['-b', '1024'], true],
  ['64 KiB blocks', ['-b', '65536']],
  ['^64bit', ['-O', '^64bit']],
  ['^metadata_csum (gdt_csum)', ['-O', '^metadata_csum']],
  ['^flex_bg', ['-O', '^flex_bg']],
  ['^extent (block maps)', ['-O', '^extent,^64bit']],
  ['ext2', ['-t', 'ext2']],
  ['ext3', ['-t', 'ext3']],
  ['inline_data', ['-O', 'inline_data']],
  ['bigalloc', ['-O', 'bigalloc', '-C', '16384']],
  ['meta_bg', ['-O', 'meta_bg,^resize_inode']],
  ['128-byte inodes', ['-I', '128']],
];

describe.runIf(runIt)('reading images mkfs.ext4 -d wrote', () => {
  for (const [name, args, smallBlocks] of VARIANTS) {
    it(name, () => {
      const src = smallBlocks ? srcSmall : srcAll;
      const img = path.join(work, `v-${name.replace(/\W+/g, '_')}.img`);
      fs.writeFileSync(img, '');
      fs.truncateSync(img, 600 * 2 ** 20);
      const before = snapshot(src, { read: false });
      const mk = run('mkfs.ext4', ['-q', '-F', ...args, '-d', src, img]);
      expect(mk.status, mk.stderr).toBe(0);
      const out = path.join(work, `out-${name.replace(/\W+/g, '_')}`);
      fs.mkdirSync(out);
      const r = Ext4Reader.open(FileDevice.open(img));
      const res = extract(r, '/', out, { owners: IS_ROOT });
      expect(res.files).toBeGreaterThan(2500);
      fs.rmSync(path.join(out, 'lost+found'), { recursive: true, force: true });
      const want = comparable(before, { dirSeconds: true });
      for (const [k, v] of snapshot(src)) {
        const w = want.get(k) as Record<string, unknown> | undefined;
        if (w) Object.assign(w, { sha: v.sha, target: v.target });
      }
      const got = comparable(snapshot(out), { dirSeconds: true });
      for (const [k, v] of want) {
        const g = { ...(got.get(k) as Record<string, unknown>) };
        // Times mkfs.ext4 -d could not store are not the reader's to reproduce.
        if ((v as Record<string, unknown>).mtimeUs === undefined) delete g.mtimeUs;
        expect(canon(g), k).toBe(canon(v));
      }
      expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
      // Hard links stay hard links.
      expect(fs.statSync(path.join(out, 'hardlink-1')).ino).toBe(fs.statSync(path.join(out, 'small.txt')).ino);
      // cat equals debugfs cat.
      for (const f of [
        'small.txt',
        'multi-block.bin',
        'sparse.bin',
        'many/file-77-ppppppppppppppppppppppppppppppppppppp'.slice(0, 100),
      ]) {
        const p = '/' + f;
        if (!fs.existsSync(path.join(src, f))) continue;
        const ours = cli(['cat', img, p]);
        expect(ours.stdout === fs.readFileSync(path.join(src, f), 'utf8'), f).toBe(true);
        // debugfs 1.47 cat prints the whole 60-byte inline area of inline-data files, past i_size.
        if (name !== 'inline_data')
          expect(ours.stdout === run('debugfs', ['-R', `cat ${p}`, img]).stdout, f).toBe(true);
      }
      fs.rmSync(out, { recursive: true, force: true });
      fs.rmSync(img);
    });
  }
});

describe.runIf(
  oracleAvailable('reader vs kernel-written images (root)', IS_ROOT && HAVE_E2FSPROGS && haveTool('mount')),
)('reading images the kernel wrote', () => {
  it('create, append in interleaved pieces, delete, rename: extract equals the kernel view', () => {
    const img = path.join(work, 'kernel.img');
    formatImage(img, { sizeBytes: 256 * 2 ** 20, blockSize: 4096, source: hostDirectorySource(src), sync: false });
    const mnt = path.join(work, 'kmnt');
    fs.mkdirSync(mnt);
    expect(run('mount', ['-o', 'loop', img, mnt]).status).toBe(0);
    let view: Map<string, NodeInfo>;
    try {
      // Interleaved appends fragment both files; deletes and renames churn directories.
      const a = fs.openSync(path.join(mnt, 'inter-a'), 'a');
      const b = fs.openSync(path.join(mnt, 'inter-b'), 'a');
      for (let k = 0; k < 64; k++) {
        fs.writeSync(a, Buffer.alloc(12345, k));
        fs.writeSync(b, Buffer.alloc(4096 * 3 + 7, 255 - k));
        fs.fsyncSync(a);
        fs.fsyncSync(b);
      }
      fs.closeSync(a);
      fs.closeSync(b);
      for (let k = 0; k < 2500; k += 3)
        fs.rmSync(path.join(mnt, 'many', fs.readdirSync(path.join(mnt, 'many')).sort()[0]!));
      fs.renameSync(path.join(mnt, 'deep'), path.join(mnt, 'renamed-deep'));
      fs.mkdirSync(path.join(mnt, 'new-dir'));
      for (let k = 0; k < 300; k++) fs.writeFileSync(path.join(mnt, 'new-dir', `n${k}`), 'z'.repeat(k));
      fs.rmSync(path.join(mnt, 'multi-block.bin'));
      run('sync', []);
    } finally {
      expect(run('umount', [mnt]).status).toBe(0);
    }
    expect(run('mount', ['-o', 'loop,ro', img, mnt]).status).toBe(0);
    try {
      view = snapshot(mnt);
    } finally {
      run('umount', [mnt]);
    }
    const out = path.join(work, 'kout');
    fs.mkdirSync(out);
    extract(Ext4Reader.open(FileDevice.open(img)), '/', out, { owners: true });
    const got = comparable(snapshot(out));
    const want = comparable(view);
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [k, v] of want) expect(canon(got.get(k)), k).toBe(canon(v));
  });
});
