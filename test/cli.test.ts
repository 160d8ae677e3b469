/** The CLI as a user meets it: output, exit codes, one-line errors, nothing half-written left behind. */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import {
  cli,
  scratchDir,
  allocatedBytes,
  run,
  HAVE_E2FSPROGS,
  oracleAvailable,
  fsck,
  IS_ROOT,
  IN_CI,
} from './helpers/oracle.js';
import { formatImage } from '../src/mkfs/image.js';
import { dirSyncHooks } from '../src/io/device.js';
import { buildWorkSeedImage, materializeWorkDisk } from '../src/workdisk/job.js';

const dir = scratchDir('ext4wd-cli');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const ID = [
  '--uuid',
  '11111111-2222-3333-4444-555555555555',
  '--hash-seed',
  '66666666-7777-8888-9999-aaaaaaaaaaaa',
  '--timestamp',
  '1700000000',
];

function leftovers(): string[] {
  return fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'));
}

describe('mkfs and info', () => {
  it('makes an image of exactly the requested size and reports it as JSON', () => {
    const img = path.join(dir, 'a.img');
    const r = cli(['mkfs', img, '--size', '8G', '--json', ...ID]);
    expect(r.status, r.stderr).toBe(0);
    const out: unknown = JSON.parse(r.stdout);
    expect(out).toMatchObject({
      blockSize: 4096,
      blocks: 2097152,
      inodes: 524288,
      groups: 64,
      journalBlocks: 16384,
      uuid: '11111111-2222-3333-4444-555555555555',
    });
    expect(fs.statSync(img).size).toBe(8 * 2 ** 30);
    const info = cli(['info', img, '--json']);
    expect(info.status).toBe(0);
    expect(JSON.parse(info.stdout)).toMatchObject({
      blockCount: 2097152,
      created: 1700000000,
      freeInodes: 524277,
      journal: { blocks: 16384, start: 0 },
    });
    const text = cli(['info', img]);
    expect(text.stdout).toContain(
      'Filesystem features:      has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum',
    );
  });

  it('replaces an existing file', () => {
    const img = path.join(dir, 'replace.img');
    fs.writeFileSync(img, 'old contents');
    expect(cli(['mkfs', img, '--size', '64M', '--no-sync']).status).toBe(0);
    expect(fs.statSync(img).size).toBe(64 * 2 ** 20);
  });

  it('is deterministic with --uuid, --hash-seed and --timestamp, and honours SOURCE_DATE_EPOCH', () => {
    const a = path.join(dir, 'd1.img');
    const b = path.join(dir, 'd2.img');
    expect(cli(['mkfs', a, '--size', '256M', ...ID]).status).toBe(0);
    expect(cli(['mkfs', b, '--size', '256M', ...ID]).status).toBe(0);
    expect(run('cmp', [a, b]).status).toBe(0);
    const c = path.join(dir, 'd3.img');
    const d = path.join(dir, 'd4.img');
    const env = { SOURCE_DATE_EPOCH: '1234567890' };
    const noTs = ID.slice(0, 4);
    expect(cli(['mkfs', c, '--size', '256M', ...noTs], env).status).toBe(0);
    expect(cli(['mkfs', d, '--size', '256M', ...noTs], env).status).toBe(0);
    expect(run('cmp', [c, d]).status).toBe(0);
    expect((JSON.parse(cli(['info', c, '--json']).stdout) as { created: number }).created).toBe(1234567890);
    for (const f of [a, b, c, d]) fs.rmSync(f);
  });

  it('writes only metadata: allocation is tiny and barely grows with the size', () => {
    const small = path.join(dir, 's8g.img');
    const big = path.join(dir, 's1t.img');
    const r8 = JSON.parse(cli(['mkfs', small, '--size', '8G', '--json']).stdout) as { bytesWritten: number };
    expect(allocatedBytes(small)).toBeLessThanOrEqual(r8.bytesWritten + 64 * 1024 * 4);
    expect(allocatedBytes(small)).toBeLessThan(8 * 2 ** 20);
    const hugeDir = scratchDir('ext4wd-cli-huge', true);
    try {
      const big2 = path.join(hugeDir, 'b.img');
      const r1t = JSON.parse(cli(['mkfs', big2, '--size', '1T', '--json']).stdout) as { bytesWritten: number };
      // 1 TiB needs 128x the descriptors and bitmaps of 8 GiB: still a few tens of MiB at most.
      expect(allocatedBytes(big2)).toBeLessThanOrEqual(r1t.bytesWritten + 4096 * 1024);
      expect(allocatedBytes(big2)).toBeLessThan(32 * 2 ** 20);
    } finally {
      fs.rmSync(hugeDir, { recursive: true, force: true });
    }
    void big;
  });
});

describe.runIf(oracleAvailable('allocation comparison with mkfs.ext4', HAVE_E2FSPROGS))(
  'allocation vs mkfs.ext4',
  () => {
    it('allocates a small fraction of what mkfs.ext4 allocates (it zeroes its journal)', () => {
      const ours = path.join(dir, 'o.img');
      const theirs = path.join(dir, 't.img');
      expect(cli(['mkfs', ours, '--size', '8G']).status).toBe(0);
      fs.writeFileSync(theirs, '');
      fs.truncateSync(theirs, 8 * 2 ** 30);
      expect(run('mkfs.ext4', ['-q', '-F', theirs]).status).toBe(0);
      expect(allocatedBytes(ours) * 10).toBeLessThan(allocatedBytes(theirs));
      expect(fsck(ours).status).toBe(0);
      fs.rmSync(ours);
      fs.rmSync(theirs);
    });
  },
);

describe('ls -l', () => {
  it("shows each file type's letter and the set-id and sticky bits", () => {
    const src = path.join(dir, 'lsl-src');
    fs.mkdirSync(path.join(src, 'd'), { recursive: true });
    fs.chmodSync(path.join(src, 'd'), 0o1777);
    fs.writeFileSync(path.join(src, 'f'), 'hi\n');
    fs.chmodSync(path.join(src, 'f'), 0o4750);
    fs.symlinkSync('f', path.join(src, 'l'));
    expect(run('mkfifo', [path.join(src, 'p')]).status).toBe(0);
    const img = path.join(dir, 'lsl.img');
    expect(cli(['mkfs', img, '--size', '16M', '--from', src, '--no-sync']).status).toBe(0);
    const r = cli(['ls', img, '/', '-l']);
    expect(r.status, r.stderr).toBe(0);
    const modes: Record<string, string> = {};
    for (const line of r.stdout.trim().split('\n')) {
      const fields = line.split(/\s+/);
      modes[fields[7]!] = fields[0]!;
    }
    expect(modes).toEqual({
      d: 'drwxrwxrwt',
      f: '-rwsr-x---',
      l: 'lrwxrwxrwx',
      'lost+found': 'drwx------',
      p: expect.stringMatching(/^prw-/) as unknown,
    });
    fs.rmSync(src, { recursive: true });
    fs.rmSync(img);
  });
});

describe('bad input: one line, non-zero exit, nothing left behind', () => {
  const cases: [string, string[], string][] = [
    ['size too small', ['--size', '10K'], 'TOO_SMALL'],
    ['unknown suffix', ['--size', '8Q'], 'BAD_SIZE'],
    ['not a number', ['--size', 'big'], 'BAD_SIZE'],
    ['too large for ext4 / this tool', ['--size', '9P'], 'TOO_LARGE'],
    ['needs meta_bg', ['--size', '300T'], 'UNSUPPORTED_FEATURE'],
    ['bad uuid', ['--size', '1G', '--uuid', 'nope'], 'BAD_UUID'],
    ['bad hash seed', ['--size', '1G', '--hash-seed', '1234'], 'BAD_UUID'],
    ['bad block size', ['--size', '1G', '--block-size', '3000'], 'BAD_OPTION'],
    ['bad inode size', ['--size', '1G', '--inode-size', '64'], 'BAD_OPTION'],
    ['label too long', ['--size', '1G', '--label', 'seventeen-bytes!!'], 'BAD_OPTION'],
    ['bad timestamp', ['--size', '1G', '--timestamp', 'yesterday'], 'BAD_OPTION'],
  ];
  for (const [name, args, code] of cases) {
    it(name, () => {
      const img = path.join(dir, 'bad.img');
      fs.writeFileSync(img, 'precious');
      const r = cli(['mkfs', img, ...args]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^ext4-workdisk: error \\[${code}\\]: .+\\n$`));
      expect(r.stderr.split('\n').length).toBe(2);
      expect(fs.readFileSync(img, 'utf8')).toBe('precious');
      expect(leftovers()).toEqual([]);
      fs.rmSync(img);
    });
  }
  it('an image as its own source, by its path or through a link: BAD_OPTION, the image untouched', () => {
    const img = path.join(dir, 'self.img');
    formatImage(img, { sizeBytes: 16 << 20, sync: false });
    const before = fs.readFileSync(img);
    const link = path.join(dir, 'self-link.img');
    fs.symlinkSync(img, link);
    for (const [target, from] of [
      [img, img],
      [img, `${img}:/`],
      [link, img],
    ]) {
      const r = cli(['mkfs', target!, '--size', '16M', '--from', from!, '--no-sync']);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^ext4-workdisk: error \[BAD_OPTION\]: the output .+ is the source image itself\n$/);
    }
    expect(fs.readFileSync(img).equals(before)).toBe(true);
    expect(leftovers()).toEqual([]);
    fs.rmSync(link);
    fs.rmSync(img);
  });
  it('unwritable paths', () => {
    const file = path.join(dir, 'plain-file');
    fs.writeFileSync(file, 'x');
    for (const target of [path.join(dir, 'no', 'such', 'dir.img'), path.join(file, 'child.img'), dir]) {
      const r = cli(['mkfs', target, '--size', '1G']);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^ext4-workdisk: error \[IO_ERROR\]: .+\n$/);
    }
    expect(leftovers()).toEqual([]);
  });
  it('a host file system that cannot hold the size: error, no file', () => {
    // ext4 hosts stop at 16 TiB per file; tmpfs does not, so pick the host by what it refuses.
    const target = path.join(dir, 'huge.img');
    const r = cli(['mkfs', target, '--size', '100T', '--no-sync']);
    if (r.status === 0) fs.rmSync(target);
    else {
      expect(r.stderr).toMatch(/^ext4-workdisk: error \[IO_ERROR\]: .+\n$/);
      expect(fs.existsSync(target)).toBe(false);
    }
    expect(leftovers()).toEqual([]);
  });
  it('usage errors exit 2 with one line; info on a non-ext4 file is BAD_MAGIC', () => {
    for (const args of [
      ['mkfs'],
      ['mkfs', path.join(dir, 'x.img')],
      ['frobnicate'],
      ['mkfs', 'x.img', '--size', '1G', '--bogus'],
    ]) {
      const r = cli(args);
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split('\n').length).toBe(1);
    }
    const junk = path.join(dir, 'junk.img');
    fs.writeFileSync(junk, Buffer.alloc(8192, 7));
    const r = cli(['info', junk]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/\[BAD_MAGIC\]/);
    const tiny = path.join(dir, 'tiny.img');
    fs.writeFileSync(tiny, 'x');
    expect(cli(['info', tiny]).stderr).toMatch(/\[BAD_MAGIC\]/);
    expect(cli(['info', path.join(dir, 'missing.img')]).stderr).toMatch(/\[IO_ERROR\]/);
  });
  it('every command prints its own usage with --help, exit 0, whatever else is on the line', () => {
    const commands = [
      ...['mkfs', 'info', 'ls', 'cat', 'stat', 'extract', 'seed', 'materialize', 'edit', 'recover'],
      ...['write', 'mkdir', 'rm', 'mv', 'ln', 'chmod', 'chown', 'touch', 'truncate', 'setfattr', 'cp-in'],
    ];
    const all = cli(['--help']).stdout;
    for (const c of commands) {
      expect(all).toContain(`  ${c === 'mkdir' ? 'mkdir [-p]' : c === 'rm' ? 'rm [-r]' : c === 'ln' ? 'ln [-s]' : c} `);
      for (const args of [
        [c, '--help'],
        [c, path.join(dir, 'missing.img'), '--help'],
      ]) {
        const r = cli(args);
        expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
        expect(r.stderr).toBe('');
        expect(r.stdout).toMatch(new RegExp(`^usage: ext4-workdisk ${c}[ \\[]`));
      }
    }
  });
});

describe('targets that are not image files, and a full host disk', () => {
  it('refuses devices', () => {
    const r = cli(['mkfs', '/dev/null', '--size', '1G']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/\[IO_ERROR\]: \/dev\/null is not a regular file/);
  });
  it.runIf(IS_ROOT || IN_CI)('a host disk that fills up: error, no image and no temporary file left', () => {
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'ext4wd-full-'));
    expect(run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]).status).toBe(0);
    try {
      const src = path.join(dir, 'full-src');
      fs.mkdirSync(src, { recursive: true });
      fs.writeFileSync(path.join(src, 'blob'), Buffer.alloc(8 << 20, 7));
      const target = path.join(mnt, 'disk.img');
      const r = cli(['mkfs', target, '--size', '64M', '--from', src]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^ext4-workdisk: error \[IO_ERROR\]: .*no space left on the host device\n$/);
      expect(fs.readdirSync(mnt)).toEqual([]);
    } finally {
      run('umount', [mnt]);
      fs.rmdirSync(mnt);
    }
  });
});

describe('a new image is durable under its name', () => {
  it('the directory is synced after the rename, for mkfs, seed and materialize; not with sync off', () => {
    const seen: { dir: string; names: string[] }[] = [];
    // The input image's reader's lock file (src/host/lock.ts) is there while the output is written.
    const hook = (d: string) =>
      seen.push({
        dir: d,
        names: fs
          .readdirSync(d)
          .filter((n) => !/\.lock\./.test(n))
          .sort(),
      });
    dirSyncHooks.push(hook);
    try {
      const sub = fs.mkdtempSync(path.join(dir, 'durable-'));
      const rootfs = path.join(sub, 'rootfs.img');
      formatImage(rootfs, { sizeBytes: 16 << 20 });
      buildWorkSeedImage(rootfs, path.join(sub, 'seed.img'), { path: '/' });
      materializeWorkDisk(path.join(sub, 'seed.img'), path.join(sub, 'disk.img'), 32 << 20);
      formatImage(path.join(sub, 'nosync.img'), { sizeBytes: 16 << 20, sync: false });
      // Each synced once the file had its final name and the temporary one was gone.
      expect(seen).toEqual([
        { dir: sub, names: ['rootfs.img'] },
        { dir: sub, names: ['rootfs.img', 'seed.img'] },
        { dir: sub, names: ['disk.img', 'rootfs.img', 'seed.img'] },
      ]);
      // And the lock files are gone once the commands are done.
      expect(fs.readdirSync(sub).filter((n) => n.includes('.lock'))).toEqual([]);
      if (HAVE_E2FSPROGS || IN_CI)
        for (const f of ['rootfs.img', 'seed.img', 'disk.img', 'nosync.img'])
          expect(fsck(path.join(sub, f)).status, f).toBe(0);
    } finally {
      dirSyncHooks.splice(dirSyncHooks.indexOf(hook), 1);
    }
  });
});
