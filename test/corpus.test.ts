/**
 * Robustness on the shared corpus (230 e2fsprogs test images, ext4-view and go-ext4 images): opening
 * and walking every image finishes quickly and either succeeds or fails with an Ext4Error; never a
 * TypeError/RangeError or a hang. Valid images must read completely.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { spawnSync } from 'node:child_process';
import { Ext4Reader } from '../src/fs/reader.js';
import { readInfo } from '../src/check/info.js';
import { Ext4Error } from '../src/core/errors.js';
import { BufferDevice } from '../src/io/device.js';
import { walkImage } from './helpers/walk.js';
import { IN_CI, HAVE_E2FSPROGS, cli, fsck, oracleAvailable, run, scratchDir } from './helpers/oracle.js';
import { extract } from '../src/tree/extract.js';
import { snapshot } from './helpers/tree.js';

const CORPUS = path.resolve(__dirname, '../../shared/corpus');
const have = fs.existsSync(path.join(CORPUS, 'e2fsprogs', 'INDEX.tsv'));
if (!have && !IN_CI) console.warn('skipping corpus suite: ../shared/corpus not found');

interface Img {
  name: string;
  file: string;
  category: string;
}

function images(): Img[] {
  if (!have) return [];
  const out: Img[] = [];
  const rows = fs
    .readFileSync(path.join(CORPUS, 'e2fsprogs', 'INDEX.tsv'), 'utf8')
    .trim()
    .split('\n');
  const header = rows.shift()!.split('\t');
  const ci = header.indexOf('category');
  for (const row of rows) {
    const cols = row.split('\t');
    const file = path.join(CORPUS, 'e2fsprogs', cols[0]!, 'image.gz');
    if (fs.existsSync(file)) out.push({ name: cols[0]!, file, category: cols[ci] ?? '' });
  }
  for (const dir of ['ext4-view', 'go-ext4'])
    for (const f of fs.readdirSync(path.join(CORPUS, dir)).filter((n) => n.endsWith('.gz')))
      out.push({
        name: `${dir}/${f}`,
        file: path.join(CORPUS, dir, f),
        category: f.includes('journal') || f.includes('jbd2') ? 'valid-needs-journal-replay' : 'valid',
      });
  return out;
}

describe.runIf(have || IN_CI)('corpus: every image reads or fails cleanly', () => {
  const all = images();
  it('found the corpus', () => expect(all.length).toBeGreaterThan(200));
  for (const img of all) {
    it(`${img.name} (${img.category})`, () => {
      const bytes = zlib.gunzipSync(fs.readFileSync(img.file));
      const t0 = Date.now();
      let outcome = 'ok';
      for (const verify of [true, false]) {
        try {
          // The superblock summary (info) reads or fails cleanly too.
          if (verify) {
            try {
              readInfo(new BufferDevice(bytes));
            } catch (e) {
              if (!(e instanceof Ext4Error)) throw e;
            }
          }
          const r = Ext4Reader.open(new BufferDevice(bytes), { verifyChecksums: verify });
          const st = walkImage(r);
          if (img.category === 'valid' && verify && !img.name.includes('encrypt')) {
            const codes = [...st.errors.keys()].filter((c) => c !== 'UNSUPPORTED_FEATURE');
            expect(codes, `errors reading a valid image: ${JSON.stringify([...st.errors])}`).toEqual([]);
          }
        } catch (e) {
          if (!(e instanceof Ext4Error)) throw e;
          outcome = e.code;
          if (img.category === 'valid' && verify) throw e;
        }
      }
      // Replaying the journal in memory also reads or fails cleanly, corrupt journals included.
      try {
        walkImage(Ext4Reader.open(new BufferDevice(bytes), { replayJournal: true, verifyChecksums: false }));
      } catch (e) {
        if (!(e instanceof Ext4Error)) throw e;
      }
      expect(Date.now() - t0).toBeLessThan(20_000);
      void outcome;
    });
  }
});

describe.runIf((have || IN_CI) && oracleAvailable('corpus rdump comparison', HAVE_E2FSPROGS))(
  'corpus: extract / equals debugfs rdump on valid images',
  () => {
    const valid = images().filter((i) => i.category === 'valid');
    for (const img of valid) {
      it(img.name, () => {
        const dir = scratchDir('ext4wd-corpus');
        try {
          const file = path.join(dir, 'image');
          const bytes = zlib.gunzipSync(fs.readFileSync(img.file));
          fs.writeFileSync(file, bytes);
          const theirs = path.join(dir, 'theirs');
          const ours = path.join(dir, 'ours');
          fs.mkdirSync(theirs);
          fs.mkdirSync(ours);
          const rd = run('timeout', ['60', 'debugfs', '-R', `rdump / ${theirs}`, file]);
          expect(rd.status, rd.stderr).toBe(0);
          const res = extract(Ext4Reader.open(new BufferDevice(bytes)), '/', ours, { owners: false });
          // Encrypted contents are left out and named; debugfs dumps their ciphertext instead.
          for (const u of res.unreadable) {
            expect(u.code, u.path).toBe('UNSUPPORTED_FEATURE');
            fs.rmSync(path.join(theirs, u.path), { recursive: true, force: true });
          }
          const norm = (root: string) => {
            const m = new Map<string, string>();
            for (const [k, v] of snapshot(root)) {
              if (!['file', 'dir', 'symlink'].includes(v.type)) continue;
              m.set(
                k,
                JSON.stringify([
                  v.type,
                  // debugfs sets only the nine rwx bits (its mode_xlate); setuid, setgid and sticky are ours alone.
                  v.type === 'symlink' ? 0 : v.mode & 0o777,
                  v.size ?? null,
                  v.sha ?? null,
                  v.target ?? null,
                ]),
              );
            }
            return m;
          };
          const a = norm(ours);
          const b = norm(theirs);
          // debugfs writes a file per name and no special files; we do the same for the comparison.
          expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
          for (const [k, v] of b) {
            if (k === '/') continue;
            const [type, , size] = JSON.parse(v) as [string, number, number];
            const mine = JSON.parse(a.get(k)!) as [string, number, number];
            if (type === 'file' && size === 60 && mine[2] < 60) {
              // debugfs 1.47 writes the whole 60-byte inline area of an inline-data file, past i_size.
              const head = fs.readFileSync(path.join(theirs, k)).subarray(0, mine[2]);
              expect(Buffer.compare(head, fs.readFileSync(path.join(ours, k))), k).toBe(0);
              continue;
            }
            expect(a.get(k), k).toBe(v);
          }
        } finally {
          run('chmod', ['-R', 'u+rwx', dir]);
          fs.rmSync(dir, { recursive: true, force: true });
        }
      });
    }
  },
);

describe.runIf(have || IN_CI)('corpus: specific behaviours', () => {
  const load = (rel: string) => new Uint8Array(zlib.gunzipSync(fs.readFileSync(path.join(CORPUS, rel))));
  it('encrypted contents are refused with UNSUPPORTED_FEATURE naming encrypt', () => {
    const r = Ext4Reader.open(new BufferDevice(load('ext4-view/test_disk1.bin.gz')));
    const ino = r.lookup('/encrypted_dir');
    expect(() => r.readDir(ino)).toThrowError(
      expect.objectContaining({ code: 'UNSUPPORTED_FEATURE', message: expect.stringContaining('encrypt') as unknown }),
    );
  });
  it.runIf(HAVE_E2FSPROGS || IN_CI)(
    'an encrypted directory does not stop extract (debugfs rdump gives the rest), seed or mkfs --from names it',
    () => {
      const dir = scratchDir('ext4wd-encrypted');
      try {
        const img = path.join(dir, 'disk1.img');
        fs.writeFileSync(img, load('ext4-view/test_disk1.bin.gz'));
        // extract: everything but the encrypted directory, which is named; exit 1 (INCOMPLETE).
        const ours = path.join(dir, 'ours');
        const theirs = path.join(dir, 'theirs');
        fs.mkdirSync(ours);
        fs.mkdirSync(theirs);
        const r = cli(['extract', img, '/', ours, '--no-owners']);
        expect(r.status).toBe(1);
        expect(r.stderr).toContain('warning: /encrypted_dir: not extracted');
        expect(r.stderr).toContain('[INCOMPLETE]');
        run('debugfs', ['-R', `rdump / ${theirs}`, img]);
        const list = (d: string) =>
          run('find', [d, '-mindepth', '1'], { timeoutMs: 60_000 })
            .stdout.split('\n')
            .filter(Boolean)
            .map((p) => p.slice(d.length))
            .sort();
        const expected = list(theirs).filter((p) => !p.startsWith('/encrypted_dir'));
        expect(list(theirs).length - expected.length).toBe(2);
        expect(list(ours)).toEqual(expected);
        expect(expected.length).toBeGreaterThan(11_000);
        // seed and mkfs --from: refused, naming the entry, nothing left; --skip-unreadable leaves it out.
        for (const args of [
          ['seed', img, path.join(dir, 'seed.img'), '--path', '/'],
          ['mkfs', path.join(dir, 'copy.img'), '--size', '64M', '--from', img],
        ]) {
          const out = args[0] === 'seed' ? args[2]! : args[1]!;
          const refused = cli(args);
          expect(refused.status).toBe(1);
          expect(refused.stderr).toMatch(/\[UNSUPPORTED_FEATURE\]: \/encrypted_dir: .*encrypt/);
          expect(fs.existsSync(out)).toBe(false);
          const skipped = cli([...args, '--skip-unreadable']);
          expect(skipped.status, skipped.stderr).toBe(0);
          expect(skipped.stderr).toMatch(/warning: \/encrypted_dir: .*left out/);
          expect(fsck(out).status).toBe(0);
          expect(cli(['ls', out, '/']).stdout).not.toContain('encrypted_dir');
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  );
  it('an image whose journal needs recovery is read as it is on disk, with a warning', () => {
    const warnings: string[] = [];
    const r = Ext4Reader.open(new BufferDevice(load('ext4-view/test_disk_4k_block_journal.bin.gz')), {
      onWarning: (m) => warnings.push(m),
    });
    expect(warnings.join()).toMatch(/needs_recovery/);
    expect(walkImage(r).entries).toBeGreaterThan(0);
  });
  it.runIf(HAVE_E2FSPROGS || IN_CI)('cat equals debugfs cat on files of valid images', () => {
    const dir = scratchDir('ext4wd-cat');
    try {
      let compared = 0;
      for (const img of images().filter((i) => i.category === 'valid' && !i.name.startsWith('d_inline'))) {
        const bytes = zlib.gunzipSync(fs.readFileSync(img.file));
        const file = path.join(dir, 'img');
        fs.writeFileSync(file, bytes);
        const r = Ext4Reader.open(new BufferDevice(new Uint8Array(bytes)));
        let files: { name: string; ino: number }[] = [];
        try {
          files = r
            .readDir(2)
            .filter((e) => e.fileType === 1)
            .slice(0, 3)
            .map((e) => ({ name: Buffer.from(e.name).toString('latin1'), ino: e.inode }));
        } catch {
          continue;
        }
        for (const f of files) {
          if (!/^[\w.+-]+$/.test(f.name)) continue;
          let ours: Uint8Array;
          try {
            ours = r.readFileBytes(f.ino, 16 << 20);
          } catch {
            continue;
          }
          const theirs = spawnSync('timeout', ['20', 'debugfs', '-R', `cat /${f.name}`, file], {
            maxBuffer: 64 << 20,
          }).stdout;
          // debugfs prints the whole inline area of inline-data files; compare the file's own bytes.
          expect(Buffer.compare(Buffer.from(ours), theirs.subarray(0, ours.length)), `${img.name}:/${f.name}`).toBe(0);
          expect(
            theirs.length === ours.length || (theirs.length === 60 && ours.length < 60),
            `${img.name}:/${f.name} length`,
          ).toBe(true);
          compared++;
        }
      }
      expect(compared).toBeGreaterThan(10);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.runIf((have || IN_CI) && oracleAvailable('journal replay comparison', HAVE_E2FSPROGS))(
  'journal replay (in memory) equals e2fsck -fy recovery',
  () => {
    const cases: [string, string[]][] = [
      ['e2fsprogs/f_clear_orphan_file/image.gz', []],
      ['e2fsprogs/f_jnl_32bit/image.gz', []],
      ['e2fsprogs/f_jnl_64bit/image.gz', []],
      ['e2fsprogs/j_recover_csum2_32bit/image.gz', []],
      ['e2fsprogs/j_recover_csum2_64bit/image.gz', []],
      ['e2fsprogs/j_recover_csum3_64bit/image.gz', []],
      ['ext4-view/test_disk_4k_block_journal.bin.gz', []],
      // Its journal inode is zeroed: replay goes through the superblock's backup of the journal's map.
      // e2fsck also removes a stray /journal file there, which is a repair, not recovery.
      ['e2fsprogs/f_journal/image.gz', ['journal']],
    ];
    for (const [rel, extraOurs] of cases) {
      it(rel, () => {
        const dir = scratchDir('ext4wd-replay');
        try {
          const bytes = new Uint8Array(zlib.gunzipSync(fs.readFileSync(path.join(CORPUS, rel))));
          const file = path.join(dir, 'img');
          fs.writeFileSync(file, bytes);
          run('e2fsck', ['-fy', file]);
          const theirs = path.join(dir, 'theirs');
          const ours = path.join(dir, 'ours');
          fs.mkdirSync(theirs);
          fs.mkdirSync(ours);
          expect(run('timeout', ['60', 'debugfs', '-R', `rdump / ${theirs}`, file]).status).toBe(0);
          const warnings: string[] = [];
          const r = Ext4Reader.open(new BufferDevice(bytes), {
            replayJournal: true,
            onWarning: (m) => warnings.push(m),
          });
          expect(warnings.join()).toMatch(/replayed \d+ journal transaction/);
          extract(r, '/', ours, { owners: false });
          for (const x of extraOurs) fs.rmSync(path.join(ours, x), { recursive: true, force: true });
          const norm = (root: string) =>
            new Map(
              [...snapshot(root)]
                .filter(([, v]) => ['file', 'dir', 'symlink'].includes(v.type))
                .map(([k, v]) => [k, JSON.stringify([v.type, v.size ?? null, v.sha ?? null, v.target ?? null])]),
            );
          const a = norm(ours);
          const b = norm(theirs);
          expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
          for (const [k, v] of b) expect(a.get(k), k).toBe(v);
          // Without replay the same image reads as it is on disk, with the warning.
          const plain: string[] = [];
          Ext4Reader.open(new BufferDevice(bytes), { onWarning: (m) => plain.push(m) });
          expect(plain.join()).toMatch(/needs_recovery/);
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      });
    }
  },
);
