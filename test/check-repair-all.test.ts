/**
 * `check --repair=all` (e2fsck -y): directory and connectivity damage made on purpose on images of three
 * option sets (ours, mkfs.ext4's default, ext3 with 1 KiB blocks and block maps), repaired to what
 * `e2fsck -fn` and our check find clean, keeping what `e2fsck -fy` keeps on another copy (every path
 * outside /lost+found with its type, mode, owner, links, size and content) and reconnecting what it
 * reconnects; a second repair finds nothing; a repair killed at any write leaves the old image or the
 * repaired one. And the corpus: never a crash or a hang, never worse, a count of images left clean.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { repairImage } from '../src/edit/repair-all.js';
import { checkImage } from '../src/check/check.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { setDirBlockTail, hasDirTail } from '../src/ext4/dirent.js';
import { dxRootCountOffset, setDxTail } from '../src/ext4/htree.js';
import { FL_INDEX } from '../src/ext4/inode.js';
import {
  HAVE_E2FSPROGS,
  IS_ROOT,
  cli,
  expectClean,
  haveTool,
  oracleAvailable,
  run,
  scratchDir,
} from './helpers/oracle.js';
import { crashEveryRepairEvent, kernelTree, tree } from './helpers/repair-state.js';

const CORPUS = path.resolve(__dirname, '../../shared/corpus/e2fsprogs');
const canMount = oracleAvailable(
  'check --repair=all: the kernel mounts the repaired images',
  IS_ROOT && haveTool('mount'),
);
const work = scratchDir('ext4wd-repair-all');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** Bytes of an image changed in place: a directory entry's fields, its block's checksum resealed. */
function pokeEntry(img: string, dir: string, name: string, change: (b: Buffer, off: number) => void): void {
  const dev = FileDevice.open(img, true);
  try {
    const r = Ext4Reader.open(dev, { verifyChecksums: false });
    const ino = r.lookup(dir);
    const i = r.inode(ino);
    const slot = r.findEntry(ino, Buffer.from(name))!;
    expect(slot, `${dir}/${name}`).toBeDefined();
    const bs = r.blockSize;
    const b = Buffer.from(dev.read(slot.pblk * bs, bs));
    change(b, slot.offset);
    if (r.csum && hasDirTail(b, bs)) setDirBlockTail(b, bs, r.inodeSeed(ino, i.generation));
    dev.write(slot.pblk * bs, b);
  } finally {
    dev.close();
  }
}

/** Changes the htree root of directory `dir` (its dx_tail resealed). */
function pokeDxRoot(img: string, dir: string, change: (b: Buffer) => void): void {
  const dev = FileDevice.open(img, true);
  try {
    const r = Ext4Reader.open(dev, { verifyChecksums: false });
    const ino = r.lookup(dir);
    const i = r.inode(ino);
    expect(i.flags & FL_INDEX, `${dir} is indexed`).not.toBe(0);
    const p0 = r.physicalBlock(r.mapping(ino, i, true).runs, 0)!;
    const bs = r.blockSize;
    const b = Buffer.from(dev.read(p0 * bs, bs));
    change(b);
    const co = dxRootCountOffset(b);
    if (r.csum) setDxTail(b, co, b.readUInt16LE(co), b.readUInt16LE(co + 2), r.inodeSeed(ino, i.generation));
    dev.write(p0 * bs, b);
  } finally {
    dev.close();
  }
}

const debugfs = (img: string, ...cmds: string[]) => {
  for (const c of cmds) {
    const r = run('debugfs', ['-w', '-R', c, img]);
    expect(r.status, r.stderr).toBe(0);
  }
};

/** Points the first block of `path`'s map at `block` (extents: ee_start_lo of its first extent). */
function pointAt(img: string, path: string, block: number | string): void {
  const extents = run('debugfs', ['-R', `stat ${path}`, img]).stdout.includes('EXTENTS:');
  debugfs(img, `sif ${path} block[${extents ? 5 : 0}] ${block}`);
}
const firstBlock = (img: string, path: string) => run('debugfs', ['-R', `bmap ${path} 0`, img]).stdout.trim();
/** The first block of group 0's inode table. */
function inodeTable(img: string): number {
  const dev = FileDevice.open(img);
  try {
    return Ext4Reader.open(dev, { verifyChecksums: false }).groupDesc(0).inodeTable;
  } finally {
    dev.close();
  }
}

/** The inode `path` names. */
function inodeOf(img: string, path: string): number {
  const dev = FileDevice.open(img);
  try {
    return Ext4Reader.open(dev, { verifyChecksums: false }).lookup(path);
  } finally {
    dev.close();
  }
}

type Case = [label: string, damage: (img: string) => void];
const CASES: Case[] = [
  ['an entry naming a cleared inode', (img) => debugfs(img, 'clri /d/x')],
  ['an unattached file and an unattached empty file', (img) => debugfs(img, 'unlink /a/f1', 'unlink /empty')],
  ['an unconnected directory', (img) => debugfs(img, 'unlink /a/b')],
  ['a loop of unconnected directories', (img) => debugfs(img, 'link /a/b /a/b/c/up', 'unlink /a/b')],
  ['no /lost+found and an unattached file', (img) => debugfs(img, 'rmdir /lost+found', 'unlink /a/f3')],
  ['a wrong file type', (img) => pokeEntry(img, '/a', 'f2', (b, o) => (b[o + 7] = 2))],
  ["a '.' naming another inode", (img) => pokeEntry(img, '/d', '.', (b, o) => b.writeUInt32LE(2, o))],
  ["a '..' naming the wrong parent", (img) => pokeEntry(img, '/a/b/c', '..', (b, o) => b.writeUInt32LE(2, o))],
  ['a bad rec_len', (img) => pokeEntry(img, '/a', 'f5', (b, o) => b.writeUInt16LE(b.readUInt16LE(o + 4) + 2, o + 4))],
  ['a bad htree root', (img) => pokeDxRoot(img, '/big', (b) => (b[0x1c] = 9))],
  ['blocks claimed by two files', (img) => pointAt(img, '/a/f2', firstBlock(img, '/a/f1'))],
  [
    'blocks claimed by three files',
    (img) => ['/a/f2', '/a/f3'].forEach((f) => pointAt(img, f, firstBlock(img, '/a/f1'))),
  ],
  ['a file claiming inode table blocks', (img) => pointAt(img, '/a/f3', inodeTable(img))],
  ['a name twice, naming two inodes', (img) => pokeEntry(img, '/a', 'f2', (b, o) => (b[o + 9] = 0x31))],
  [
    'a name twice, naming one inode',
    (img) => {
      const f1 = inodeOf(img, '/a/f1');
      pokeEntry(img, '/a', 'f2', (b, o) => {
        b[o + 9] = 0x31;
        b.writeUInt32LE(f1, o);
      });
    },
  ],
];

describe.runIf(oracleAvailable('check --repair=all against e2fsck -y', HAVE_E2FSPROGS))('check --repair=all', () => {
  const src = path.join(work, 'tree');
  fs.mkdirSync(path.join(src, 'a/b/c'), { recursive: true });
  fs.mkdirSync(path.join(src, 'd'));
  fs.mkdirSync(path.join(src, 'big'));
  for (let k = 1; k <= 5; k++) fs.writeFileSync(path.join(src, 'a', `f${k}`), Buffer.alloc(k * 3000, k));
  fs.writeFileSync(path.join(src, 'd/x'), 'x');
  fs.writeFileSync(path.join(src, 'empty'), '');
  for (let k = 0; k < 300; k++) fs.writeFileSync(path.join(src, 'big', `a-file-with-a-long-name-${k}`), `${k}`);
  fs.chmodSync(path.join(src, 'a/f4'), 0o600);
  let n = 0;
  const bases: [string, () => string][] = [
    [
      'ours',
      () => {
        const img = path.join(work, `base${n++}.img`);
        const r = cli(['mkfs', img, '--size', '32M', '--from', src, '--owner', '0:0', '--no-sync']);
        expect(r.status, r.stderr).toBe(0);
        return img;
      },
    ],
    ['mkfs.ext4', () => mkfs([])],
    ['ext3, 1 KiB blocks', () => mkfs(['-t', 'ext3', '-b', '1024'])],
  ];
  /** mkfs.ext4 with `opts`, its directories then indexed (e2fsck -fD) so /big has an htree. */
  function mkfs(opts: string[]): string {
    const img = path.join(work, `base${n++}.img`);
    run('truncate', ['-s', '32M', img]);
    const r = run('mkfs.ext4', ['-q', '-F', '-E', 'root_owner=0:0', ...opts, '-d', src, img]);
    expect(r.status, r.stderr).toBe(0);
    run('e2fsck', ['-fyD', img]);
    expectClean(img);
    return img;
  }

  /**
   * Paths outside /lost+found with what they hold (a directory's size is its layout's: e2fsck -y
   * rebuilds an index it clears); and how many entries /lost+found has.
   */
  const kept = (img: string) => {
    const t = tree(img);
    const out = new Map(
      [...t]
        .filter(([p]) => !p.startsWith('/lost+found'))
        .map(([p, v]) => [p, v.startsWith('40') ? v.split(' ').slice(0, 3).join(' ') : v]),
    );
    return { out, lost: [...t.keys()].filter((p) => /^\/lost\+found\/[^/]+$/.test(p)).length };
  };

  for (const [setName, makeBase] of bases)
    describe(setName, () => {
      let base: string | undefined;
      const baseImg = () => (base ??= makeBase());
      for (const [label, damage] of CASES)
        it(label, () => {
          const img = path.join(work, `${setName}-${label}.img`.replace(/[^\w.-]+/g, '-'));
          fs.copyFileSync(baseImg(), img);
          damage(img);
          expect(run('e2fsck', ['-fn', img]).status, 'damaged as e2fsck sees it').not.toBe(0);
          expect(checkImage(img).clean, 'damaged as our check sees it').toBe(false);
          const theirs = `${img}.y`;
          fs.copyFileSync(img, theirs);
          run('e2fsck', ['-fy', theirs]);
          expect(run('e2fsck', ['-fn', theirs]).status).toBe(0);
          const res = repairImage(img, { mode: 'all', sync: false });
          expect(res.remaining, JSON.stringify(res.fixed)).toEqual([]);
          expect(res.status).toBe(1);
          expect(res.fixed.length).toBeGreaterThan(0);
          expectClean(img);
          // The kernel reads the repaired tree as our reader does.
          if (canMount) expect(kernelTree(img, path.join(work, 'mnt'))).toEqual(tree(img));
          const a = kept(img);
          const b = kept(theirs);
          // What e2fsck keeps, ours keeps (the same type, mode, owner, links, size and content).
          // (A file that claimed inode table blocks holds copies of them, taken when each tool clones:
          // e2fsck before its later passes rewrite inode records, ours after its inode fixes.)
          const copiesOfTables = (p: string, x: string | undefined) =>
            label.includes('inode table') && p === '/a/f3' ? x?.split(' ').slice(0, 4).join(' ') : x;
          // (Of two entries of one name naming two inodes, ours renames the later in the directory,
          // e2fsck the later in its sorted order: the two names hold the same two files, either way.)
          if (label.includes('naming two inodes')) {
            const pair = (m: Map<string, string>) => ['/a/f1', '/a/f1~0'].map((p) => m.get(p)).sort();
            expect(pair(a.out)).toEqual(pair(b.out));
            for (const p of ['/a/f1', '/a/f1~0']) [a.out, b.out].forEach((m) => m.delete(p));
          }
          for (const [p, v] of b.out) expect(copiesOfTables(p, a.out.get(p)), p).toBe(copiesOfTables(p, v));
          // (e2fsck -y leaves a loop of directories unconnected, its '..' made to agree: ours hangs it
          // under /lost+found, which our check and the kernel's view of the tree need.)
          if (label.includes('loop')) expect(a.lost).toBe(b.lost + 1);
          else expect(a.lost, 'reconnected to /lost+found').toBe(b.lost);
          expect(repairImage(img, { mode: 'all', sync: false }).status, 'a second repair').toBe(0);
        });
    });

  it('the CLI: --repair=all reports each fix (text and JSON) and exits 1, then 0; a bad mode is a usage error', () => {
    const img = path.join(work, 'cli.img');
    fs.copyFileSync(bases[1]![1](), img);
    debugfs(img, 'unlink /a/f1', 'clri /d/x');
    const json = path.join(work, 'cli-json.img');
    fs.copyFileSync(img, json);
    const r = cli(['check', img, '--repair=all', '--no-sync']);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/fixed: DIR_ENTRY_INODE: directory \d+, block \d+: entry "x" \(inode \d+\) cleared/);
    expect(r.stdout).toMatch(/fixed: INODE_UNATTACHED: inode \d+ connected to \/lost\+found as #\d+/);
    const j = cli(['check', json, '--repair=all', '--no-sync', '--json']);
    expect(j.status).toBe(1);
    const out = JSON.parse(j.stdout) as { mode: string; fixed: { code: string; path?: string }[] };
    expect(out.mode).toBe('all');
    expect(out.fixed.some((p) => p.code === 'INODE_UNATTACHED' && p.path)).toBe(true);
    expect(cli(['check', img, '--repair=all']).status).toBe(0);
    expect(cli(['check', img, '--repair=most']).status).toBe(2);
    expectClean(img);
  });

  it('a repair=all killed at any write or fsync leaves, after recover, the damaged image or the repaired one', () => {
    const img = path.join(work, 'crash.img');
    fs.copyFileSync(bases[1]![1](), img);
    debugfs(img, 'unlink /a/b', 'clri /d/x', 'rmdir /lost+found');
    const state = (f: string) => [...tree(f)].join('\n');
    crashEveryRepairEvent(work, img, ['--repair=all'], state);
  });

  it('a clone of blocks claimed twice killed at any write or fsync: the damaged image or the repaired one', () => {
    const img = path.join(work, 'crash-clone.img');
    fs.copyFileSync(bases[1]![1](), img);
    ['/a/f2', '/a/f3'].forEach((f) => pointAt(img, f, firstBlock(img, '/a/f5')));
    // What the files hold reads the same before and after: where it lies tells the two apart.
    const blocks = (f: string) =>
      ['/a/f2', '/a/f3', '/a/f5'].map((p) => run('debugfs', ['-R', `blocks ${p}`, f]).stdout);
    const state = (f: string) => [...tree(f), ...blocks(f)].join('\n');
    crashEveryRepairEvent(work, img, ['--repair=all'], state);
  });
});

/** Two images e2fsck -fn itself loops on (see the corpus README). */
const HANGS_E2FSCK = new Set(['f_illitable_flexbg', 'f_misstable']);
/** Images e2fsck -fn flags that ours leaves e2fsck -fn-clean: the count only goes up. */
const CLEAN_AFTER_OURS = 69;
/**
 * Where e2fsck -fn finds more after ours than before: device inodes e2fsck condemns (illegal block
 * pointers) and our check does not look at, whose entries' file types ours sets to the inodes' modes.
 */
const WORSE_KNOWN = ['f_filetype'];

describe.runIf(
  oracleAvailable(
    'check --repair=all over the corpus',
    HAVE_E2FSPROGS && fs.existsSync(path.join(CORPUS, 'INDEX.tsv')),
  ),
)('check --repair=all over the corpus', () => {
  it('every image e2fsck -fn flags: no crash or hang, never worse by e2fsck -fn, a count left clean', () => {
    const rows = fs
      .readFileSync(path.join(CORPUS, 'INDEX.tsv'), 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split('\t'));
    const img = path.join(work, 'corpus.img');
    const theirs = path.join(work, 'corpus-y.img');
    /** e2fsck -fn's findings: the lines asking a question it answers "no". */
    const findings = (f: string) => {
      const r = run('e2fsck', ['-fn', f]);
      return { status: r.status ?? -1, count: (r.stdout.match(/\? no\n/g) ?? []).length };
    };
    const tally = { flagged: 0, ours: 0, theirs: 0, both: 0, refused: 0 };
    const worse: string[] = [];
    for (const c of rows) {
      const name = c[0]!;
      const file = path.join(CORPUS, name, 'image.gz');
      if (!fs.existsSync(file) || HANGS_E2FSCK.has(name)) continue;
      const bytes = zlib.gunzipSync(fs.readFileSync(file));
      fs.writeFileSync(img, bytes);
      const before = findings(img);
      if (before.status === 0) continue;
      tally.flagged++;
      fs.writeFileSync(theirs, bytes);
      run('e2fsck', ['-fy', theirs]);
      const theirsClean = findings(theirs).status === 0;
      try {
        repairImage(img, { mode: 'all', sync: false, onWarning: () => {} });
      } catch (e) {
        expect((e as Error).name, `${name}: ${(e as Error).stack}`).toBe('Ext4Error');
        tally.refused++;
      }
      const after = findings(img);
      // (Counted only where e2fsck -fn went through: exit 8 is its operational error, an abort.)
      if (after.status !== 0 && !(before.status & 8) && after.count > before.count && !WORSE_KNOWN.includes(name))
        worse.push(`${name}: ${before.count} -> ${after.count}`);
      const oursClean = after.status === 0;
      if (oursClean) expect(repairImage(img, { mode: 'all', sync: false }).status, `${name}: a second repair`).toBe(0);
      if (oursClean) tally.ours++;
      if (theirsClean) tally.theirs++;
      if (oursClean && theirsClean) tally.both++;
    }
    console.log(
      `repair=all over the corpus: ${tally.flagged} images e2fsck -fn flags; left clean by ours ${tally.ours}, ` +
        `by e2fsck -fy ${tally.theirs} (both ${tally.both}); refused ${tally.refused}`,
    );
    expect(worse).toEqual([]);
    expect(tally.ours).toBeGreaterThanOrEqual(CLEAN_AFTER_OURS);
  }, 900_000);
});
