/**
 * `check --repair` (preen) on inodes: link counts, deletion times and an orphan list, damaged on purpose
 * with `debugfs -w` on mkfs.ext4 images of several option sets, repaired to what e2fsck -fn and our
 * check find clean, with the tree and the counts `e2fsck -fp` leaves on a copy; what e2fsck -p stops on
 * (inodes a cut orphan list left behind) refused with exit 4 and the image unchanged.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { checkImage } from '../src/check/check.js';
import { repairImage, type RepairResult } from '../src/edit/repair.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { HAVE_E2FSPROGS, cli, expectClean, oracleAvailable, run, scratchDir } from './helpers/oracle.js';
import { groupCounts, superCounts, tree } from './helpers/repair-state.js';

const work = scratchDir('ext4wd-repair-inodes');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const sha = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** The option sets the damage is made on: extents with metadata_csum; 1k blocks with gdt_csum; block maps. */
const OPTION_SETS: [string, string[]][] = [
  ['4k metadata_csum', []],
  ['1k gdt_csum', ['-b', '1024', '-O', '^metadata_csum,uninit_bg']],
  ['block maps', ['-O', '^extent,^flex_bg,^64bit,^metadata_csum,^huge_file']],
];

describe.runIf(oracleAvailable('check --repair of inodes against e2fsck -p', HAVE_E2FSPROGS))(
  'check --repair: link counts, dtimes, orphans',
  () => {
    const src = path.join(work, 'tree');
    fs.mkdirSync(path.join(src, 'a/b/c'), { recursive: true });
    fs.mkdirSync(path.join(src, 'a/d'));
    for (let k = 0; k < 12; k++) fs.writeFileSync(path.join(src, 'a', `f${k}`), Buffer.alloc(k * 3000 + 1, k + 1));
    // Past the twelve direct blocks of a block map: a cut-back orphan frees an indirect block too.
    fs.writeFileSync(path.join(src, 'a/b/c/big'), Buffer.alloc(300 << 10, 7));
    fs.linkSync(path.join(src, 'a/f3'), path.join(src, 'a/b/hard'));
    let n = 0;
    const bases = new Map<string, string>();
    const base = (opts: string[]) => {
      const key = opts.join(' ');
      let img = bases.get(key);
      if (img) return img;
      img = path.join(work, `base${n++}.img`);
      run('truncate', ['-s', '32M', img]);
      const r = run('mkfs.ext4', ['-q', '-F', '-E', 'root_owner=0:0', ...opts, '-d', src, img]);
      expect(r.status, r.stderr).toBe(0);
      bases.set(key, img);
      return img;
    };
    const reading = <T>(img: string, fn: (r: Ext4Reader) => T): T => {
      const dev = FileDevice.open(img);
      try {
        return fn(Ext4Reader.open(dev));
      } finally {
        dev.close();
      }
    };
    const ino = (img: string, p: string) => reading(img, (r) => r.lookup(p));
    const firstBlock = (img: string, p: string) =>
      reading(img, (r) => r.blockRuns(r.lookup(p), r.inode(r.lookup(p)))[0]!.pblk);
    /** A copy of `img` with debugfs's requests (`script` gets the base image to look inodes up in). */
    const damaged = (img: string, label: string, script: (b: string) => string[]): string => {
      const out = path.join(work, `${label.replace(/\W+/g, '-')}-${n++}.img`);
      fs.copyFileSync(img, out);
      const r = run('debugfs', ['-w', '-f', '-', out], { input: script(img).join('\n') + '\n' });
      expect(r.status, r.stderr).toBe(0);
      return out;
    };

    type Case = [label: string, script: (b: string) => string[], codes: RegExp];
    const cases: Case[] = [
      ['a file counting more links than it has', () => ['sif /a/f1 links_count 5'], /LINK_COUNT/],
      ['a hard-linked file counting one link', () => ['sif /a/f3 links_count 1'], /LINK_COUNT/],
      [
        "directories' counts (the root's, a subdirectory's '..')",
        () => ['sif / links_count 9', 'sif /a links_count 2', 'sif /a/d links_count 1'],
        /LINK_COUNT/,
      ],
      ['an inode in use with a deletion time', () => ['sif /a/f2 dtime 0x60000000'], /INODE_DTIME/],
      [
        'a deleted inode without a deletion time',
        (b) => [`rm /a/f4`, `sif <${ino(b, '/a/f4')}> dtime 0`],
        /INODE_DTIME/,
      ],
      [
        'an orphan list: an unlinked file and an interrupted truncation',
        (b) => {
          const gone = ino(b, '/a/f5');
          const cut = ino(b, '/a/b/c/big');
          return [
            'unlink /a/f5',
            `sif <${gone}> links_count 0`,
            `sif <${gone}> dtime ${cut}`,
            `sif <${cut}> size 5000`,
            `ssv last_orphan ${gone}`,
          ];
        },
        /ORPHANS/,
      ],
      [
        'link counts and dtimes beside group counts, one transaction',
        (b) => ['sif /a/f6 links_count 3', 'sif /a/f7 dtime 0x60000000', `freeb ${firstBlock(b, '/a/f8')} 2`],
        /^(?=.*LINK_COUNT)(?=.*INODE_DTIME)(?=.*BLOCK_BITMAP)/,
      ],
    ];

    for (const [set, opts] of OPTION_SETS)
      for (const [label, script, codes] of cases)
        it(`${set}: repairs ${label} as e2fsck -p does`, () => {
          const img = damaged(base(opts), label, script);
          const before = checkImage(img);
          expect([...before.problems, ...before.warnings].map((p) => p.code).join(' '), label).toMatch(codes);
          const theirs = `${img}.e2fsck`;
          fs.copyFileSync(img, theirs);
          const p = run('e2fsck', ['-fp', theirs]);
          // (An orphan list's clean-up alone is no error to e2fsck: exit 0.)
          expect(p.status, p.stdout + p.stderr).toBeLessThanOrEqual(1);
          const res = repairImage(img, { sync: false });
          expect(res.status, JSON.stringify(res.remaining)).toBe(1);
          expect(res.remaining).toEqual([]);
          expect(res.fixed.map((f) => f.code).join(' ')).toMatch(codes);
          // Each fix names its inode and says what was done.
          for (const f of res.fixed.filter((x) => /LINK_COUNT|INODE_DTIME|ORPHANS/.test(x.code))) {
            expect(f.inode, JSON.stringify(f)).toBeGreaterThan(0);
            expect(f.text).toMatch(/set to|cleared|set$|deleted|cut back/);
          }
          if (/orphan/.test(label))
            expect(res.fixed.map((f) => f.text).join('\n')).toMatch(/deleted[^]*cut back|cut back[^]*deleted/);
          expectClean(img);
          expect(tree(img)).toEqual(tree(theirs));
          expect(groupCounts(img)).toEqual(groupCounts(theirs));
          expect(superCounts(img)).toEqual(superCounts(theirs));
          expect(repairImage(img, { sync: false }).status).toBe(0);
        });

    it('inodes a cut orphan list left behind: refused with exit 4 as e2fsck -p refuses, unchanged', () => {
      const b = base([]);
      const left = [ino(b, '/a/f9'), ino(b, '/a/f10')];
      const img = damaged(b, 'refugees', () => [
        'rm /a/f9',
        `sif <${left[0]}> dtime 7`,
        'sif /a/f10 dtime 12',
        'sif /a/f11 links_count 4', // fixable, but not alone
      ]);
      const theirs = `${img}.e2fsck`;
      fs.copyFileSync(img, theirs);
      const p = run('e2fsck', ['-fp', theirs]);
      expect(p.status).toBe(4);
      expect(p.stdout + p.stderr).toMatch(/orphan/);
      const hash = sha(img);
      const r = cli(['check', img, '--repair', '--json']);
      expect(r.status, r.stderr).toBe(4);
      const out = JSON.parse(r.stdout) as RepairResult;
      expect(out.fixed).toEqual([]);
      expect(
        out.remaining
          .filter((x) => x.code === 'INODE_DTIME' && /orphan list/.test(x.text))
          .map((x) => x.inode)
          .sort((x, y) => x! - y!),
      ).toEqual(left.sort((x, y) => x - y));
      expect(out.remaining.map((x) => x.code)).toContain('LINK_COUNT');
      expect(sha(img)).toBe(hash);
    });

    it('an orphan list that cannot be followed stops the repair with nothing written', () => {
      const img = damaged(base([]), 'loop', (b) => {
        const a = ino(b, '/a/f1');
        const c = ino(b, '/a/f2');
        return [
          'unlink /a/f1',
          'unlink /a/f2',
          `sif <${a}> dtime ${c}`,
          `sif <${c}> dtime ${a}`,
          `ssv last_orphan ${a}`,
        ];
      });
      const hash = sha(img);
      const res = repairImage(img, { sync: false });
      expect(res.status).toBe(4);
      expect(res.fixed).toEqual([]);
      expect(res.remaining.map((x) => x.code)).toEqual(['ORPHANS']);
      expect(sha(img)).toBe(hash);
    });
  },
);
