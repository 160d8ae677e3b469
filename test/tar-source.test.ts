/**
 * mkfs --from ARCHIVE: GNU tar archives of a varied tree in every format GNU tar writes (pax with
 * xattrs and ACLs, gnu, the sparse variants, gzip, stdin) become images whose kernel view equals what
 * `tar -x` as root makes of the same archive; awkward archives (made with Python's tarfile) give the
 * documented result or a clear error with no image left behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as zlib from 'node:zlib';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { tarTreeSource } from '../src/tree/sources/tar.js';
import { formatImage, autoSize } from '../src/mkfs/image.js';
import { Ext4Error } from '../src/core/errors.js';
import { rng } from './helpers/rng.js';
import {
  CLI,
  HAVE_E2FSPROGS,
  IS_ROOT,
  cli,
  fsck,
  haveTool,
  oracleAvailable,
  run,
  scratchDir,
} from './helpers/oracle.js';
import { allXattrs, makeVariedTree, snapshot, type NodeInfo } from './helpers/tree.js';
import { mount, umount } from './helpers/model.js';

const haveOracles = oracleAvailable('tar source oracle suite', HAVE_E2FSPROGS && haveTool('tar'));
const canMount = oracleAvailable(
  'tar source kernel comparison (needs root, tar, setfacl)',
  IS_ROOT && HAVE_E2FSPROGS && haveTool('mount') && haveTool('setfacl') && haveTool('setfattr'),
);

const work = scratchDir('ext4wd-tar');
afterAll(() => {
  run('sh', ['-c', `for m in $(grep -o '${work}/[^ ]*' /proc/mounts); do umount $m; done; true`]);
  fs.rmSync(work, { recursive: true, force: true });
});

/** The kernel's view of an image (loop-mounted read-only). */
function imageView(img: string): { tree: Map<string, unknown>; xattrs: Map<string, string> } {
  const mnt = fs.mkdtempSync(path.join(work, 'mnt-'));
  mount(img, mnt, true);
  try {
    const tree = snapshot(mnt) as Map<string, unknown>;
    // The image's root also holds lost+found, which the archive does not.
    const root = tree.get('/') as { nlink: number };
    root.nlink -= 1;
    return { tree, xattrs: allXattrs(mnt) };
  } finally {
    umount(mnt);
  }
}

/** What `tar -x` as root makes of an archive (numeric owners, every attribute and ACL). */
function tarView(archive: string, extra: string[] = []): { tree: Map<string, unknown>; xattrs: Map<string, string> } {
  const dest = fs.mkdtempSync(path.join(work, 'x-'));
  const r = run('tar', [
    '-x',
    '--xattrs',
    '--xattrs-include=*',
    '--acls',
    '--numeric-owner',
    '-p',
    '-f',
    archive,
    '-C',
    dest,
    ...extra,
  ]);
  if (r.status !== 0) throw new Error(`tar -x: ${r.stderr}`);
  return { tree: snapshot(dest), xattrs: allXattrs(dest) };
}

/** The entries where two views differ (at most 10), for a readable failure. */
function differences(got: Map<string, unknown>, want: Map<string, unknown>): string[] {
  const out: string[] = [];
  for (const k of new Set([...got.keys(), ...want.keys()])) {
    const a = JSON.stringify(got.get(k), (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
    const b = JSON.stringify(want.get(k), (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
    if (a !== b) out.push(`${k}: image ${a} / tar -x ${b}`);
  }
  return out.slice(0, 10);
}

function mkfsFrom(archive: string, img: string, more: string[] = []): ReturnType<typeof cli> {
  return cli(['mkfs', img, '--size', '128M', '--block-size', '4096', '--from', archive, '--no-sync', ...more]);
}

describe.runIf(haveOracles)('mkfs --from a GNU tar archive', () => {
  const src = path.join(work, 'src');
  const archives: Record<string, string[]> = {
    'posix.tar': ['--format=posix', '--xattrs', '--acls'],
    'gnu.tar': ['--format=gnu'],
    'ustar.tar': ['--format=ustar'],
    'sparse-1.0.tar': ['--format=posix', '--sparse', '--xattrs', '--acls'],
    'sparse-0.1.tar': ['--format=posix', '--sparse', '--sparse-version=0.1'],
    'sparse-0.0.tar': ['--format=posix', '--sparse', '--sparse-version=0.0'],
    'sparse-gnu.tar': ['--format=gnu', '--sparse'],
  };
  let sourceTimes: Map<string, NodeInfo>;
  beforeAll(() => {
    makeVariedTree(src);
    // ustar cannot hold the 4095-byte symlink or names over 100 bytes; it gets a smaller copy.
    if (IS_ROOT) {
      run('mknod', [path.join(src, 'chr'), 'c', '1', '3']);
      run('mknod', [path.join(src, 'blk'), 'b', '7', '200']);
      fs.chownSync(path.join(src, 'small.txt'), 1234, 5678);
      run('setfattr', ['-n', 'user.comment', '-v', 'hello', path.join(src, 'small.txt')]);
      run('setfattr', ['-n', 'trusted.t', '-v', '0x00ff', path.join(src, 'empty')]);
      run('setfattr', ['-n', 'security.capability', '-v', '0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=', path.join(src, 'setuid')]);
      run('setfacl', ['-m', 'u:1000:r,g:50:rw', path.join(src, 'exactly-4k')]);
      run('setfacl', ['-d', '-m', 'u:1001:rx', path.join(src, 'private')]);
    }
    sourceTimes = snapshot(src, { read: false });
    for (const [name, opts] of Object.entries(archives)) {
      const r = run('tar', ['-c', ...opts, '-f', path.join(work, name), '-C', src, '.']);
      if (r.status !== 0 && name !== 'ustar.tar') throw new Error(`tar -c ${name}: ${r.stderr}`);
    }
    run('sh', ['-c', `gzip -k ${path.join(work, 'posix.tar')}`]);
  });

  for (const name of [...Object.keys(archives).filter((n) => n !== 'ustar.tar'), 'posix.tar.gz']) {
    it(`${name}: fsck clean${IS_ROOT ? ', the kernel sees what tar -x makes' : ''}`, () => {
      const archive = path.join(work, name);
      const img = path.join(work, `${name}.img`);
      const r = mkfsFrom(archive, img);
      expect(r.stderr).not.toMatch(/error/);
      expect(r.status).toBe(0);
      expect(fsck(img).status).toBe(0);
      if (!canMount) return;
      const want = tarView(archive);
      const got = imageView(img);
      // tar -x sets atime to the time of extraction; the image keeps the archive's (pax) atime.
      const atimes = new Map<string, bigint | undefined>();
      for (const [k, v] of got.tree) {
        atimes.set(k, (v as { atimeNs?: bigint }).atimeNs);
        delete (v as { atimeNs?: bigint }).atimeNs;
      }
      for (const v of want.tree.values()) delete (v as { atimeNs?: bigint }).atimeNs;
      expect(differences(got.tree, want.tree)).toEqual([]);
      if (name.startsWith('posix'))
        for (const k of ['fast-link', 'deep/hardlink-2', 'empty', 'chr', 'fifo'])
          expect(atimes.get(k), k).toBe(sourceTimes.get(k)!.atimeNs);
      expect(differences(got.xattrs, want.xattrs)).toEqual([]);
    });
  }

  it('a real root file system (the host /etc, /usr/sbin, dpkg database, zoneinfo, setuid programs; and the Debian tree the bench makes, where present): the kernel sees what tar -x makes', () => {
    if (!canMount) return;
    const parts = [
      'etc',
      'usr/sbin',
      'var/lib/dpkg',
      'usr/share/zoneinfo',
      'usr/bin/passwd',
      'usr/bin/su',
      'usr/bin/mount',
    ].filter((p) => fs.existsSync(path.join('/', p)));
    const sources: [string, string, string[]][] = [['host', '/', parts]];
    const debian = path.resolve(__dirname, '../bench/out/debian-minbase');
    if (fs.existsSync(path.join(debian, 'etc/debian_version'))) sources.push(['debian', debian, ['.']]);
    for (const [label, root, members] of sources) {
      const archive = path.join(work, `rootfs-${label}.tar`);
      const c = run('tar', [
        '-c',
        '--format=posix',
        '--xattrs',
        '--acls',
        '--numeric-owner',
        '--warning=no-file-changed',
        '-f',
        archive,
        '-C',
        root,
        ...members,
      ]);
      expect(c.status, c.stderr).toBeLessThanOrEqual(1); // 1: a file changed while tar read it
      const img = path.join(work, `rootfs-${label}.img`);
      const r = cli(['mkfs', img, '--size', 'auto', '--from', archive, '--no-sync']);
      expect(r.status, r.stderr).toBe(0);
      expect(fsck(img).status).toBe(0);
      const want = tarView(archive);
      const got = imageView(img);
      for (const v of [...got.tree.values(), ...want.tree.values()]) delete (v as { atimeNs?: bigint }).atimeNs;
      // Directories the archive only implies (and the root) have no metadata in it: tar -x gives them
      // the time of extraction, the image the time of the entry that implied them.
      const listed = new Set(
        run('tar', ['-tf', archive])
          .stdout.split('\n')
          .map((n) => n.replace(/^\.\//, '').replace(/\/$/, '')),
      );
      for (const [k] of got.tree)
        if (k === '/' || !listed.has(k))
          for (const m of [got.tree, want.tree]) {
            const v = m.get(k) as { mtimeNs?: bigint; mode?: number } | undefined;
            if (v) {
              delete v.mtimeNs;
              if (k === '/') delete v.mode;
            }
          }
      expect(got.tree.size).toBeGreaterThan(100);
      expect(differences(got.tree, want.tree)).toEqual([]);
      expect(differences(got.xattrs, want.xattrs)).toEqual([]);
    }
  });

  it('reads an archive from stdin (plain and gzip) into the same image as from the file', () => {
    for (const name of ['posix.tar', 'posix.tar.gz']) {
      const img = path.join(work, `stdin-${name}.img`);
      const fixed = [
        '--uuid',
        '11111111-2222-3333-4444-555555555555',
        '--hash-seed',
        '11111111-2222-3333-4444-555555555555',
        '--timestamp',
        '1700000000',
      ];
      const r = spawnSync(
        'sh',
        [
          '-c',
          `cat "$1" | "$2" "$3" mkfs "$4" --size 128M --block-size 4096 --from - --no-sync ${fixed.join(' ')}`,
          'sh',
          path.join(work, name),
          process.execPath,
          CLI,
          img,
        ],
        { encoding: 'utf8' },
      );
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const fromFile = path.join(work, `file-${name}.img`);
      expect(
        cli([
          'mkfs',
          fromFile,
          '--size',
          '128M',
          '--block-size',
          '4096',
          '--from',
          path.join(work, name),
          '--no-sync',
          ...fixed,
        ]).status,
      ).toBe(0);
      expect(Buffer.compare(fs.readFileSync(img), fs.readFileSync(fromFile))).toBe(0);
      expect(fsck(img).status).toBe(0);
      // Nothing of the spool file is left beside the image.
      expect(fs.readdirSync(work).filter((n) => n.includes('spool'))).toEqual([]);
    }
  });

  it('a stream is read once with memory bounded by metadata: 768 MiB of file data through stdin', () => {
    const big = path.join(work, 'bigsrc');
    fs.mkdirSync(big);
    const fd = fs.openSync(path.join(big, 'big.bin'), 'w');
    const chunk = Buffer.alloc(8 << 20, 0x5a);
    for (let i = 0; i < 96; i++) fs.writeSync(fd, chunk);
    fs.closeSync(fd);
    const img = path.join(work, 'big-stdin.img');
    const r = spawnSync(
      'sh',
      [
        '-c',
        'tar -c -C "$1" . | /usr/bin/time -f "%M" "$2" "$3" mkfs "$4" --size 1G --from - --no-sync',
        'sh',
        big,
        process.execPath,
        CLI,
        img,
      ],
      { encoding: 'utf8' },
    );
    fs.rmSync(big, { recursive: true });
    expect(r.status, r.stderr).toBe(0);
    const peakKiB = Number(r.stderr.trim().split('\n').pop());
    expect(peakKiB).toBeLessThan(250 * 1024);
    expect(fsck(img).status).toBe(0);
    const rd = Ext4Reader.open(FileDevice.open(img));
    expect(rd.inode(rd.lookup('/big.bin')).size).toBe(768 << 20);
    fs.rmSync(img);
  });

  it('--size auto picks the smallest size that holds the tree, plus the slack', () => {
    const img = path.join(work, 'auto.img');
    const r = cli([
      'mkfs',
      img,
      '--size',
      'auto',
      '--size-slack',
      '0',
      '--from',
      path.join(work, 'posix.tar'),
      '--json',
      '--no-sync',
    ]);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { sizeBytes: number; blockSize: number };
    expect(out.sizeBytes).toBe(fs.statSync(img).size);
    expect(fsck(img).status).toBe(0);
    // One MiB less does not hold it (the estimate is the writer's own).
    const small = path.join(work, 'auto-small.img');
    const r2 = cli([
      'mkfs',
      small,
      '--size',
      String(out.sizeBytes - (1 << 20)),
      '--block-size',
      String(out.blockSize),
      '--from',
      path.join(work, 'posix.tar'),
      '--no-sync',
    ]);
    expect(r2.status).toBe(1);
    expect(r2.stderr).toMatch(/NO_SPACE|TOO_SMALL/);
    expect(fs.existsSync(small)).toBe(false);
    // 50% slack makes a bigger image.
    const r3 = cli([
      'mkfs',
      path.join(work, 'auto50.img'),
      '--size',
      'auto',
      '--size-slack',
      '50%',
      '--from',
      path.join(work, 'posix.tar'),
      '--json',
      '--no-sync',
    ]);
    expect((JSON.parse(r3.stdout) as { sizeBytes: number }).sizeBytes).toBeGreaterThanOrEqual(
      out.sizeBytes * 1.5 - (1 << 20),
    );
    expect(fsck(path.join(work, 'auto50.img')).status).toBe(0);
  });
});

/** Writes an archive with Python's tarfile from a JSON description of members. */
function pyTar(out: string, members: object[], opts: { format?: string; gzip?: boolean } = {}): void {
  const script = `
import tarfile, json, sys, io
members = json.load(sys.stdin)
fmt = {'pax': tarfile.PAX_FORMAT, 'gnu': tarfile.GNU_FORMAT, 'ustar': tarfile.USTAR_FORMAT}[${JSON.stringify(opts.format ?? 'pax')}]
with tarfile.open(${JSON.stringify(out)}, 'w:gz' if ${opts.gzip ? 'True' : 'False'} else 'w', format=fmt) as t:
    for m in members:
        ti = tarfile.TarInfo(m['name'].encode('latin1').decode('utf-8', 'surrogateescape') if m.get('raw') else m['name'])
        ti.type = {'file': tarfile.REGTYPE, 'dir': tarfile.DIRTYPE, 'symlink': tarfile.SYMTYPE, 'link': tarfile.LNKTYPE, 'chr': tarfile.CHRTYPE, 'fifo': tarfile.FIFOTYPE}[m.get('type', 'file')]
        ti.mode = m.get('mode', 0o644)
        ti.uid = m.get('uid', 0); ti.gid = m.get('gid', 0)
        ti.mtime = m.get('mtime', 1700000000)
        ti.linkname = m.get('link', '')
        ti.devmajor = m.get('major', 0); ti.devminor = m.get('minor', 0)
        if 'pax' in m: ti.pax_headers = m['pax']
        data = m.get('data', '').encode()
        ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
        t.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
`;
  const r = spawnSync('python3', ['-c', script], { input: JSON.stringify(members), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python tarfile: ${r.stderr}`);
}

async function readTree(archive: string): Promise<{ r: Ext4Reader; warnings: string[] }> {
  const warnings: string[] = [];
  const t = await tarTreeSource(archive, { onWarning: (m) => warnings.push(m), spoolDir: work });
  const img = `${archive}.img`;
  try {
    formatImage(img, { sizeBytes: 64 << 20, source: t.source, sync: false });
  } finally {
    t.close();
  }
  expect(fsck(img).status).toBe(0);
  return { r: Ext4Reader.open(FileDevice.open(img)), warnings };
}

const text = (r: Ext4Reader, p: string) => Buffer.from(r.readFileBytes(r.lookup(p))).toString();
const lookup = (r: Ext4Reader, p: string) => r.inode(r.lookup(p));

describe.runIf(oracleAvailable('awkward archives (e2fsprogs, python3)', HAVE_E2FSPROGS && haveTool('python3')))(
  'awkward archives',
  () => {
    it('entries before their parents, implied parents, repeated entries (the last wins)', async () => {
      const a = path.join(work, 'order.tar');
      pyTar(a, [
        { name: 'a/b/c.txt', data: 'c' },
        { name: 'a/', type: 'dir', mode: 0o700, uid: 7 },
        { name: 'x', data: 'first' },
        { name: 'x', data: 'second' },
        { name: 'y', data: 'file' },
        { name: 'y/', type: 'dir', mode: 0o750 },
        { name: 'y/inside', data: 'in' },
        { name: 'z/', type: 'dir' },
        { name: 'z/kid', data: 'gone' },
        { name: 'z', data: 'now a file' },
      ]);
      const { r } = await readTree(a);
      expect(text(r, '/a/b/c.txt')).toBe('c');
      expect(lookup(r, '/a').mode & 0o7777).toBe(0o700);
      expect(lookup(r, '/a').uid).toBe(7);
      expect(lookup(r, '/a/b').mode & 0o7777).toBe(0o755);
      expect(text(r, '/x')).toBe('second');
      expect(text(r, '/y/inside')).toBe('in');
      expect(lookup(r, '/y').mode & 0o7777).toBe(0o750);
      expect(text(r, '/z')).toBe('now a file');
    });

    it('hard links (also to symlinks and to entries replaced later), a link to a later entry is an error', async () => {
      const a = path.join(work, 'links.tar');
      pyTar(a, [
        { name: 'f', data: 'data' },
        { name: 'h', type: 'link', link: 'f' },
        { name: 's', type: 'symlink', link: 'f' },
        { name: 'hs', type: 'link', link: './s' },
        { name: 'g', data: 'old' },
        { name: 'hg', type: 'link', link: 'g' },
        { name: 'g', data: 'new' },
      ]);
      const { r } = await readTree(a);
      expect(r.lookup('/h')).toBe(r.lookup('/f'));
      expect(lookup(r, '/f').linksCount).toBe(2);
      expect(r.lookup('/hs')).toBe(r.lookup('/s'));
      expect(lookup(r, '/s').linksCount).toBe(2);
      expect(text(r, '/hg')).toBe('old');
      expect(text(r, '/g')).toBe('new');
      const bad = path.join(work, 'forward.tar');
      pyTar(bad, [
        { name: 'h', type: 'link', link: 'later' },
        { name: 'later', data: 'x' },
      ]);
      const img = path.join(work, 'forward.img');
      const res = mkfsFrom(bad, img);
      expect(res.status).toBe(1);
      expect(res.stderr).toMatch(/SOURCE_ERROR.*\/h: hard link to \/later, which is not earlier/);
      expect(fs.existsSync(img)).toBe(false);
    });

    it('255-byte names, names with newlines, long names and link names (pax and GNU), numeric ids over 2^21', async () => {
      for (const format of ['pax', 'gnu']) {
        const a = path.join(work, `names-${format}.tar`);
        const deep = `${'d'.repeat(200)}/${'e'.repeat(200)}`;
        pyTar(
          a,
          [
            { name: 'n'.repeat(255), data: '255' },
            { name: 'new\nline', data: 'nl' },
            { name: `${deep}/f`, data: 'deep' },
            { name: 'long-link', type: 'symlink', link: 't'.repeat(300) },
            { name: 'big-ids', data: 'ids', uid: 4_000_000_000, gid: 3_000_000 },
          ],
          { format },
        );
        const { r } = await readTree(a);
        expect(text(r, '/' + 'n'.repeat(255))).toBe('255');
        expect(text(r, '/new\nline')).toBe('nl');
        expect(text(r, `/${deep}/f`)).toBe('deep');
        expect(Buffer.from(r.readLink(r.lookup('/long-link'))).toString()).toBe('t'.repeat(300));
        expect([lookup(r, '/big-ids').uid, lookup(r, '/big-ids').gid]).toEqual([4_000_000_000, 3_000_000]);
      }
      const tooLong = path.join(work, 'too-long.tar');
      pyTar(tooLong, [{ name: 'n'.repeat(256), data: 'x' }]);
      const img = path.join(work, 'too-long.img');
      const res = mkfsFrom(tooLong, img);
      expect(res.status).toBe(1);
      expect(res.stderr).toMatch(/NAME_TOO_LONG/);
      expect(fs.existsSync(img)).toBe(false);
    });

    it('libarchive and Red Hat attribute records; the last of a repeated attribute wins', async () => {
      const a = path.join(work, 'libarchive.tar');
      pyTar(a, [
        {
          name: 'f',
          data: 'x',
          pax: {
            'LIBARCHIVE.xattr.user.with%3Dequals': Buffer.from([0, 1, 2, 255]).toString('base64'),
            'RHT.security.selinux': 'system_u:object_r:bin_t:s0',
            'SCHILY.xattr.user.plain': 'plain',
            'SCHILY.xattr.user.twice': 'first',
            'LIBARCHIVE.xattr.user.twice': Buffer.from('second').toString('base64'),
          },
        },
      ]);
      const { r } = await readTree(a);
      const xs = new Map(r.xattrs(r.lookup('/f')).map((x) => [x.name, Buffer.from(x.value).toString('hex')]));
      expect(xs.get('user.with=equals')).toBe('000102ff');
      expect(xs.get('security.selinux')).toBe(Buffer.from('system_u:object_r:bin_t:s0').toString('hex'));
      expect(xs.get('user.plain')).toBe(Buffer.from('plain').toString('hex'));
      expect(xs.get('user.twice')).toBe(Buffer.from('second').toString('hex'));
      expect(r.xattrs(r.lookup('/f')).filter((x) => x.name === 'user.twice')).toHaveLength(1);
    });

    it('--spec and --owner over an archive: the spec names archive paths, its ids win over --owner', () => {
      const a = path.join(work, 'spec-src.tar');
      pyTar(a, [
        { name: 'usr/bin/ping', data: 'ELF', mode: 0o755, uid: 1000 },
        { name: 'etc/shadow', data: 'root:*:', mode: 0o600 },
      ]);
      const spec = path.join(work, 'archive.mtree');
      fs.writeFileSync(
        spec,
        '#mtree\n./usr/bin/ping mode=04755 xattr.security.capability=0x0100000200200000000000000000000000000000\n./etc/shadow gid=42 mode=0640\n',
      );
      const img = path.join(work, 'spec-archive.img');
      const r = mkfsFrom(a, img, ['--owner', '0:0', '--spec', spec]);
      expect(r.status, r.stderr).toBe(0);
      expect(fsck(img).status).toBe(0);
      const rd = Ext4Reader.open(FileDevice.open(img));
      const ping = rd.inode(rd.lookup('/usr/bin/ping'));
      expect([ping.mode & 0o7777, ping.uid, ping.gid]).toEqual([0o4755, 0, 0]);
      expect(rd.xattrs(rd.lookup('/usr/bin/ping')).map((x) => x.name)).toContain('security.capability');
      const shadow = rd.inode(rd.lookup('/etc/shadow'));
      expect([shadow.mode & 0o7777, shadow.uid, shadow.gid]).toEqual([0o640, 0, 42]);
      // A spec path the archive does not hold fails before any image is written.
      fs.appendFileSync(spec, './etc/missing mode=0600\n');
      const bad = path.join(work, 'spec-missing.img');
      const r2 = mkfsFrom(a, bad, ['--spec', spec]);
      expect(r2.status).toBe(1);
      expect(r2.stderr).toMatch(/NOT_FOUND.*etc\/missing/);
      expect(fs.existsSync(bad)).toBe(false);
    });

    it('pax times to the nanosecond, before 1970 too', async () => {
      const a = path.join(work, 'times.tar');
      pyTar(a, [
        {
          name: 'ns',
          data: 'x',
          pax: { mtime: '1700000000.123456789', atime: '1600000000.5', ctime: '1650000000.000000001' },
        },
        { name: 'old', data: 'x', pax: { mtime: '-1.25' } },
      ]);
      const { r } = await readTree(a);
      const i = lookup(r, '/ns');
      expect(i.mtime).toEqual({ sec: 1700000000, nsec: 123456789 });
      expect(i.atime).toEqual({ sec: 1600000000, nsec: 500000000 });
      expect(i.ctime).toEqual({ sec: 1650000000, nsec: 1 });
      expect(lookup(r, '/old').mtime).toEqual({ sec: -2, nsec: 750000000 });
    });

    it('names escaping the root are made safe like GNU tar does, with a warning', async () => {
      const a = path.join(work, 'escape.tar');
      pyTar(a, [
        { name: '../../etc/passwd', data: 'p' },
        { name: '/abs/file', data: 'a' },
        { name: 'ok/../../up', data: 'u' },
        { name: 'l', type: 'link', link: '../etc/passwd' },
      ]);
      const { r, warnings } = await readTree(a);
      expect(text(r, '/etc/passwd')).toBe('p');
      expect(text(r, '/abs/file')).toBe('a');
      expect(text(r, '/up')).toBe('u');
      expect(r.lookup('/l')).toBe(r.lookup('/etc/passwd'));
      expect(warnings.join('\n')).toMatch(/removing leading '\.\.\/\.\.\/'/);
      expect(warnings.join('\n')).toMatch(/removing leading '\/'/);
    });

    it('a path through a non-directory is an error; devices and FIFOs are kept', async () => {
      const a = path.join(work, 'notdir.tar');
      pyTar(a, [
        { name: 'f', data: 'x' },
        { name: 'f/g', data: 'y' },
      ]);
      await expect(readTree(a)).rejects.toThrow(/\/f is not a directory in the archive/);
      const d = path.join(work, 'devs.tar');
      pyTar(d, [
        { name: 'null', type: 'chr', major: 1, minor: 3, mode: 0o666 },
        { name: 'pipe', type: 'fifo' },
      ]);
      const { r } = await readTree(d);
      expect(lookup(r, '/null').mode & 0o170000).toBe(0o020000);
      expect(lookup(r, '/pipe').mode & 0o170000).toBe(0o010000);
    });

    it('truncated archives, damaged gzip, garbage and non-archives: a clear error, no image; trailing bytes after gzip are ignored', () => {
      const a = path.join(work, 'full.tar');
      pyTar(a, [
        { name: 'big', data: 'x'.repeat(20000) },
        { name: 'after', data: 'y' },
      ]);
      const whole = fs.readFileSync(a);
      const cases: [string, Buffer, RegExp][] = [
        ['cut-in-data.tar', whole.subarray(0, 5000), /truncated/],
        ['cut-in-header.tar', whole.subarray(0, 512 * 42 + 100), /truncated/],
        ['not-tar.bin', Buffer.from('hello, this is not an archive at all'.repeat(30)), /not a tar archive/],
        ['empty.tar', Buffer.alloc(0), /not a tar archive \(the input is empty\)/],
      ];
      const gz = path.join(work, 'full.tar.gz');
      run('sh', ['-c', `gzip -c ${a} > ${gz}`]);
      const gzb = fs.readFileSync(gz);
      cases.push(['cut.tar.gz', gzb.subarray(0, gzb.length - 20), /gzip stream is truncated|truncated/]);
      const damaged = Buffer.from(gzb);
      damaged[20]! ^= 0xff;
      damaged[21]! ^= 0xff;
      cases.push(['damaged.tar.gz', damaged, /gzip stream is damaged|truncated|not a tar/]);
      for (const [name, bytes, msg] of cases) {
        const p = path.join(work, name);
        fs.writeFileSync(p, bytes);
        const img = path.join(work, `${name}.img`);
        const r = mkfsFrom(p, img);
        expect(r.status, name).toBe(1);
        expect(r.stderr, name).toMatch(/error \[SOURCE_ERROR\]/);
        expect(r.stderr, name).toMatch(msg);
        expect(fs.existsSync(img), name).toBe(false);
        expect(
          fs.readdirSync(work).filter((n) => n.startsWith('.')),
          name,
        ).toEqual([]);
      }
      // Two gzip members, each half of the archive (what concatenated .gz files are): read as one.
      const multi = path.join(work, 'multi.tar.gz');
      const half = Math.floor(whole.length / 2);
      fs.writeFileSync(path.join(work, 'h1'), whole.subarray(0, half));
      fs.writeFileSync(path.join(work, 'h2'), whole.subarray(half));
      run('sh', ['-c', `gzip -c ${work}/h1 > ${multi} && gzip -c ${work}/h2 >> ${multi}`]);
      const mimg = path.join(work, 'multi.img');
      expect(mkfsFrom(multi, mimg).status).toBe(0);
      expect(fsck(mimg).status).toBe(0);
      const mr = Ext4Reader.open(FileDevice.open(mimg));
      expect(Buffer.from(mr.readFileBytes(mr.lookup('/big'))).toString()).toBe('x'.repeat(20000));
      expect(Buffer.from(mr.readFileBytes(mr.lookup('/after'))).toString()).toBe('y');
      // Only end-of-archive blocks: a valid empty archive, as tar -cf x.tar -T /dev/null makes.
      const zeros = path.join(work, 'zeros.tar');
      fs.writeFileSync(zeros, Buffer.alloc(10240));
      expect(mkfsFrom(zeros, path.join(work, 'zeros.img')).status).toBe(0);
      expect(fsck(path.join(work, 'zeros.img')).status).toBe(0);
      const trailing = path.join(work, 'trailing.tar.gz');
      fs.writeFileSync(trailing, Buffer.concat([gzb, Buffer.from('garbage after the gzip stream\n')]));
      const img = path.join(work, 'trailing.img');
      expect(mkfsFrom(trailing, img).status).toBe(0);
      expect(fsck(img).status).toBe(0);
      const xz = path.join(work, 'x.tar.xz');
      fs.writeFileSync(xz, Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2, 3]));
      const r = mkfsFrom(xz, path.join(work, 'xz.img'));
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/UNSUPPORTED_FEATURE.*xz-compressed/);
    });

    it('text ACLs without a binary attribute (star) become ACL attributes; names in them are refused', async () => {
      const a = path.join(work, 'acl.tar');
      pyTar(a, [
        {
          name: 'f',
          data: 'x',
          pax: { 'SCHILY.acl.access': 'user::rw-,user:1000:r--,group::r--,mask::r--,other::---' },
        },
        {
          name: 'd/',
          type: 'dir',
          pax: { 'SCHILY.acl.default': 'user::rwx,group::r-x,other::r-x,user:42:rwx,mask::rwx' },
        },
      ]);
      const { r } = await readTree(a);
      const acl = r.xattrs(r.lookup('/f')).find((x) => x.name === 'system.posix_acl_access');
      expect(Buffer.from(acl!.value).toString('hex')).toBe(
        '02000000' +
          '01000600ffffffff' +
          '02000400e8030000' +
          '04000400ffffffff' +
          '10000400ffffffff' +
          '20000000ffffffff',
      );
      expect(r.xattrs(r.lookup('/d')).map((x) => x.name)).toContain('system.posix_acl_default');
      const named = path.join(work, 'acl-named.tar');
      pyTar(named, [
        {
          name: 'f',
          data: 'x',
          pax: { 'SCHILY.acl.access': 'user::rw-,user:daemon:r--,group::r--,mask::r--,other::---' },
        },
      ]);
      await expect(readTree(named)).rejects.toThrow(/names user "daemon" by name/);
    });

    it('autoSize refuses nothing it cannot fit and grows with the tree', async () => {
      const a = path.join(work, 'auto.tar');
      pyTar(
        a,
        Array.from({ length: 300 }, (_, i) => ({ name: `d${i % 7}/f${i}`, data: 'z'.repeat(i * 100) })),
      );
      const t = await tarTreeSource(a, { spoolDir: work });
      try {
        const size = autoSize({ source: t.source }, { bytes: 0 }).sizeBytes;
        expect(size % (1 << 20)).toBe(0);
        const img = path.join(work, 'auto-lib.img');
        formatImage(img, { sizeBytes: size, source: t.source, sync: false });
        expect(fsck(img).status).toBe(0);
        expect(() => formatImage(img + '2', { sizeBytes: size - (1 << 20), source: t.source, sync: false })).toThrow(
          Ext4Error,
        );
      } finally {
        t.close();
      }
    });
  },
);

const ROUNDS = Number(process.env.TAR_FUZZ_ROUNDS ?? 300);

describe.runIf(oracleAvailable('damaged archives (e2fsprogs, python3)', HAVE_E2FSPROGS && haveTool('python3')))(
  'damaged archives never crash the reader',
  () => {
    it('random byte flips and cuts of pax, GNU and gzip archives: an image or an Ext4Error, nothing else', async () => {
      const members = [
        { name: 'd/', type: 'dir' },
        { name: 'd/' + 'long'.repeat(40), data: 'a'.repeat(3000), pax: { 'SCHILY.xattr.user.k': 'v', mtime: '1.5' } },
        { name: 'd/l', type: 'symlink', link: 'x'.repeat(150) },
        { name: 'd/h', type: 'link', link: 'd/' + 'long'.repeat(40) },
        { name: 'n', type: 'chr', major: 1, minor: 5 },
      ];
      const bases: [string, Buffer][] = [];
      for (const format of ['pax', 'gnu']) {
        const p = path.join(work, `fuzz-${format}.tar`);
        pyTar(p, members, { format });
        bases.push([format, fs.readFileSync(p)]);
      }
      bases.push(['gzip', zlib.gzipSync(bases[0]![1])]);
      const rand = rng(20261130); // fixed: a failing round replays
      let images = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const [, base] = bases[round % bases.length]!;
        const b = Buffer.from(base);
        const flips = 1 + Math.floor(rand() * 4);
        for (let k = 0; k < flips; k++) b[Math.floor(rand() * Math.min(b.length, 4096))] = Math.floor(rand() * 256);
        const cut = rand() < 0.2 ? b.subarray(0, Math.floor(rand() * b.length)) : b;
        const p = path.join(work, 'fuzz.tar');
        fs.writeFileSync(p, cut);
        try {
          const t = await tarTreeSource(p, { spoolDir: work, onWarning: () => {} });
          try {
            // Whatever a damaged archive still gives is a sound image.
            const img = path.join(work, 'fuzz.img');
            formatImage(img, { sizeBytes: 16 << 20, source: t.source, sync: false });
            expect(fsck(img).status, `round ${round}`).toBe(0);
            images++;
          } finally {
            t.close();
          }
        } catch (e) {
          expect(e, `round ${round}: ${(e as Error).stack}`).toBeInstanceOf(Ext4Error);
        }
      }
      expect(images).toBeGreaterThan(0);
    });
  },
);
