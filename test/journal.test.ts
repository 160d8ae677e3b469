/**
 * Commits through the journal and `recover`: the journal the editor writes (features the kernel would
 * give it, sequence numbers that only increase, a change larger than the journal refused), recovery of
 * the corpus's dirty journals compared with debugfs's journal_run and e2fsck -fy, orphan clean-up,
 * what is refused, and images the kernel left dirty.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { createHash } from 'node:crypto';
import { Ext4Editor, editImage } from '../src/edit/editor.js';
import { recoverJournal } from '../src/edit/recover.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { extract } from '../src/tree/extract.js';
import {
  HAVE_E2FSPROGS,
  IS_ROOT,
  oracleAvailable,
  run,
  scratchDir,
  haveTool,
  IN_CI,
  expectClean,
} from './helpers/oracle.js';
import { mount, umount } from './helpers/model.js';
import { snapshot } from './helpers/tree.js';
import { imageState } from './helpers/crash.js';

const runIt = oracleAvailable('journal suite (e2fsprogs)', HAVE_E2FSPROGS);
const CORPUS = path.resolve(__dirname, '../../shared/corpus');
const haveCorpus = fs.existsSync(CORPUS);
if (!haveCorpus && IN_CI) throw new Error('the corpus (../shared/corpus) is missing');
const asRoot = IS_ROOT && haveTool('mount');
const work = scratchDir('ext4wd-journal');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
let n = 0;
const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
const clean = expectClean;
function header(img: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of run('dumpe2fs', ['-h', img]).stdout.split('\n')) {
    const m = /^([^:]+):\s+(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}
function corpusImage(rel: string): string {
  const file = path.join(work, `c${n++}.img`);
  fs.writeFileSync(file, zlib.gunzipSync(fs.readFileSync(path.join(CORPUS, rel))));
  return file;
}
/** The tree as the reader sees it: type, size, content and link target per path (lost+found aside). */
function tree(img: string): Map<string, string> {
  const out = path.join(work, `t${n++}`);
  fs.mkdirSync(out);
  extract(Ext4Reader.open(FileDevice.open(img)), '/', out, { owners: false });
  const m = new Map<string, string>();
  for (const [k, v] of snapshot(out))
    if (['file', 'dir', 'symlink'].includes(v.type) && !k.startsWith('lost+found'))
      m.set(k, JSON.stringify([v.type, v.size ?? null, v.sha ?? null, v.target ?? null]));
  fs.rmSync(out, { recursive: true, force: true });
  return m;
}
/** dumpe2fs with what recovery tools legitimately differ in left out (times, journal bookkeeping). */
function layout(img: string): string {
  return run('dumpe2fs', [img])
    .stdout.split('\n')
    .filter(
      (l) =>
        !/^(Last|Lifetime|Checksum:|Journal (checksum|features|sequence)|Filesystem state|Mount count|Next check|Free (blocks|inodes):)/.test(
          l,
        ),
    )
    .join('\n');
}

describe.runIf(runIt)('commits through the journal', () => {
  it('a mkfs.ext4 journal gets the kernel’s features at the first commit; sequence numbers only increase', () => {
    for (const [opts, features] of [
      [['-b', '4096'], 'journal_64bit journal_checksum_v3'],
      [['-b', '1024', '-O', '^64bit'], 'journal_checksum_v3'],
      [['-O', '^metadata_csum'], 'journal_64bit'],
    ] as [string[], string][]) {
      const img = path.join(work, `j${n++}.img`);
      run('truncate', ['-s', '64M', img]);
      expect(run('mkfs.ext4', ['-q', '-F', ...opts, img]).status).toBe(0);
      expect(header(img)['Journal features']).toBe('(none)');
      const seq0 = Number(header(img)['Journal sequence']);
      for (let k = 0; k < 3; k++) editImage(img, (e) => e.writeFile(`/f${k}`, `${k}`));
      const h = header(img);
      expect(h['Journal features']).toBe(features);
      expect(Number(h['Journal sequence'])).toBe(seq0 + 3);
      expect(h['Journal start']).toBe('0');
      expect(h['Filesystem features']).not.toMatch(/needs_recovery/);
      clean(img);
    }
  });

  it('an atomic change larger than the journal is refused and nothing is written', () => {
    // 1 KiB blocks, the smallest journal mkfs.ext4 makes (1,024 blocks): thousands of inodes do not fit.
    const img = path.join(work, `j${n++}.img`);
    run('truncate', ['-s', '16M', img]);
    expect(run('mkfs.ext4', ['-q', '-F', '-b', '1024', '-J', 'size=1', '-N', '4096', img]).status).toBe(0);
    const before = sha(img);
    const ed = Ext4Editor.open(img, { atomic: true });
    for (let d = 0; d < 40; d++) {
      ed.mkdir(`/d${d}`);
      for (let k = 0; k < 90; k++) ed.writeFile(`/d${d}/f${k}`, 'x');
    }
    expect(() => ed.commit()).toThrowError(expect.objectContaining({ code: 'NO_SPACE' }));
    ed.close();
    expect(sha(img)).toBe(before);
  });

  it('otherwise a change that outgrows the journal commits in several transactions, each consistent', () => {
    const img = path.join(work, `j${n++}.img`);
    run('truncate', ['-s', '16M', img]);
    expect(run('mkfs.ext4', ['-q', '-F', '-b', '1024', '-J', 'size=1', '-N', '4096', img]).status).toBe(0);
    const src = path.join(work, `src${n++}`);
    for (let d = 0; d < 20; d++) {
      fs.mkdirSync(path.join(src, `d${d}`), { recursive: true });
      for (let k = 0; k < 150; k++) fs.writeFileSync(path.join(src, `d${d}`, `f${k}`), `${d}/${k}`);
    }
    const seq0 = Number(header(img)['Journal sequence']);
    // One operation (a tree copy) and a batch of small ones, both larger than the journal.
    editImage(img, (e) => {
      e.copyIn(src, '/tree');
      for (let k = 0; k < 400; k++) e.writeFile(`/tree/d0/extra${k}`, 'x');
    });
    const seq1 = Number(header(img)['Journal sequence']);
    expect(seq1 - seq0).toBeGreaterThan(1);
    clean(img);
    const t = tree(img);
    expect(t.get('tree/d19/f149')).toBe(
      JSON.stringify(['file', 6, createHash('sha256').update('19/149').digest('hex'), null]),
    );
    expect([...t.keys()].filter((k) => k.startsWith('tree/d0/extra')).length).toBe(400);
    // A tree removal as large: several transactions again, the image clean and empty.
    editImage(img, (e) => e.rm('/tree', { recursive: true }));
    expect(Number(header(img)['Journal sequence']) - seq1).toBeGreaterThan(1);
    clean(img);
    expect([...tree(img).keys()].filter((k) => k !== '/')).toEqual([]);
    // The CLI's script is one change: refused whole.
    const before = sha(img);
    const script = path.join(work, `s${n++}.txt`);
    fs.writeFileSync(script, Array.from({ length: 1500 }, (_, k) => `mkdir /d${k}`).join('\n'));
    const cli = run('node', [path.resolve(__dirname, '../dist/cli.cjs'), 'edit', img, '--script', script]);
    expect(cli.status).toBe(1);
    expect(cli.stderr).toMatch(/NO_SPACE|journal/);
    expect(sha(img)).toBe(before);
  });

  it('an image without a journal is edited with a warning', () => {
    const img = path.join(work, `j${n++}.img`);
    run('truncate', ['-s', '16M', img]);
    run('mkfs.ext4', ['-q', '-F', '-t', 'ext2', img]);
    const warnings: string[] = [];
    editImage(img, (e) => e.writeFile('/f', 'x'), { onWarning: (m) => warnings.push(m) });
    expect(warnings.join()).toMatch(/no journal/);
    clean(img);
  });
});

describe.runIf(runIt && haveCorpus)('recover', () => {
  // The ext4-view image has encrypted directories: recovered, but not editable afterwards.
  for (const [rel, editable] of [
    ['e2fsprogs/f_jnl_32bit/image.gz', true],
    ['e2fsprogs/f_jnl_64bit/image.gz', true],
    ['e2fsprogs/j_recover_csum2_32bit/image.gz', true],
    ['e2fsprogs/j_recover_csum2_64bit/image.gz', true],
    ['e2fsprogs/j_recover_csum3_64bit/image.gz', true],
    ['ext4-view/test_disk_4k_block_journal.bin.gz', false],
  ] as const)
    it(`${rel}: the same blocks as debugfs journal_run, the same tree as e2fsck -fy`, () => {
      const ours = corpusImage(rel);
      const jr = path.join(work, `jr${n++}.img`);
      const fy = path.join(work, `fy${n++}.img`);
      fs.copyFileSync(ours, jr);
      fs.copyFileSync(ours, fy);
      const refusal = editable ? 'NEEDS_RECOVERY' : 'UNSUPPORTED_FEATURE';
      expect(() => Ext4Editor.open(ours)).toThrowError(expect.objectContaining({ code: refusal }));
      const res = recoverJournal(ours);
      expect(res.recovered).toBe(true);
      expect(res.transactions).toBeGreaterThan(0);
      run('debugfs', ['-w', '-R', 'journal_run', jr]);
      // journal_run only replays: the orphan step after it (ours, the kernel's) clears orphan_present.
      const replayed = (img: string) => layout(img).replace(' orphan_present', '');
      expect(replayed(ours)).toBe(replayed(jr));
      run('e2fsck', ['-fy', fy]);
      expect(tree(ours)).toEqual(tree(fy));
      // Modes, owners, links, xattrs too. (The layout is journal_run's: some of these images are broken
      // on purpose beyond the journal, and e2fsck -fy goes on to repair their bitmaps.)
      expect(imageState(ours)).toBe(imageState(fy));
      // The superblock's counts are the descriptors' sums, as after a kernel mount (and e2fsck).
      expect(header(ours)['Free blocks']).toBe(header(fy)['Free blocks']);
      expect(header(ours)['Filesystem features']).not.toMatch(/needs_recovery/);
      expect(header(ours)['Journal start']).toBe('0');
      // A second recovery finds nothing to do; the image can be edited now. Those damaged beyond the
      // journal (an inode in use that the inode bitmap calls free) are refused as damaged instead, the
      // new file never put into an inode in use.
      expect(recoverJournal(ours).recovered).toBe(false);
      const edit = () => editImage(ours, (e) => e.writeFile('/after-recovery', 'x'));
      if (editable && run('e2fsck', ['-fn', ours]).status === 0) edit();
      else if (editable) expect(edit).toThrowError(expect.objectContaining({ code: 'NEEDS_CHECK' }));
    });

  it('recovered images that e2fsck -fy leaves clean are clean after ours too', () => {
    for (const rel of [
      'e2fsprogs/f_jnl_32bit/image.gz',
      'e2fsprogs/j_recover_csum3_64bit/image.gz',
      'ext4-view/test_disk_4k_block_journal.bin.gz',
    ]) {
      const img = corpusImage(rel);
      recoverJournal(img);
      clean(img);
    }
  });

  for (const t of ['f_orphan', 'f_orphan_extents_inode', 'f_orphan_indirect_inode', 'f_clear_orphan_file'])
    it(`${t}: orphan inodes are deleted or cut back like the kernel and e2fsck do`, () => {
      const ours = corpusImage(`e2fsprogs/${t}/image.gz`);
      const fy = path.join(work, `fy${n++}.img`);
      fs.copyFileSync(ours, fy);
      const res = recoverJournal(ours);
      expect(res.orphans).toBeGreaterThan(0);
      clean(ours);
      run('e2fsck', ['-fy', fy]);
      expect(tree(ours)).toEqual(tree(fy));
      expect(layout(ours)).toBe(layout(fy));
    });

  for (const [t, why] of [
    ['f_ext_journal', 'external journal'],
    ['j_recover_fast_commit', 'fast commits'],
    ['f_orphquot', 'quota'],
  ])
    it(`${t}: refused (${why}), the image unchanged`, () => {
      const img = corpusImage(`e2fsprogs/${t}/image.gz`);
      const before = sha(img);
      expect(() => recoverJournal(img)).toThrowError(expect.objectContaining({ code: 'UNSUPPORTED_FEATURE' }));
      expect(sha(img)).toBe(before);
    });
});

describe.runIf(runIt && asRoot)('images the kernel left dirty', () => {
  for (const bs of [1024, 4096])
    it(`${bs}-byte blocks: recover and --recover give what the kernel had committed`, () => {
      const img = path.join(work, `k${n++}.img`);
      const mnt = path.join(work, `kmnt${n++}`);
      fs.mkdirSync(mnt);
      run('truncate', ['-s', '64M', img]);
      expect(run('mkfs.ext4', ['-q', '-F', '-b', String(bs), img]).status).toBe(0);
      const dirty = path.join(work, `dirty${n++}.img`);
      let want: Map<string, unknown>;
      mount(img, mnt, false);
      try {
        fs.mkdirSync(path.join(mnt, 'a/b'), { recursive: true });
        for (let k = 0; k < 300; k++) fs.writeFileSync(path.join(mnt, 'a', `f${k}`), Buffer.alloc(k * 37, k));
        fs.symlinkSync('a/f1', path.join(mnt, 'l'));
        for (let k = 0; k < 300; k += 3) fs.rmSync(path.join(mnt, 'a', `f${k}`));
        // Committed to the journal, not necessarily written home: a copy now is a crashed VM's disk.
        expect(run('sync', ['-f', path.join(mnt, 'a')]).status).toBe(0);
        want = new Map(
          [...snapshot(mnt)]
            .filter(([k]) => !k.startsWith('lost+found'))
            .map(([k, v]) => [k, [v.type, v.size, v.sha, v.target]]),
        );
        fs.copyFileSync(img, dirty);
      } finally {
        umount(mnt);
      }
      expect(header(dirty)['Filesystem features']).toMatch(/needs_recovery/);
      const second = path.join(work, `dirty${n++}.img`);
      fs.copyFileSync(dirty, second);
      const fy = path.join(work, `fy${n++}.img`);
      fs.copyFileSync(dirty, fy);
      recoverJournal(dirty);
      clean(dirty);
      // The same tree and metadata as e2fsck's recovery.
      run('e2fsck', ['-fy', fy]);
      expect(imageState(dirty)).toBe(imageState(fy));
      expect(layout(dirty)).toBe(layout(fy));
      mount(dirty, mnt, true);
      try {
        const got = new Map(
          [...snapshot(mnt)]
            .filter(([k]) => !k.startsWith('lost+found'))
            .map(([k, v]) => [k, [v.type, v.size, v.sha, v.target]]),
        );
        expect(got).toEqual(want);
      } finally {
        umount(mnt);
      }
      // The editor refuses the dirty image, or recovers it first when told to.
      expect(() => Ext4Editor.open(second)).toThrowError(expect.objectContaining({ code: 'NEEDS_RECOVERY' }));
      editImage(second, (e) => e.writeFile('/a/new', 'after'), { recover: true });
      clean(second);
    });
});
