/**
 * The work-disk job end to end: a realistic rootfs (made by mkfs.ext4 -d and by our own mkfs --from),
 * seed equals `debugfs rdump /root` with every entry root:root, materialize gives an exact-size,
 * fsck-clean disk the kernel mounts with the seed's contents, and it runs without root or e2fsprogs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { workSeedPath, workSeedSizeBytes } from '../src/workdisk/paths.js';
import {
  buildWorkSeedImage,
  materializeWorkDisk,
  readNormalizedLines,
  copyFilePreferClone,
} from '../src/workdisk/job.js';
import { formatImage } from '../src/mkfs/image.js';
import { hostDirectorySource } from '../src/tree/sources/host.js';
import {
  HAVE_E2FSPROGS,
  IS_ROOT,
  IN_CI,
  haveTool,
  oracleAvailable,
  run,
  fsck,
  scratchDir,
  allocatedBytes,
} from './helpers/oracle.js';
import { snapshot } from './helpers/tree.js';

const MiB = 2 ** 20;
const work = scratchDir('ext4wd-job');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('naming, sizing, list files, copies', () => {
  it('workSeedPath', () => {
    expect(workSeedPath('  /img/debian.ext4 ')).toBe('/img/debian.work-seed.ext4');
    expect(workSeedPath('')).toBe('');
    expect(workSeedPath('   ')).toBe('');
    expect(workSeedPath('/img/rootfs.img')).toBe('/img/rootfs.img.work-seed');
    expect(workSeedPath('a.ext4.bak')).toBe('a.ext4.bak.work-seed');
  });
  it('seed size: 2x regular bytes + 256 MiB, at least 512 MiB, rounded up to 64 MiB', () => {
    expect(workSeedSizeBytes(0)).toBe(512 * MiB);
    expect(workSeedSizeBytes(128 * MiB)).toBe(512 * MiB);
    expect(workSeedSizeBytes(128 * MiB + 1)).toBe(576 * MiB);
    expect(workSeedSizeBytes(1000 * MiB)).toBe(2304 * MiB);
    expect(workSeedSizeBytes(1000 * MiB) % (64 * MiB)).toBe(0);
  });
  it('readNormalizedLines', () => {
    const f = path.join(work, 'list.txt');
    fs.writeFileSync(f, '# header\r\n  alpha  \r\n\r\nbeta # trailing comment\n   # only comment\n\tgamma\n');
    expect(readNormalizedLines(f)).toEqual(['alpha', 'beta', 'gamma']);
    fs.writeFileSync(f, '# nothing\n\n  \r\n');
    expect(() => readNormalizedLines(f)).toThrowError(
      expect.objectContaining({ code: 'BAD_OPTION', message: expect.stringContaining(f) as unknown }),
    );
  });
  it('copyFilePreferClone keeps content, holes and mode, and refuses to overwrite', () => {
    const a = path.join(work, 'a.bin');
    const fd = fs.openSync(a, 'w');
    fs.writeSync(fd, Buffer.from('head'), 0, 4, 0);
    fs.writeSync(fd, Buffer.from('tail'), 0, 4, 64 * MiB);
    fs.closeSync(fd);
    fs.chmodSync(a, 0o640);
    const b = path.join(work, 'b.bin');
    expect(['clone', 'copy']).toContain(copyFilePreferClone(a, b));
    expect(run('cmp', [a, b]).status).toBe(0);
    expect(fs.statSync(b).mode & 0o777).toBe(0o640);
    expect(allocatedBytes(b)).toBeLessThan(16 * MiB);
    expect(() => copyFilePreferClone(a, b)).toThrowError(expect.objectContaining({ code: 'IO_ERROR' }));
  });
});

/** A Debian-like tree with a /root of dotfiles. */
function makeRootfs(dir: string): void {
  const f = (rel: string, text: string, mode = 0o644) => {
    const p = path.join(dir, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
    fs.chmodSync(p, mode);
  };
  f('etc/hostname', 'vm\n');
  f('etc/passwd', 'root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/sh\n');
  for (let i = 0; i < 50; i++) f(`usr/lib/lib${i}.so`, 'x'.repeat(1000 + i * 37), 0o755);
  f('var/log/syslog', 'log\n', 0o640);
  f('home/user/.profile', 'user\n');
  f('root/.bashrc', 'alias ll="ls -l"\n');
  f('root/.profile', 'profile\n', 0o600);
  f('root/.ssh/authorized_keys', 'ssh-ed25519 AAAA test\n', 0o600);
  f('root/.ssh/config', 'Host *\n', 0o644);
  f('root/notes/todo.txt', 'x'.repeat(10_000));
  fs.chmodSync(path.join(dir, 'root/.ssh'), 0o700);
  fs.chmodSync(path.join(dir, 'root'), 0o700);
  fs.symlinkSync('.bashrc', path.join(dir, 'root/.bash_aliases'));
  fs.linkSync(path.join(dir, 'root/.profile'), path.join(dir, 'root/.profile.hard'));
  if (IS_ROOT) run('chown', ['-R', '1000:1000', path.join(dir, 'home/user'), path.join(dir, 'root/notes')]);
}

const oracles = oracleAvailable('work-disk oracle suite', HAVE_E2FSPROGS);
describe.runIf(oracles)('seed and materialize', () => {
  const tree = path.join(work, 'rootfs');
  beforeAll(() => makeRootfs(tree));

  for (const maker of ['mkfs.ext4 -d', 'ext4-workdisk mkfs --from']) {
    it(`rootfs made by ${maker}`, () => {
      const rootfs = path.join(work, `${maker.split(' ')[0]}.ext4`);
      if (maker.startsWith('mkfs.ext4')) {
        fs.writeFileSync(rootfs, '');
        fs.truncateSync(rootfs, 256 * MiB);
        expect(run('mkfs.ext4', ['-q', '-F', '-d', tree, rootfs]).status).toBe(0);
      } else formatImage(rootfs, { sizeBytes: 256 * MiB, source: hostDirectorySource(tree), sync: false });

      const seed = workSeedPath(rootfs);
      const s = buildWorkSeedImage(rootfs, seed, { sync: false });
      expect(s.found).toBe(true);
      expect(fs.statSync(seed).size).toBe(workSeedSizeBytes(s.regularFileBytes));
      expect(fsck(seed).status).toBe(0);

      // The seed equals debugfs rdump /root, except that everything is root:root.
      const rd = path.join(work, `rd-${maker.length}`);
      fs.mkdirSync(rd);
      expect(run('debugfs', ['-R', `rdump /root ${rd}`, rootfs]).status).toBe(0);
      const ours = path.join(work, `ours-${maker.length}`);
      fs.mkdirSync(ours);
      expect(
        run(process.execPath, [path.resolve(__dirname, '../dist/cli.cjs'), 'extract', seed, '/', ours]).status,
      ).toBe(0);
      fs.rmSync(path.join(ours, 'lost+found'), { recursive: true });
      const want = snapshot(path.join(rd, 'root'));
      const got = snapshot(ours);
      expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
      for (const [k, v] of want) {
        if (k === '/') continue;
        const g = got.get(k)!;
        expect([k, g.type, g.mode, g.sha, g.target, g.uid, g.gid]).toEqual([k, v.type, v.mode, v.sha, v.target, 0, 0]);
      }

      const disk = path.join(work, `disk-${maker.length}.ext4`);
      const m = materializeWorkDisk(seed, disk, 8 * 2 ** 30, { sync: false });
      expect(m.entries).toBeGreaterThan(5);
      expect(fs.statSync(disk).size).toBe(8 * 2 ** 30);
      expect(fsck(disk).status).toBe(0);
      if (IS_ROOT && haveTool('mount')) {
        const mnt = path.join(work, `mnt-${maker.length}`);
        fs.mkdirSync(mnt);
        expect(run('mount', ['-o', 'loop', disk, mnt]).status).toBe(0);
        try {
          const st = fs.statSync(mnt);
          expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([0, 0, 0o755]);
          expect(fs.existsSync(path.join(mnt, 'lost+found'))).toBe(true);
          const view = snapshot(mnt);
          for (const [k, v] of want) {
            if (k === '/') continue;
            const g = view.get(k)!;
            expect([k, g.type, g.mode, g.sha, g.target, g.uid, g.gid]).toEqual([
              k,
              v.type,
              v.mode,
              v.sha,
              v.target,
              0,
              0,
            ]);
          }
          expect(view.get('.ssh')!.mode).toBe(0o700);
          expect(view.get('.ssh/authorized_keys')!.mode).toBe(0o600);
          expect(view.get('.profile')!.nlink).toBe(2);
          // The guest writes to it.
          fs.writeFileSync(path.join(mnt, 'new-file'), 'written by the guest');
          fs.mkdirSync(path.join(mnt, 'work'));
        } finally {
          run('umount', [mnt]);
        }
        expect(fsck(disk).status).toBe(0);
      }
    });
  }

  it('a rootfs without /root gives an empty seed; no seed gives an empty disk; a seed that does not fit fails cleanly', () => {
    const bare = path.join(work, 'bare-src');
    fs.mkdirSync(path.join(bare, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(bare, 'etc/hostname'), 'x');
    const rootfs = path.join(work, 'bare.ext4');
    formatImage(rootfs, { sizeBytes: 32 * MiB, source: hostDirectorySource(bare), sync: false });
    const seed = path.join(work, 'bare.work-seed.ext4');
    expect(buildWorkSeedImage(rootfs, seed, { sync: false }).found).toBe(false);
    expect(fsck(seed).status).toBe(0);
    const empty = path.join(work, 'empty-disk.ext4');
    materializeWorkDisk(undefined, empty, 64 * MiB, { sync: false });
    expect(fsck(empty).status).toBe(0);
    // A seed with 60 MiB of data cannot go onto a 32 MiB disk.
    const big = path.join(work, 'big-src');
    fs.mkdirSync(path.join(big, 'root'), { recursive: true });
    fs.writeFileSync(path.join(big, 'root', 'blob'), Buffer.alloc(60 * MiB, 1));
    const bigRootfs = path.join(work, 'big.ext4');
    formatImage(bigRootfs, { sizeBytes: 128 * MiB, source: hostDirectorySource(big), sync: false });
    const bigSeed = path.join(work, 'big.work-seed.ext4');
    buildWorkSeedImage(bigRootfs, bigSeed, { sync: false });
    const target = path.join(work, 'small-disk.ext4');
    expect(() => materializeWorkDisk(bigSeed, target, 32 * MiB)).toThrowError(
      expect.objectContaining({ code: 'NO_SPACE' }),
    );
    expect(fs.existsSync(target)).toBe(false);
    // An output that is the input is refused before anything is written.
    const before = fs.readFileSync(bigSeed).subarray(0, 4096);
    expect(() => materializeWorkDisk(bigSeed, bigSeed, 1 << 30)).toThrowError(
      expect.objectContaining({ code: 'BAD_OPTION' }),
    );
    expect(() => buildWorkSeedImage(bigRootfs, bigRootfs)).toThrowError(
      expect.objectContaining({ code: 'BAD_OPTION' }),
    );
    expect(Buffer.compare(fs.readFileSync(bigSeed).subarray(0, 4096), before)).toBe(0);
  });
});

describe.runIf(IN_CI || (IS_ROOT && haveTool('setpriv')))('CLI as a non-root user with no e2fsprogs on PATH', () => {
  it('seed and materialize', () => {
    const dir = fs.mkdtempSync('/tmp/ext4wd-job-nonroot-');
    fs.chmodSync(dir, 0o777);
    const tree = path.join(dir, 'tree');
    makeRootfs(tree);
    const rootfs = path.join(dir, 'rootfs.ext4');
    formatImage(rootfs, { sizeBytes: 64 * MiB, source: hostDirectorySource(tree), sync: false });
    run('chown', ['-R', '65534:65534', dir]);
    const cliPath = path.resolve(__dirname, '../dist/cli.cjs');
    const setpriv = run('sh', ['-c', 'command -v setpriv']).stdout.trim();
    const as = (args: string[]) =>
      run(setpriv, ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, cliPath, ...args], {
        env: { PATH: '/nonexistent' },
      });
    const s = as(['seed', rootfs]);
    expect(s.status, s.stderr).toBe(0);
    expect(s.stdout.trim()).toBe(path.join(dir, 'rootfs.work-seed.ext4'));
    const m = as(['materialize', path.join(dir, 'disk.ext4'), '--size', '8G', '--seed', s.stdout.trim(), '--json']);
    expect(m.status, m.stderr).toBe(0);
    expect((JSON.parse(m.stdout) as { sizeBytes: number }).sizeBytes).toBe(8 * 2 ** 30);
    if (HAVE_E2FSPROGS) expect(fsck(path.join(dir, 'disk.ext4')).status).toBe(0);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('the packed package', () => {
  it('npm pack, install the tarball elsewhere, npx ext4-workdisk materialize', () => {
    const dir = scratchDir('ext4wd-pack');
    try {
      const pack = run('npm', ['pack', '--pack-destination', dir, '--silent'], {
        env: { npm_config_ignore_scripts: 'true' },
      });
      expect(pack.status, pack.stderr).toBe(0);
      const tgz = path.join(dir, pack.stdout.trim().split('\n').pop()!);
      const app = path.join(dir, 'app');
      fs.mkdirSync(app);
      fs.writeFileSync(path.join(app, 'package.json'), '{"name":"app","version":"1.0.0","private":true}');
      const inst = run('sh', ['-c', `cd ${app} && npm install --offline --no-audit --no-fund ${tgz}`], {
        timeoutMs: 120_000,
      });
      expect(inst.status, inst.stderr).toBe(0);
      const r = run('sh', [
        '-c',
        `cd ${app} && npx --no-install ext4-workdisk materialize ${path.join(dir, 'w.ext4')} --size 1G --json`,
      ]);
      expect(r.status, r.stderr).toBe(0);
      expect(fs.statSync(path.join(dir, 'w.ext4')).size).toBe(2 ** 30);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.runIf(oracles)('mkfs --from an image subtree, and the progress line', () => {
  it('mkfs --from IMAGE:/path copies that subtree (image to image)', () => {
    const tree = path.join(work, 'from-img-src');
    makeRootfs(tree);
    const rootfs = path.join(work, 'from-img.ext4');
    formatImage(rootfs, { sizeBytes: 64 * MiB, source: hostDirectorySource(tree), sync: false });
    const out = path.join(work, 'from-img-out.ext4');
    const cliPath = path.resolve(__dirname, '../dist/cli.cjs');
    const r = run(process.execPath, [
      cliPath,
      'mkfs',
      out,
      '--size',
      '32M',
      '--from',
      `${rootfs}:/root`,
      '--owner',
      '0:0',
      '--no-sync',
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(fsck(out).status).toBe(0);
    const ls = run(process.execPath, [cliPath, 'ls', out, '/']).stdout.trim().split('\n');
    expect(ls).toEqual(['.bash_aliases', '.bashrc', '.profile', '.profile.hard', '.ssh', 'lost+found', 'notes']);
    const st = JSON.parse(run(process.execPath, [cliPath, 'stat', out, '/.ssh/authorized_keys', '--json']).stdout) as {
      mode: string;
      uid: number;
      gid: number;
    };
    expect([st.mode, st.uid, st.gid]).toEqual(['0600', 0, 0]);
  });

  it.runIf(haveTool('script'))('shows the stage on a terminal and stays quiet otherwise', () => {
    const cliPath = path.resolve(__dirname, '../dist/cli.cjs');
    const disk = path.join(work, 'tty.ext4');
    const cmd = `${process.execPath} ${cliPath} materialize ${disk} --size 1G --no-sync`;
    const tty = run('script', ['-qec', cmd, '/dev/null']);
    expect(tty.status).toBe(0);
    expect(tty.stdout).toContain('formatting...');
    fs.rmSync(disk);
    const plain = run(process.execPath, [cliPath, 'materialize', disk, '--size', '1G', '--no-sync']);
    expect(plain.stderr).toBe('');
  });
});
