/**
 * The editor never makes a damaged image worse: a group whose descriptor the kernel would refuse at
 * mount (bitmaps or inode table outside the file system, on the descriptors, on each other), a block
 * bitmap calling metadata or a file's block free, an inode bitmap calling an inode in use free: each
 * refused with NEEDS_CHECK before anything is written, and only when the edit touches that group.
 * `--check` on every editing command, `edit`, `seed` and `materialize`: a damaged input refused whole.
 * The corpus: on every corrupt-category e2fsprogs image a small edit is refused with an Ext4Error, or
 * leaves e2fsck -fn's findings no worse.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { Ext4Editor, editImage } from '../src/edit/editor.js';
import { Ext4Error } from '../src/core/errors.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { blockRuns } from '../src/fs/blockmap.js';
import { decodeGroupDesc, encodeGroupDesc, putGroupDescChecksum, type GroupDesc } from '../src/ext4/group-desc.js';
import { bitmapChecksum } from '../src/ext4/bitmap.js';
import { decodeSuperblock, encodeSuperblock, setFreeBlocksCount } from '../src/ext4/superblock.js';
import { buildWorkSeedImage, materializeWorkDisk } from '../src/workdisk/job.js';
import { COMMANDS } from '../src/edit/commands.js';
import {
  HAVE_E2FSPROGS,
  CLI,
  cli,
  expectClean,
  fsck,
  mkfsImage,
  oracleAvailable,
  run,
  scratchDir,
} from './helpers/oracle.js';

const runIt = oracleAvailable('editor guard suite (e2fsprogs)', HAVE_E2FSPROGS);
const work = scratchDir('ext4wd-guard');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');

/** Damage written into an image file: descriptors and bitmaps, their checksums redone. */
class Damage {
  private readonly dev: FileDevice;
  readonly r: Ext4Reader;
  constructor(readonly img: string) {
    this.dev = FileDevice.open(img, true);
    this.r = Ext4Reader.open(this.dev);
  }
  private block(n: number): Uint8Array {
    return new Uint8Array(this.r.readBlocks(n));
  }
  private put(n: number, b: Uint8Array): void {
    this.dev.write(n * this.r.blockSize, b);
  }
  gd(g: number): GroupDesc {
    const { block, offset } = this.r.descLocation(g);
    return decodeGroupDesc(this.block(block), offset, this.r.descSize);
  }
  /** Changes descriptor `g`, its checksum redone (as a damaged but self-consistent descriptor). */
  desc(g: number, change: (d: GroupDesc) => void): void {
    const { block, offset } = this.r.descLocation(g);
    const b = this.block(block);
    const d = decodeGroupDesc(b, offset, this.r.descSize);
    change(d);
    encodeGroupDesc(b, offset, this.r.descSize, d);
    putGroupDescChecksum(b, offset, this.r.descChecksum(g, b, offset) ?? 0);
    this.put(block, b);
  }
  /** Clears block `blk`'s bit in its group's block bitmap (the bitmap checksum redone). */
  freeBlockBit(blk: number): void {
    const r = this.r;
    const g = Math.floor((blk - r.sb.s_first_data_block) / r.sb.s_blocks_per_group);
    const bit = blk - r.sb.s_first_data_block - g * r.sb.s_blocks_per_group;
    const d = this.gd(g);
    const bm = this.block(d.blockBitmap);
    bm[bit >>> 3] = bm[bit >>> 3]! & ~(1 << (bit & 7));
    this.put(d.blockBitmap, bm);
    if (r.csum) this.desc(g, (x) => (x.blockBitmapCsum = bitmapChecksum(r.csumSeed, bm, r.sb.s_blocks_per_group)));
  }
  /** Sets block `blk`'s bit in its group's block bitmap (the bitmap checksum redone, the counts not). */
  useBlockBit(blk: number): void {
    const r = this.r;
    const g = Math.floor((blk - r.sb.s_first_data_block) / r.sb.s_blocks_per_group);
    const bit = blk - r.sb.s_first_data_block - g * r.sb.s_blocks_per_group;
    const d = this.gd(g);
    const bm = this.block(d.blockBitmap);
    bm[bit >>> 3] = bm[bit >>> 3]! | (1 << (bit & 7));
    this.put(d.blockBitmap, bm);
    if (r.csum) this.desc(g, (x) => (x.blockBitmapCsum = bitmapChecksum(r.csumSeed, bm, r.sb.s_blocks_per_group)));
  }
  /** Clears inode `ino`'s bit in its group's inode bitmap (the bitmap checksum redone). */
  freeInodeBit(ino: number): void {
    const r = this.r;
    const ipg = r.sb.s_inodes_per_group;
    const g = Math.floor((ino - 1) / ipg);
    const bit = (ino - 1) % ipg;
    const d = this.gd(g);
    const bm = this.block(d.inodeBitmap);
    bm[bit >>> 3] = bm[bit >>> 3]! & ~(1 << (bit & 7));
    this.put(d.inodeBitmap, bm);
    if (r.csum) this.desc(g, (x) => (x.inodeBitmapCsum = bitmapChecksum(r.csumSeed, bm, ipg)));
  }
  /**
   * Makes `keep` the only block the bitmaps and counts call free: every other free block of the one
   * group marked in use, the group and superblock counting one free block.
   */
  onlyFree(keep: number): void {
    const r = this.r;
    expect(r.groupCount).toBe(1);
    const d = this.gd(0);
    const bm = this.block(d.blockBitmap);
    bm.fill(0xff);
    const bit = keep - r.sb.s_first_data_block;
    bm[bit >>> 3] = bm[bit >>> 3]! & ~(1 << (bit & 7));
    this.put(d.blockBitmap, bm);
    this.desc(0, (x) => {
      x.freeBlocks = 1;
      if (r.csum) x.blockBitmapCsum = bitmapChecksum(r.csumSeed, bm, r.sb.s_blocks_per_group);
    });
    const sb = decodeSuperblock(this.dev.read(1024, 1024));
    setFreeBlocksCount(sb, 1);
    this.dev.write(1024, encodeSuperblock(sb));
  }
  close(): void {
    this.dev.close();
  }
}

/** Applies `fn` to the image (through a Damage) and closes it. */
function damage(img: string, fn: (d: Damage) => void): void {
  const d = new Damage(img);
  try {
    fn(d);
  } finally {
    d.close();
  }
}

/** The image with files to damage: /a (a 3-block file), /d (a directory). */
function image(args: string[] = [], size = '64M'): string {
  const img = mkfsImage(work, size, args);
  editImage(
    img,
    (e) => {
      e.writeFile('/a', new Uint8Array(3 * 4096).fill(7));
      e.mkdir('/d');
    },
    { sync: false, timestamp: 0 },
  );
  expectClean(img);
  return img;
}

/** The edit is refused with NEEDS_CHECK naming `what`, and the image is left byte for byte as it was. */
function expectRefused(img: string, edit: (e: Ext4Editor) => void, what: RegExp): void {
  const before = sha(img);
  let err: unknown;
  try {
    editImage(img, edit, { sync: false, timestamp: 0 });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(Ext4Error);
  expect((err as Ext4Error).code, (err as Error).message).toBe('NEEDS_CHECK');
  expect((err as Error).message).toMatch(what);
  expect(sha(img)).toBe(before);
}

function fileBlocks(img: string, p: string): number[] {
  const dev = FileDevice.open(img);
  try {
    const r = Ext4Reader.open(dev);
    const ino = r.lookup(p);
    const out: number[] = [];
    for (const run of blockRuns(r, ino, r.inode(ino))) for (let k = 0; k < run.len; k++) out.push(run.pblk + k);
    return out;
  } finally {
    dev.close();
  }
}

describe.runIf(runIt)('the editor refuses a group the kernel would refuse at mount', () => {
  it('a block bitmap on the group descriptors', () => {
    const img = image();
    damage(img, (d) => d.desc(0, (x) => (x.blockBitmap = 1)));
    expectRefused(img, (e) => e.mkdir('/x'), /group 0's block bitmap \(block 1\) overlaps a superblock or descriptor/);
  });

  it('an inode bitmap outside the file system', () => {
    const img = image();
    damage(img, (d) => d.desc(0, (x) => (x.inodeBitmap = d.r.blocksCount + 10)));
    expectRefused(img, (e) => e.mkdir('/x'), /group 0's inode bitmap .* lies outside the file system/);
  });

  it('an inode bitmap outside its group without flex_bg', () => {
    const img = image(['-O', '^flex_bg', '-b', '1024']);
    damage(img, (d) => d.desc(0, (x) => (x.inodeBitmap = d.gd(1).inodeBitmap)));
    expectRefused(img, (e) => e.writeFile('/new', 'x'), /group 0's inode bitmap .* lies outside the group/);
  });

  it('an inode table overlapping the group bitmaps', () => {
    const img = image(['-O', '^flex_bg']);
    damage(img, (d) => d.desc(0, (x) => (x.inodeTable = x.inodeBitmap)));
    // Changing an inode of the group writes into its table: refused too, not only allocating.
    expectRefused(img, (e) => e.chmod('/a', 0o600), /group 0's inode bitmap .* overlaps its inode table/);
  });

  it('an inode table running past the end of the file system', () => {
    const img = image();
    damage(img, (d) => d.desc(0, (x) => (x.inodeTable = d.r.blocksCount - 2)));
    expectRefused(img, (e) => e.mkdir('/x'), /group 0's inode table .* lies outside the file system/);
  });

  it('only the groups an edit touches are looked at', () => {
    // 8 groups of 1 KiB blocks: the last group's damage is not in the way of an edit in group 0.
    const img = image(['-b', '1024']);
    damage(img, (d) => d.desc(d.r.groupCount - 1, (x) => (x.inodeBitmap = d.r.blocksCount + 10)));
    editImage(img, (e) => e.writeFile('/x', 'small'), { sync: false, timestamp: 0 });
    const dev = FileDevice.open(img);
    try {
      const r = Ext4Reader.open(dev);
      expect(Buffer.from(r.readFileBytes(r.lookup('/x'))).toString()).toBe('small');
    } finally {
      dev.close();
    }
  });
});

describe.runIf(runIt)('the editor hands out nothing in use', () => {
  it('a block bitmap calling the inode table free', () => {
    const img = image();
    let table = 0;
    damage(img, (d) => {
      table = d.gd(0).inodeTable;
      d.freeBlockBit(table + 1);
    });
    expectRefused(
      img,
      (e) => e.writeFile('/x', 'data'),
      new RegExp(`block ${table + 1} \\(group 0's inode table\\) free`),
    );
  });

  it("a block bitmap calling a file's block free: replacing the file is refused", () => {
    const img = image();
    const blocks = fileBlocks(img, '/a');
    damage(img, (d) => d.freeBlockBit(blocks[1]!));
    // The old content would be freed and its block handed out again to the new content.
    expectRefused(
      img,
      (e) => e.writeFile('/a', new Uint8Array(8192).fill(1)),
      new RegExp(`block ${blocks[1]} is in use but group \\d+'s block bitmap marks it free`),
    );
    expectRefused(img, (e) => e.rm('/a'), new RegExp(`block ${blocks[1]} is in use`));
  });

  it("a block bitmap calling a directory's own block free: growing the directory is refused", () => {
    const img = mkfsImage(work, '8M', ['-b', '1024']);
    editImage(img, (e) => e.mkdir('/d'), { sync: false, timestamp: 0 });
    expectClean(img);
    const [own] = fileBlocks(img, '/d');
    // The only block called free is the directory's own: the allocator's search wraps around to it.
    damage(img, (d) => d.onlyFree(own!));
    expectRefused(
      img,
      (e) => {
        for (let k = 0; k < 100; k++) e.writeFile(`/d/${'n'.repeat(40)}${k}`, new Uint8Array(0));
      },
      new RegExp(`block ${own} of directory \\d+ is free in its group's bitmap`),
    );
  });

  it('an inode bitmap calling an inode in use free', () => {
    const img = image();
    let ino = 0;
    damage(img, (d) => {
      ino = d.r.lookup('/a');
      d.freeInodeBit(ino);
    });
    // The next inode the allocator would take is /a's.
    expectRefused(
      img,
      (e) => e.mkdir('/x'),
      new RegExp(`inode ${ino} is free in its group's bitmap but its record is in use`),
    );
  });

  it('an inode freed the ordinary way is taken again, and the image stays clean', () => {
    const img = image();
    editImage(img, (e) => e.rm('/a'), { sync: false, timestamp: 0 });
    editImage(img, (e) => e.writeFile('/b', 'again'), { sync: false, timestamp: 0 });
    expectClean(img);
  });
});

/** A sample invocation of every command of the table (image first, as the CLI takes it). */
function samples(img: string, host: string): Record<string, string[]> {
  return {
    write: ['write', img, '/w', '--data', 'x'],
    mkdir: ['mkdir', img, '/m'],
    rm: ['rm', '-r', img, '/d'],
    mv: ['mv', img, '/w', '/w2'],
    ln: ['ln', '-s', img, '/a', '/link'],
    chmod: ['chmod', img, '600', '/a'],
    chown: ['chown', img, '1:1', '/a'],
    touch: ['touch', img, '/t'],
    truncate: ['truncate', img, '--size', '1K', '/a'],
    setfattr: ['setfattr', img, '-n', 'user.k', '-v', 'v', '/a'],
    'cp-in': ['cp-in', img, host, '/in'],
  };
}

describe.runIf(runIt)('--check: the full check first', () => {
  const host = path.join(work, 'host');
  fs.mkdirSync(host, { recursive: true });
  fs.writeFileSync(path.join(host, 'f'), 'host file');

  /**
   * Damage no group check of an edit near the root sees: the last block of the file system, free,
   * marked in use (e2fsck: block bitmap differences, free counts wrong).
   */
  function subtlyDamaged(): string {
    const img = image();
    damage(img, (d) => d.useBlockBit(d.r.blocksCount - 1));
    expect(fsck(img).status).not.toBe(0);
    return img;
  }

  it('every editing command refuses a damaged image with --check, and edits a clean one', () => {
    const bad = subtlyDamaged();
    const before = sha(bad);
    const clean = image();
    const names = Object.keys(COMMANDS);
    expect(Object.keys(samples(bad, host)).sort()).toEqual([...names].sort());
    for (const name of names) {
      const r = cli([...samples(bad, host)[name]!, '--check', '--json', '--no-sync']);
      expect(r.status, `${name}: ${r.stderr}`).toBe(1);
      expect((JSON.parse(r.stdout.trim()) as { code: string }).code, name).toBe('NEEDS_CHECK');
      expect(r.stderr).toMatch(/the check finds .* nothing was written/);
      expect(sha(bad), name).toBe(before);
    }
    // Without --check the group checks find nothing in the way of this edit.
    expect(cli(['mkdir', bad, '/m', '--no-sync']).status).toBe(0);
    for (const name of names) {
      const r = cli([...samples(clean, host)[name]!, '--check', '--no-sync']);
      expect(r.status, `${name}: ${r.stderr}`).toBe(0);
    }
    expectClean(clean);
  });

  it('edit --script --check', () => {
    const bad = subtlyDamaged();
    const before = sha(bad);
    const script = path.join(work, 'script');
    fs.writeFileSync(script, 'mkdir /s\nwrite /s/f --data hi\n');
    const r = cli(['edit', bad, '--script', script, '--check', '--no-sync']);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/\[NEEDS_CHECK\]/);
    expect(sha(bad)).toBe(before);
    const clean = image();
    expect(cli(['edit', clean, '--script', script, '--check', '--no-sync']).status).toBe(0);
    expectClean(clean);
  });

  it('seed and materialize --check refuse a damaged input and write nothing', () => {
    const bad = subtlyDamaged();
    editImage(bad, (e) => e.mkdir('/root'), { sync: false, timestamp: 0 });
    const out = path.join(work, 'seed-out.img');
    let r = cli(['seed', bad, out, '--check']);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/\[NEEDS_CHECK\]/);
    expect(fs.existsSync(out)).toBe(false);
    expect(() => buildWorkSeedImage(bad, out, { check: true })).toThrowError(
      expect.objectContaining({ code: 'NEEDS_CHECK' }),
    );
    expect(fs.existsSync(out)).toBe(false);
    const disk = path.join(work, 'disk.img');
    r = cli(['materialize', disk, '--size', '64M', '--seed', bad, '--check']);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/\[NEEDS_CHECK\]/);
    expect(fs.existsSync(disk)).toBe(false);
    expect(() => materializeWorkDisk(bad, disk, 64 << 20, { check: true })).toThrowError(
      expect.objectContaining({ code: 'NEEDS_CHECK' }),
    );
    expect(fs.existsSync(disk)).toBe(false);
    // A clean input goes through.
    const clean = image();
    editImage(
      clean,
      (e) => {
        e.mkdir('/root');
        e.writeFile('/root/.profile', 'x');
      },
      { sync: false, timestamp: 0 },
    );
    expect(cli(['seed', clean, out, '--check', '--no-sync']).status).toBe(0);
    expectClean(out);
    expect(cli(['materialize', disk, '--size', '64M', '--seed', out, '--check', '--no-sync']).status).toBe(0);
    expectClean(disk);
  });
});

// ---- the corpus ----

const CORPUS = path.resolve(__dirname, '../../shared/corpus/e2fsprogs');
const haveCorpus = fs.existsSync(path.join(CORPUS, 'INDEX.tsv'));

/** The corrupt-category images of the e2fsprogs corpus. */
function corruptImages(): string[] {
  if (!haveCorpus) return [];
  const rows = fs.readFileSync(path.join(CORPUS, 'INDEX.tsv'), 'utf8').trim().split('\n');
  const ci = rows.shift()!.split('\t').indexOf('category');
  return rows
    .map((row) => row.split('\t'))
    .filter((c) => c[ci]!.startsWith('corrupt') && fs.existsSync(path.join(CORPUS, c[0]!, 'image.gz')))
    .map((c) => c[0]!);
}

/**
 * What e2fsck -fn finds: the questions it answers "no" to (each a problem it would fix), and whether it
 * got to the end. An edit makes an image worse when it adds questions.
 */
function findings(img: string): { status: number; questions: number; text: string } {
  const r = spawnSync('e2fsck', ['-fn', img], { encoding: 'utf8', timeout: 120_000 });
  const text = r.stdout + r.stderr;
  return { status: r.status ?? -1, questions: (text.match(/\? no\b/g) ?? []).length, text };
}

/**
 * Damage a per-group look cannot see: a block that another inode's map claims (through indirect
 * blocks lying on metadata) and the bitmap calls free. Only the full check (--check) finds it.
 */
const NEEDS_FULL_CHECK = new Set(['f_ind_inode_collision']);

describe.runIf(runIt && haveCorpus)('the editor on every corrupt corpus image: refused, or no worse', () => {
  const names = corruptImages();
  const tally = { refused: 0, noWorse: 0, needsCheck: [] as string[] };
  afterAll(() => {
    if (names.length)
      console.log(
        `editor on ${names.length} corrupt corpus images: ${tally.refused} refused, ${tally.noWorse} edited no worse, ` +
          `${tally.needsCheck.length} only refused with --check (${tally.needsCheck.join(', ')})`,
      );
  });
  it('found them', () => expect(names.length).toBeGreaterThan(150));
  const script = path.join(work, 'corpus-script');
  fs.writeFileSync(script, 'mkdir -p /guard/sub\nwrite /guard/sub/f --data hello\n');

  for (const name of names)
    it(
      name,
      () => {
        const bytes = zlib.gunzipSync(fs.readFileSync(path.join(CORPUS, name, 'image.gz')));
        const img = path.join(work, `${name}.img`);
        fs.writeFileSync(img, bytes);
        try {
          const edit = (extra: string[]) =>
            spawnSync(
              process.execPath,
              [CLI, 'edit', img, '--script', script, '--json', '--no-sync', '--timestamp', '0', ...extra],
              {
                encoding: 'utf8',
                timeout: 60_000,
              },
            );
          if (NEEDS_FULL_CHECK.has(name)) {
            const r = edit(['--check']);
            expect(r.status, r.stderr).toBe(1);
            expect((JSON.parse(r.stdout.trim().split('\n').pop()!) as { code: string }).code).toBe('NEEDS_CHECK');
            expect(Buffer.compare(fs.readFileSync(img), bytes)).toBe(0);
            tally.needsCheck.push(name);
            return;
          }
          const r = edit([]);
          // Exit 1 is an Ext4Error (its code on stdout); anything else (70: another exception; null: a
          // hang the timeout ended) fails.
          expect([0, 1], `${name}: exit ${r.status} ${r.signal ?? ''} ${r.stderr}`).toContain(r.status);
          if (r.status === 1) {
            expect((JSON.parse(r.stdout.trim().split('\n').pop()!) as { code: string }).code).toMatch(/^[A-Z_]+$/);
            tally.refused++;
            return;
          }
          const after = findings(img);
          fs.writeFileSync(img, bytes);
          const before = findings(img);
          expect(
            after.questions,
            `${name}: e2fsck -fn before:\n${before.text}\nafter:\n${after.text}`,
          ).toBeLessThanOrEqual(before.questions);
          // A clean image stays clean.
          if (before.status === 0) expect(after.status, after.text).toBe(0);
          tally.noWorse++;
        } finally {
          fs.rmSync(img, { force: true });
        }
      },
      300_000,
    );
});

describe.runIf(runIt)('inode table blocks in the never-initialized part', () => {
  it('start as zeros unless the bitmap calls one of their records in use (then the record is kept)', () => {
    const img = mkfsImage(work, '16M', []);
    const r0 = Ext4Reader.open(FileDevice.open(img));
    const perBlock = r0.blockSize / r0.inodeSize;
    const unused = r0.groupDesc(0).itableUnused;
    const ipg = r0.sb.s_inodes_per_group;
    // The first table block wholly past the initialized part, and a record in it the bitmap calls in use.
    const firstFree = Math.ceil((ipg - unused) / perBlock) * perBlock;
    const kept = firstFree + 3 + 1;
    expect(firstFree + perBlock).toBeLessThan(ipg);
    for (const cmd of [`seti <${kept}>`, `sif <${kept}> mode 0100600`, `sif <${kept}> links_count 1`])
      expect(run('debugfs', ['-w', '-R', cmd, img]).status).toBe(0);
    expect(Ext4Reader.open(FileDevice.open(img)).groupDesc(0).itableUnused).toBe(unused);
    // Enough new files to take every free record before `kept` and past it.
    const n = firstFree + perBlock - (ipg - unused);
    editImage(
      img,
      (e) => {
        for (let k = 0; k < n; k++) e.writeFile(`/f${k}`, `file ${k}`);
      },
      { sync: false, timestamp: 0 },
    );
    const stat = run('debugfs', ['-R', `stat <${kept}>`, img]).stdout;
    expect(stat).toMatch(/Mode:\s+0600/);
    expect(stat).toMatch(/Links: 1/);
    const r = Ext4Reader.open(FileDevice.open(img));
    for (let k = 0; k < n; k++) expect(Buffer.from(r.readFileBytes(r.lookup(`/f${k}`))).toString()).toBe(`file ${k}`);
  });
});
