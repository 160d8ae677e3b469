/**
 * `check` against e2fsck -fn: the corpus (e2fsck's verdict recorded in INDEX.tsv) as the judge, images
 * we make and edit, and damage done on purpose where e2fsck is the reference.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { checkDevice, checkImage } from '../src/check/check.js';
import { BufferDevice } from '../src/io/device.js';
import { formatImage, writeAtomically } from '../src/mkfs/image.js';
import { formatDevice } from '../src/mkfs/format.js';
import { Ext4Editor } from '../src/edit/editor.js';
import { recoverJournal } from '../src/edit/recover.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { setInodeChecksum } from '../src/ext4/inode.js';
import { IN_CI, HAVE_E2FSPROGS, cli, fsck, oracleAvailable, run, scratchDir } from './helpers/oracle.js';

const CORPUS = path.resolve(__dirname, '../../shared/corpus');
const have = fs.existsSync(path.join(CORPUS, 'e2fsprogs', 'INDEX.tsv'));

/**
 * Corpus images e2fsck -fn finds problems in that check does not yet (listed in the README); and the
 * one clean image it cannot open (a zero inode size e2fsck replaces from a backup superblock).
 */
const KNOWN_MISSES = new Set(['f_ea_inode_fast_symlink', 'f_ea_value_crash', 'f_quota']);
const KNOWN_REFUSED_CLEAN = new Set(['f_zero_inode_size']);

const work = scratchDir('ext4wd-check');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe.runIf(have || IN_CI)('check against e2fsck -fn on the corpus', () => {
  const rows = fs
    .readFileSync(path.join(CORPUS, 'e2fsprogs', 'INDEX.tsv'), 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split('\t'));
  it('finds problems where e2fsck does (but the known misses) and none where it finds none', () => {
    const missed: string[] = [];
    const falsePositives: string[] = [];
    let problemImages = 0;
    let detected = 0;
    for (const c of rows) {
      const name = c[0]!;
      const file = path.join(CORPUS, 'e2fsprogs', name, 'image.gz');
      if (!fs.existsSync(file)) continue;
      // 4: errors left; 8: e2fsck could not check; 12: both; 124: e2fsck hangs on it.
      const e2fsckFinds = c[3] !== '0';
      let clean: boolean;
      try {
        clean = checkDevice(new BufferDevice(new Uint8Array(zlib.gunzipSync(fs.readFileSync(file))))).clean;
      } catch (e) {
        // Not checkable at all: a verdict of its own (exit 8), never a crash.
        expect((e as Error).name, `${name}: ${(e as Error).stack}`).toBe('Ext4Error');
        if (!e2fsckFinds && !KNOWN_REFUSED_CLEAN.has(name)) falsePositives.push(`${name} (refused)`);
        if (e2fsckFinds) {
          problemImages++;
          detected++;
        }
        continue;
      }
      if (e2fsckFinds) {
        problemImages++;
        if (!clean) detected++;
        else if (!KNOWN_MISSES.has(name)) missed.push(name);
      } else if (!clean) falsePositives.push(name);
    }
    expect(falsePositives).toEqual([]);
    expect(missed).toEqual([]);
    // The share found, for the README: 161 of 164 when this was written (the issue asks 95% at least).
    expect(detected / problemImages).toBeGreaterThanOrEqual(0.95);
  });
  it.runIf(HAVE_E2FSPROGS || IN_CI)(
    '--replay judges a dirty image as e2fsck -fn judges it once the journal is recovered',
    () => {
      const dirty = rows.filter(
        (c) =>
          c[12] === 'valid-needs-journal-replay' && c[0]!.startsWith('j_recover') && !c[0]!.includes('fast_commit'),
      );
      expect(dirty.length).toBeGreaterThan(2);
      for (const c of dirty) {
        const bytes = zlib.gunzipSync(fs.readFileSync(path.join(CORPUS, 'e2fsprogs', c[0]!, 'image.gz')));
        const asIs = checkDevice(new BufferDevice(new Uint8Array(bytes)));
        expect(
          asIs.warnings.map((w) => w.code),
          c[0],
        ).toContain('NEEDS_RECOVERY');
        const replayed = checkDevice(new BufferDevice(new Uint8Array(bytes)), { replay: true });
        expect(
          replayed.warnings.map((w) => w.code),
          c[0],
        ).not.toContain('NEEDS_RECOVERY');
        // The reference: the journal written home (recover), then e2fsck -fn.
        const img = path.join(work, `${c[0]}.img`);
        fs.writeFileSync(img, bytes);
        recoverJournal(img, { sync: false });
        expect(replayed.clean, c[0]).toBe(run('e2fsck', ['-fn', img]).status === 0);
      }
    },
  );
  it('the known misses are still missed (a fixed one comes off the list)', () => {
    for (const name of KNOWN_MISSES) {
      const file = path.join(CORPUS, 'e2fsprogs', name, 'image.gz');
      let clean = true;
      try {
        clean = checkDevice(new BufferDevice(new Uint8Array(zlib.gunzipSync(fs.readFileSync(file))))).clean;
      } catch {
        clean = false;
      }
      expect(clean, name).toBe(true);
    }
  });
});

describe.runIf(oracleAvailable('check on made and damaged images', HAVE_E2FSPROGS))('check on images we make', () => {
  const make = (name: string, opts: string[]) => {
    const img = path.join(work, name);
    fs.rmSync(img, { force: true });
    run('truncate', ['-s', '64M', img]);
    const tree = path.join(work, 'tree');
    if (!fs.existsSync(tree)) {
      fs.mkdirSync(path.join(tree, 'a/b/c'), { recursive: true });
      for (let k = 0; k < 40; k++) fs.writeFileSync(path.join(tree, 'a', `f${k}`), Buffer.alloc(k * 500, k));
      fs.writeFileSync(path.join(tree, 'a/b/c/big'), Buffer.alloc(3 << 20, 7));
      fs.symlinkSync('a/b/c/big', path.join(tree, 'link'));
      fs.linkSync(path.join(tree, 'a/f3'), path.join(tree, 'hard'));
    }
    const r = run('mkfs.ext4', ['-q', '-F', ...opts, '-d', tree, img]);
    expect(r.status, r.stderr).toBe(0);
    return img;
  };
  const e2fsckClean = (img: string) => run('e2fsck', ['-fn', img]).status === 0;

  it('mkfs.ext4 images of several option sets, ours and edited ones are clean, as e2fsck says', () => {
    const images = [
      make('default.img', []),
      make('1k.img', ['-b', '1024']),
      make('ext3.img', ['-t', 'ext3']),
      make('ext2.img', ['-t', 'ext2']),
      make('inline.img', ['-O', 'inline_data']),
      make('nocsum.img', ['-O', '^metadata_csum,uninit_bg']),
      make('128.img', ['-I', '128']),
    ];
    const ours = path.join(work, 'ours.img');
    formatImage(ours, { sizeBytes: 256 << 20 });
    images.push(ours);
    const edited = path.join(work, 'edited.img');
    fs.copyFileSync(images[0]!, edited);
    const ed = Ext4Editor.open(edited);
    ed.mkdir('/new/deep', { parents: true });
    for (let k = 0; k < 200; k++) ed.writeFile(`/new/deep/f${k}`, Buffer.alloc(k * 37, 1));
    ed.rm('/a/b', { recursive: true });
    ed.commit();
    ed.close();
    images.push(edited);
    for (const img of images) {
      expect(e2fsckClean(img), img).toBe(true);
      const res = checkImage(img);
      expect(res.problems, img).toEqual([]);
    }
  });

  it('damage done on purpose is found, as e2fsck finds it', () => {
    const base = make('damage.img', []);
    const r = Ext4Reader.open(FileDevice.open(base));
    const fileIno = r.lookup('/a/f10');
    const dirIno = r.lookup('/a/b');
    const loc = (ino: number) => r.inodeLocation(ino);
    const gd0 = r.groupDesc(0);
    const bs = r.blockSize;
    const cases: [string, (b: Buffer) => void, string][] = [
      // A link count one too high (the inode's checksum redone by e2fsck's rules would be wrong too).
      [
        'link count',
        (b) => b.writeUInt16LE(b.readUInt16LE(off(loc(fileIno)) + 0x1a) + 1, off(loc(fileIno)) + 0x1a),
        'LINK_COUNT|INODE_CHECKSUM',
      ],
      // The block bitmap says the superblock and descriptors are free.
      ['block bitmap', (b) => (b[gd0.blockBitmap * bs] = 0), 'BLOCK_BITMAP|BITMAP_CHECKSUM'],
      // An inode bitmap with a used inode marked free.
      ['inode bitmap', (b) => (b[gd0.inodeBitmap * bs + 1] = 0), 'INODE_BITMAP|BITMAP_CHECKSUM'],
      // Bit flips in a directory's inode record.
      ['inode bit flips', (b) => void (b[off(loc(dirIno)) + 0x28 + 4]! ^= 0x5a), 'INODE_CHECKSUM|INODE_MAP'],
      // The image cut short inside its inode table.
      ['truncated', () => {}, '[A-Z]'],
    ];
    function off(l: { block: number; offset: number }): number {
      return l.block * bs + l.offset;
    }
    for (const [label, damage, codes] of cases) {
      const img = path.join(work, `damaged-${label.replace(/ /g, '-')}.img`);
      const bytes = fs.readFileSync(base);
      damage(bytes);
      fs.writeFileSync(img, label === 'truncated' ? bytes.subarray(0, 1 << 20) : bytes);
      expect(e2fsckClean(img), label).toBe(false);
      const res = checkImage(img);
      expect(res.clean, label).toBe(false);
      expect(res.problems.map((p) => p.code).join(' '), label).toMatch(new RegExp(codes));
    }
  });

  it('damage to the inodes pass 1 checks in place (files, fast symlinks, directories) is found, checksums redone', () => {
    const base = make('damage-quick.img', []);
    const r = Ext4Reader.open(FileDevice.open(base));
    const bs = r.blockSize;
    const size = r.inodeSize;
    const at = (ino: number) => {
      const l = r.inodeLocation(ino);
      return l.block * bs + l.offset;
    };
    const file = r.lookup('/a/f10');
    const other = r.lookup('/a/f11');
    const link = r.lookup('/link');
    const dir = r.lookup('/a/b');
    // i_block of an extent-mapped inode: the header, then extents of 12 bytes (pblk low word at +8).
    const extent0 = 0x28 + 12;
    const cases: [string, [number, (b: Buffer, o: number) => void][], string][] = [
      ['i_blocks', [[file, (b, o) => b.writeUInt32LE(b.readUInt32LE(o + 0x1c) + 8, o + 0x1c)]], 'INODE_BLOCKS'],
      ['size before the last block', [[file, (b, o) => b.writeUInt32LE(0, o + 4)]], 'INODE_SIZE'],
      ['extent outside the file system', [[file, (b, o) => b.writeUInt16LE(0xffff, o + extent0 + 6)]], 'INODE_MAP'],
      ['empty extent', [[file, (b, o) => b.writeUInt16LE(0, o + extent0 + 4)]], 'INODE_MAP'],
      ['deletion time', [[file, (b, o) => b.writeUInt32LE(1, o + 0x14)]], 'INODE_DTIME'],
      [
        'block of another file',
        [[other, (b, o) => b.writeUInt32LE(b.readUInt32LE(at(file) + extent0 + 8), o + extent0 + 8)]],
        'BLOCK_CLAIMED_TWICE',
      ],
      ['NUL in a fast symlink', [[link, (b, o) => (b[o + 0x28 + 2] = 0)]], 'SYMLINK'],
      ['directory size', [[dir, (b, o) => b.writeUInt32LE(b.readUInt32LE(o + 4) + 1, o + 4)]], 'INODE_SIZE'],
      ['indexed file', [[file, (b, o) => b.writeUInt32LE(b.readUInt32LE(o + 0x20) | 0x1000, o + 0x20)]], 'INODE_FLAGS'],
    ];
    for (const [label, edits, code] of cases) {
      const bytes = fs.readFileSync(base);
      for (const [ino, edit] of edits) {
        edit(bytes, at(ino));
        setInodeChecksum(r.csumSeed, ino, bytes, at(ino), size);
      }
      const img = path.join(work, `damaged-quick-${label.replace(/ /g, '-')}.img`);
      fs.writeFileSync(img, bytes);
      expect(e2fsckClean(img), label).toBe(false);
      const res = checkImage(img);
      expect(
        res.problems.map((p) => p.code),
        label,
      ).toContain(code);
      expect(
        res.problems.map((p) => p.code),
        label,
      ).not.toContain('INODE_CHECKSUM');
    }
  });

  it('--verify: mkfs, seed and materialize check the new image before renaming it; edits are checked after', () => {
    const src = make('verify-src.img', []);
    for (const args of [
      ['mkfs', path.join(work, 'v1.img'), '--size', '64M', '--from', src, '--verify'],
      ['seed', src, path.join(work, 'v2.img'), '--path', '/a', '--verify'],
      ['materialize', path.join(work, 'v3.img'), '--size', '1G', '--seed', path.join(work, 'v2.img'), '--verify'],
      ['mkdir', path.join(work, 'v3.img'), '/x', '--verify'],
    ]) {
      const r = cli(args);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    for (const f of ['v1.img', 'v2.img', 'v3.img']) expect(fsck(path.join(work, f)).status, f).toBe(0);
    // A writer that leaves a broken file system: refused, nothing at the target.
    const target = path.join(work, 'broken.img');
    expect(() =>
      writeAtomically(
        target,
        (dev) => {
          dev.truncate(16 << 20);
          formatDevice(dev, { sizeBytes: 16 << 20 });
          const r = Ext4Reader.open(dev);
          dev.write(r.groupDesc(0).inodeBitmap * r.blockSize, new Uint8Array(1));
        },
        { verify: true, sync: false },
      ),
    ).toThrowError(
      expect.objectContaining({ code: 'CORRUPT', message: expect.stringContaining('INODE_BITMAP') as unknown }),
    );
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.readdirSync(work).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    // An edit of an image that was already damaged where the edit does not look (unused inodes the
    // inode bitmap calls in use): committed, then reported (exit 1, CORRUPT).
    const damaged = path.join(work, 'v4.img');
    const bytes = fs.readFileSync(src);
    const r = Ext4Reader.open(new BufferDevice(new Uint8Array(bytes)));
    const inodeBitmap = r.groupDesc(0).inodeBitmap * r.blockSize;
    expect(bytes[inodeBitmap + 12]).toBe(0);
    bytes[inodeBitmap + 12] = 0xff;
    fs.writeFileSync(damaged, bytes);
    const edited = cli(['mkdir', damaged, '/y', '--verify']);
    expect(edited.status).toBe(1);
    expect(edited.stderr).toMatch(/\[CORRUPT\].*after the edit the image fails its check/);
    // Damage where the edit would write (inodes in use the bitmap calls free): refused before writing.
    const inUseFree = path.join(work, 'v5.img');
    const before = fs.readFileSync(src);
    before[inodeBitmap + 1] = 0;
    fs.writeFileSync(inUseFree, before);
    const refused = cli(['mkdir', inUseFree, '/y', '--verify']);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(/\[NEEDS_CHECK\]/);
    expect(fs.readFileSync(inUseFree).equals(before)).toBe(true);
  });

  it('the CLI exits 0 clean, 4 with problems, 8 when it cannot check; --json lists them', () => {
    const img = make('cli.img', []);
    const ok = cli(['check', img]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/clean/);
    const bad = path.join(work, 'cli-bad.img');
    const bytes = fs.readFileSync(img);
    const r = Ext4Reader.open(new BufferDevice(new Uint8Array(bytes)));
    bytes[r.groupDesc(0).inodeBitmap * r.blockSize + 1] = 0;
    fs.writeFileSync(bad, bytes);
    const found = cli(['check', bad, '--json']);
    expect(found.status).toBe(4);
    const j = JSON.parse(found.stdout) as { problems: unknown[] };
    expect(j).toMatchObject({ checked: true, clean: false });
    expect(j.problems[0]).toMatchObject({ code: expect.any(String) as unknown, text: expect.any(String) as unknown });
    const junk = path.join(work, 'junk.img');
    fs.writeFileSync(junk, Buffer.alloc(1 << 20, 0x41));
    const not = cli(['check', junk]);
    expect(not.status).toBe(8);
    expect(not.stderr).toMatch(/\[BAD_MAGIC\]/);
  });
});

describe.runIf(have || IN_CI)('duplicate names', () => {
  it('names twice in a directory are DIR_DUPLICATE (f_dup_de); names whose hashes collide are not', () => {
    const dup = path.join(work, 'f_dup_de.img');
    fs.writeFileSync(dup, zlib.gunzipSync(fs.readFileSync(path.join(CORPUS, 'e2fsprogs/f_dup_de/image.gz'))));
    const texts = checkImage(dup)
      .problems.filter((p) => p.code === 'DIR_DUPLICATE')
      .map((p) => p.text);
    for (const n of ['mailcap.dpkg-old', 'fstab', 'localtime', 'resolv.conf'])
      expect(
        texts.some((t) => t.includes(`"${n}" appears twice`)),
        n,
      ).toBe(true);
    // n512789 and n749192 share a 32-bit FNV-1a hash: the duplicate check must compare the bytes.
    const img = path.join(work, 'collide.img');
    formatImage(img, { sizeBytes: 8 << 20, sync: false });
    const ed = Ext4Editor.open(img, { onWarning: () => {} });
    for (const n of ['n512789', 'n749192']) ed.writeFile(`/${n}`, new TextEncoder().encode(n));
    ed.commit();
    ed.close();
    expect(fsck(img).status).toBe(0);
    expect(checkImage(img).clean).toBe(true);
  });
});
