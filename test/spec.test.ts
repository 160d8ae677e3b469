/**
 * --spec: per-path metadata from an mtree(5) spec. The parser on its own (both path forms, defaults,
 * continuation, vis names, errors by line); the wrapper over a source (owner first, the spec wins,
 * hard links, optional, nochange, mismatches); and the CLI (mkfs --from, seed, materialize, cp-in and
 * edit scripts), every image checked by e2fsck and, as root, by the kernel's view of a loop mount.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseSpec, unvis, type SpecEntry } from '../src/tree/sources/spec.js';
import { applySpec, checkSpec } from '../src/tree/sources/overlay.js';
import { memoryTreeSource } from '../src/tree/sources/memory.js';
import { autoSize, formatImage } from '../src/mkfs/image.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import type { SourceNode, TreeSource } from '../src/core/types.js';
import { HAVE_E2FSPROGS, IS_ROOT, oracleAvailable, haveTool, run, fsck, scratchDir, cli } from './helpers/oracle.js';
import { stubNode } from './helpers/source.mjs';

const haveOracles = oracleAvailable('spec oracle suite', HAVE_E2FSPROGS);
const canMount = oracleAvailable(
  'spec kernel-mount suite (needs root, mount, getfattr)',
  IS_ROOT && HAVE_E2FSPROGS && haveTool('mount') && haveTool('getfattr'),
);

const work = scratchDir('ext4wd-spec');
afterAll(() => {
  run('sh', ['-c', `grep -q ${work} /proc/mounts && umount ${work}/mnt* 2>/dev/null; true`]);
  fs.rmSync(work, { recursive: true, force: true });
});

/** cap_net_raw+ep as a VFS v2 capability (what `setcap cap_net_raw+ep` stores). */
const CAP_NET_RAW = '0100000200200000000000000000000000000000';
/** getfattr's report of a file's security.capability, in hex (read through a kernel mount). */
const capabilityThroughKernel = (file: string) =>
  run('getfattr', ['-n', 'security.capability', '-e', 'hex', '--absolute-names', file]).stdout;

const bytes = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));
const byPath = (entries: SpecEntry[]) => Object.fromEntries(entries.map((e) => [e.path, e]));
const err = (code: string, message?: RegExp): unknown =>
  expect.objectContaining({ code, ...(message ? { message: expect.stringMatching(message) as unknown } : {}) });

describe('parseSpec', () => {
  it('reads the full-path form bsdtar writes, with uname/gname beside the numbers and digests ignored', () => {
    const s = parseSpec(
      [
        '#mtree',
        '/set type=file uid=0 gid=0 mode=644',
        '. gname=root uname=root time=1700000000.554693815 mode=755 gid=0 uid=0 type=dir',
        './usr/bin/ping nlink=1 uname=root gname=root time=1700000000.5 mode=4755 type=file size=3 \\',
        '    sha256digest=abcd flags=none',
        './usr/bin/lnk type=link mode=777 link=ping',
        './sub\\040dir/tab\\011q\\134b size=1',
      ].join('\n'),
      'b.mtree',
    );
    expect(s.file).toBe('b.mtree');
    const e = byPath(s.entries);
    expect(Object.keys(e)).toEqual(['.', './usr/bin/ping', './usr/bin/lnk', './sub dir/tab\tq\\b']);
    expect(e['.']).toMatchObject({ type: 'dir', mode: 0o755, uid: 0, gid: 0, line: 3, names: [] });
    expect(e['.']!.time).toEqual({ sec: 1700000000, nsec: 554693815 });
    expect(e['./usr/bin/ping']).toMatchObject({ type: 'file', mode: 0o4755, size: 3, line: 4, optional: false });
    expect(e['./usr/bin/ping']!.time).toEqual({ sec: 1700000000, nsec: 500000000 });
    expect(e['./usr/bin/ping']!.names.map((n) => Buffer.from(n).toString())).toEqual(['usr', 'bin', 'ping']);
    expect(e['./usr/bin/lnk']).toMatchObject({ type: 'symlink', link: bytes('ping') });
    // Defaults from /set: type=file, mode 0644.
    expect(e['./sub dir/tab\tq\\b']).toMatchObject({ type: 'file', mode: 0o644, uid: 0, size: 1 });
  });

  it('reads the relative form mtree -c writes: entries under the current directory, type=dir descends, .. goes up', () => {
    const s = parseSpec(
      [
        '#\t   user: root',
        '',
        '# .',
        '/set type=file uid=0 gid=0 mode=04755 nlink=1 flags=none',
        '.               type=dir mode=0755 nlink=3 time=1700000000.000000000',
        '    a.txt       nlink=2 size=3 time=1700000000.000000000',
        '    lnk         type=link mode=0777 time=1700000000.000000000 link=a.txt',
        '',
        '# ./sub dir',
        '/set type=file uid=0 gid=0 mode=0644 nlink=1 flags=none',
        'sub\\sdir        type=dir mode=0755 nlink=3 time=1700000000.000000000',
        '    f           size=2 time=1700000000.000000000',
        'deep            type=dir mode=0700 nlink=2 \\',
        '                time=1700000000.000000000',
        '    tab\\tq\\\\b   size=1 uid=7',
        '..',
        '..',
        '/unset all',
        'top             gid=3',
        '..',
      ].join('\r\n'),
    );
    const e = byPath(s.entries);
    expect(Object.keys(e)).toEqual([
      '.',
      './a.txt',
      './lnk',
      './sub dir',
      './sub dir/f',
      './sub dir/deep',
      './sub dir/deep/tab\tq\\b',
      './top',
    ]);
    expect(e['./a.txt']).toMatchObject({ type: 'file', mode: 0o4755, size: 3 });
    expect(e['./lnk']).toMatchObject({ type: 'symlink', mode: 0o777, link: bytes('a.txt') });
    expect(e['./sub dir/f']).toMatchObject({ type: 'file', mode: 0o644 });
    expect(e['./sub dir/deep']).toMatchObject({ type: 'dir', mode: 0o700, line: 13 });
    expect(e['./sub dir/deep/tab\tq\\b']).toMatchObject({ uid: 7, gid: 0, size: 1, line: 15 });
    // After /unset all nothing is inherited.
    expect(e['./top']).toEqual({
      path: './top',
      names: [bytes('top')],
      line: 19,
      gid: 3,
      optional: false,
      nochange: false,
      xattrs: [],
    });
  });

  it('/unset takes single keywords back; an entry named twice is merged, the later keywords winning', () => {
    const s = parseSpec(
      [
        '/set uid=5 gid=6 mode=0600 optional xattr.user.a=x',
        './a',
        '/unset uid optional xattr.user.a',
        './b',
        './a gid=9 xattr.user.b=0sAQI=',
      ].join('\n'),
    );
    const e = byPath(s.entries);
    expect(s.entries.map((x) => x.path)).toEqual(['./a', './b']);
    expect(e['./a']).toMatchObject({ uid: 5, gid: 9, mode: 0o600, optional: true, line: 1 + 1 });
    expect(e['./a']!.xattrs).toEqual([
      { name: 'user.a', value: bytes('x') },
      { name: 'user.b', value: new Uint8Array([1, 2]) },
    ]);
    expect(e['./b']).toMatchObject({ gid: 6, mode: 0o600, optional: false, xattrs: [] });
    expect(e['./b']!.uid).toBeUndefined();
  });

  it('xattr values: 0x hex, 0s base64, "text" and vis-encoded text; names may be vis-encoded too', () => {
    const s = parseSpec(
      [
        `./f xattr.security.capability=0x${CAP_NET_RAW} xattr.user.b64=0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=`,
        './f xattr.user.q="system_u:object_r:bin_t:s0\\000" xattr.user.v=a\\040b\\\\c xattr.user.x\\075y=1',
      ].join('\n'),
    );
    const xs = Object.fromEntries(s.entries[0]!.xattrs.map((x) => [x.name, Buffer.from(x.value)]));
    expect(xs['security.capability']!.toString('hex')).toBe(CAP_NET_RAW);
    expect(xs['user.b64']!.toString('hex')).toBe(CAP_NET_RAW);
    expect(xs['user.q']!.toString('latin1')).toBe('system_u:object_r:bin_t:s0\0');
    expect(xs['user.v']!.toString('latin1')).toBe('a b\\c');
    expect(xs['user.x=y']!.toString()).toBe('1');
  });

  it('unvis decodes the vis(3) escapes', () => {
    const cases: [string, number[]][] = [
      ['a\\040b', [0x61, 0x20, 0x62]],
      ['\\\\', [0x5c]],
      ['\\n\\t\\r\\b\\a\\v\\f\\s\\E', [10, 9, 13, 8, 7, 11, 12, 32, 27]],
      ['\\0', [0]],
      ['\\01x', [1, 0x78]],
      ['\\3771', [0xff, 0x31]],
      ['\\x41\\xf', [0x41, 0x0f]],
      ['\\^A\\^?', [1, 0x7f]],
      ['\\M-a\\M^A', [0xe1, 0x81]],
      ['a\\$b', [0x61, 0x62]],
      ['\\*\\#', [0x2a, 0x23]],
      ['\xe9', [0xe9]],
    ];
    for (const [enc, want] of cases) expect([...unvis(enc)], enc).toEqual(want);
    expect(() => unvis('x\\')).toThrowError(err('BAD_OPTION'));
    expect(() => unvis('\\400')).toThrowError(err('BAD_OPTION'));
  });

  it('keeps names that are not UTF-8 byte for byte', () => {
    const s = parseSpec(new Uint8Array([...Buffer.from('./caf'), 0xe9, ...Buffer.from(' uid=1\n./x\\351 uid=2')]));
    expect([...s.entries[0]!.names[0]!]).toEqual([0x63, 0x61, 0x66, 0xe9]);
    expect([...s.entries[1]!.names[0]!]).toEqual([0x78, 0xe9]);
  });

  it('every mistake is BAD_OPTION naming the file and line', () => {
    const bad: [string, number][] = [
      ['./a uid=0\n./b bogus=1', 2],
      ['# c\n\n./a mode=0999', 3],
      ['./a mode=u+x', 1],
      ['./a mode=017777', 1],
      ['./a uid=-1', 1],
      ['./a gid=4294967296', 1],
      ['./a type=door', 1],
      ['./a time=yesterday', 1],
      ['./a time=1.1234567890', 1],
      ['./a size=1k', 1],
      ['./a uid', 1],
      ['./a optional=yes', 1],
      ['./a contents=/etc/passwd', 1],
      ['./a uname=root', 1],
      ['/set gname=wheel\n./a uid=0', 2],
      ['./a xattr.user.x', 1],
      ['./a xattr.bogus.x=1', 1],
      ['./a xattr.user.x=0x123', 1],
      ['./a xattr.user.x=0s@@', 1],
      ['./a/../b', 1],
      ['/usr/bin/ping uid=0', 1],
      ['/set', 1],
      ['/unset nothing', 1],
      ['a type=dir\n..\n..', 3],
      ['..', 1],
      ['.. uid=0', 1],
      ['./a \\', 1],
      ['./a uid=0\n./b \\\n  gid=0 \\', 2],
      ['./a\\000b', 1],
      [`./${'n'.repeat(256)}`, 1],
    ];
    for (const [text, line] of bad)
      expect(() => parseSpec(text, 't.mtree'), text).toThrowError(
        err('BAD_OPTION', new RegExp(`^t\\.mtree:${line}: `)),
      );
  });
});

/** A memory tree: /bin/ping (file), /bin/p2 -> ping, /etc (dir) with /etc/conf, all 1000:1000. */
function tree(): TreeSource {
  const t = { sec: 1_600_000_000, nsec: 0 };
  return memoryTreeSource(
    {
      uid: 1000,
      gid: 1000,
      children: {
        bin: {
          uid: 1000,
          gid: 1000,
          children: {
            ping: { data: 'pong', uid: 1000, gid: 1000, xattrs: [{ name: 'user.keep', value: bytes('k') }] },
            p2: { target: 'ping', uid: 1000, gid: 1000 },
          },
        },
        etc: { uid: 1000, gid: 1000, children: { conf: { data: 'x', uid: 1000, gid: 1000 } } },
      },
    },
    t,
  );
}

/** path -> node, walking a (wrapped) source the way the writer does. */
function walk(src: TreeSource): Map<string, SourceNode> {
  const out = new Map<string, SourceNode>();
  const go = (n: SourceNode, p: string) => {
    out.set(p, n);
    if (n.kind === 'dir')
      for (const c of n.children()) go(c, `${p === '/' ? '' : p}/${Buffer.from(c.name).toString()}`);
  };
  go(src.root(), '/');
  return out;
}

describe('applySpec', () => {
  it('owner goes on every node first; the spec wins for the paths it names; the source is not read for data', () => {
    const spec = parseSpec(
      [
        '. mode=0711',
        `./bin/ping type=file uid=0 gid=0 mode=04755 size=4 time=1700000000.25 xattr.security.capability=0x${CAP_NET_RAW} xattr.user.keep=0x6e`,
        './bin/p2 type=link link=ping mode=0700 uid=5',
        './etc gid=42',
      ].join('\n'),
    );
    const n = walk(applySpec(tree(), spec, { owner: { uid: 7, gid: 8 } }));
    const show = (p: string) => {
      const x = n.get(p)!;
      return [x.perm.toString(8), x.uid, x.gid];
    };
    expect(show('/')).toEqual(['711', 7, 8]);
    expect(show('/bin')).toEqual(['755', 7, 8]);
    expect(show('/bin/ping')).toEqual(['4755', 0, 0]);
    // Symlinks keep their mode (Linux ignores it); the owner is set.
    expect(show('/bin/p2')).toEqual(['777', 5, 8]);
    expect(show('/etc')).toEqual(['755', 7, 42]);
    expect(show('/etc/conf')).toEqual(['644', 7, 8]);
    const ping = n.get('/bin/ping')!;
    for (const t of [ping.mtime, ping.atime, ping.ctime]) expect(t).toEqual({ sec: 1700000000, nsec: 250000000 });
    expect(n.get('/etc/conf')!.mtime).toEqual({ sec: 1_600_000_000, nsec: 0 });
    // The spec's attributes join the node's own, replacing one of the same name.
    expect(ping.xattrs().map((x) => [x.name, Buffer.from(x.value).toString('hex')])).toEqual([
      ['security.capability', CAP_NET_RAW],
      ['user.keep', '6e'],
    ]);
    // Data comes from the source as it is.
    const buf = new Uint8Array(8);
    expect(Buffer.from(buf.subarray(0, ping.openData().read(buf, 8, 0))).toString()).toBe('pong');
  });

  it('without an owner, entries the spec does not name keep the source metadata', () => {
    const n = walk(applySpec(tree(), parseSpec('./etc/conf uid=3')));
    expect([n.get('/etc/conf')!.uid, n.get('/etc/conf')!.gid]).toEqual([3, 1000]);
    expect(n.get('/etc')!.uid).toBe(1000);
    expect(n.get('/bin/ping')!.uid).toBe(1000);
  });

  it('a missing path is NOT_FOUND naming it, unless optional; nochange only asks that it exists', () => {
    expect(() => applySpec(tree(), parseSpec('./bin/ping uid=0\n./bin/pong uid=0', 's'))).toThrowError(
      err('NOT_FOUND', /^s:2: \.\/bin\/pong /),
    );
    expect(() => checkSpec(tree(), parseSpec('./bin/ping/x uid=0', 's'))).toThrowError(err('NOT_FOUND', /^s:1: /));
    expect(() => checkSpec(tree(), parseSpec('./nodir/deeper/x uid=0', 's'))).toThrowError(err('NOT_FOUND'));
    const n = walk(applySpec(tree(), parseSpec('./bin/pong optional uid=0\n./gone/x optional\n./etc nochange uid=0')));
    expect(n.has('/bin/pong')).toBe(false);
    expect(n.get('/etc')!.uid).toBe(1000);
    expect(() => checkSpec(tree(), parseSpec('./gone nochange'))).toThrowError(err('NOT_FOUND'));
  });

  it('type, link and size must agree with the source: SPEC_MISMATCH', () => {
    for (const line of [
      './bin/ping type=dir',
      './bin type=file',
      './bin/p2 type=file',
      './bin/p2 link=pong',
      './bin/ping link=x',
      './bin/ping size=5',
    ])
      expect(() => checkSpec(tree(), parseSpec(line, 's')), line).toThrowError(err('SPEC_MISMATCH', /^s:1: /));
    // size describes regular files only.
    expect(() => checkSpec(tree(), parseSpec('./bin size=1'))).not.toThrow();
  });

  it('hard links: whichever name the spec gives, every link of the inode gets the metadata', () => {
    const file = (name: string) =>
      stubNode({ name: bytes(name), displayPath: `/${name}`, linkKey: 'inode-1', uid: 1000, gid: 1000 });
    const src: TreeSource = {
      root: () => stubNode({ kind: 'dir', perm: 0o755, children: () => [file('a'), file('b')] }),
    };
    const n = walk(applySpec(src, parseSpec('./b uid=0 mode=04755\n./a gid=0')));
    for (const p of ['/a', '/b']) expect([n.get(p)!.uid, n.get(p)!.gid, n.get(p)!.perm]).toEqual([0, 0, 0o4755]);
    expect(() => applySpec(src, parseSpec('./b uid=0\n./a uid=1', 's'))).toThrowError(err('BAD_OPTION', /^s:2: /));
  });

  it('a single-file source: . is the file itself', () => {
    const one: TreeSource = { root: () => stubNode({ name: bytes('f'), uid: 9 }) };
    const r = applySpec(one, parseSpec('. type=file mode=0600 uid=0')).root();
    expect([r.perm, r.uid]).toEqual([0o600, 0]);
    expect(() => applySpec(one, parseSpec('./x'))).toThrowError(err('NOT_FOUND'));
  });
});

// ---- the CLI ----

let n = 0;
const fresh = (what: string) => path.join(work, `${what}${n++}`);

/** A host tree as a user makes it: nothing owned by root on purpose, no special modes. */
function hostTree(): string {
  const d = fresh('src');
  fs.mkdirSync(path.join(d, 'bin'), { recursive: true });
  fs.mkdirSync(path.join(d, 'etc', 'ssl'), { recursive: true });
  fs.writeFileSync(path.join(d, 'bin', 'ping'), 'ping binary\n');
  fs.writeFileSync(path.join(d, 'bin', 'tool'), 'tool\n');
  fs.writeFileSync(path.join(d, 'etc', 'ssl', 'key.pem'), 'secret\n');
  fs.symlinkSync('ping', path.join(d, 'bin', 'ping6'));
  return d;
}

function writeSpec(lines: string[]): string {
  const f = fresh('spec');
  fs.writeFileSync(f, lines.join('\n') + '\n');
  return f;
}

interface Meta {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: string;
  atime: string;
  ctime: string;
  xattrs: Record<string, string>;
}

/** What our reader sees at `p`. */
function readMeta(img: string, p: string): Meta {
  const dev = FileDevice.open(img);
  try {
    const r = Ext4Reader.open(dev);
    const ino = r.lookup(p);
    const i = r.inode(ino);
    const t = (x: { sec: number; nsec: number }) => `${x.sec}.${String(x.nsec).padStart(9, '0')}`;
    return {
      type: ({ 0x4000: 'dir', 0x8000: 'file', 0xa000: 'link' } as Record<number, string>)[i.mode & 0xf000] ?? '?',
      mode: i.mode & 0o7777,
      uid: i.uid,
      gid: i.gid,
      mtime: t(i.mtime),
      atime: t(i.atime),
      ctime: t(i.ctime),
      xattrs: Object.fromEntries(r.xattrs(ino).map((x) => [x.name, Buffer.from(x.value).toString('hex')])),
    };
  } finally {
    dev.close();
  }
}

function exists(img: string, p: string): boolean {
  const dev = FileDevice.open(img);
  try {
    Ext4Reader.open(dev).lookup(p);
    return true;
  } catch {
    return false;
  } finally {
    dev.close();
  }
}

function withMount<T>(img: string, fn: (dir: string) => T): T {
  const mnt = fs.mkdtempSync(path.join(work, 'mnt'));
  const r = run('mount', ['-t', 'ext4', '-o', 'loop,ro', img, mnt]);
  if (r.status !== 0) throw new Error(`mount: ${r.stderr}`);
  try {
    return fn(mnt);
  } finally {
    run('umount', [mnt]);
    fs.rmdirSync(mnt);
  }
}

function expectClean(img: string): void {
  const f = fsck(img);
  expect(f.status, f.output).toBe(0);
}

function expectFails(args: string[], code: string): void {
  const r = cli(args);
  expect(r.status, r.stderr).toBe(1);
  expect(r.stderr).toMatch(new RegExp(`error \\[${code}\\]`));
}

describe.runIf(haveOracles)('mkfs --from DIR --spec', () => {
  it('sets uid/gid/mode/time and security.capability on a file, an xattr on a dir; --owner for the rest', () => {
    const src = hostTree();
    const spec = writeSpec([
      '#mtree',
      '/set uid=0 gid=0',
      '. type=dir mode=0755',
      `./bin/ping type=file mode=04755 time=1700000000.123456789 xattr.security.capability=0x${CAP_NET_RAW}`,
      './bin/ping6 type=link link=ping',
      './etc/ssl type=dir mode=0750 gid=101 xattr.user.label=ssl\\040certs',
      './etc/ssl/key.pem mode=0640 gid=101',
    ]);
    const img = fresh('mkfs.img');
    const r = cli(['mkfs', img, '--size', '64M', '--from', src, '--spec', spec, '--owner', '1000:1000', '--no-sync']);
    expect(r.status, r.stderr).toBe(0);
    expectClean(img);
    const ping = readMeta(img, '/bin/ping');
    expect(ping).toMatchObject({ type: 'file', mode: 0o4755, uid: 0, gid: 0, mtime: '1700000000.123456789' });
    expect([ping.atime, ping.ctime]).toEqual([ping.mtime, ping.mtime]);
    expect(ping.xattrs).toEqual({ 'security.capability': CAP_NET_RAW });
    expect(readMeta(img, '/etc/ssl')).toMatchObject({
      mode: 0o750,
      uid: 0,
      gid: 101,
      xattrs: { 'user.label': Buffer.from('ssl certs').toString('hex') },
    });
    expect(readMeta(img, '/etc/ssl/key.pem')).toMatchObject({ mode: 0o640, uid: 0, gid: 101 });
    expect(readMeta(img, '/')).toMatchObject({ mode: 0o755, uid: 0, gid: 0 });
    // Not named: --owner.
    for (const p of ['/bin', '/bin/tool', '/etc', '/lost+found'])
      expect(readMeta(img, p), p).toMatchObject({ uid: 1000, gid: 1000 });
    if (!canMount) return;
    withMount(img, (mnt) => {
      const st = fs.statSync(path.join(mnt, 'bin/ping'), { bigint: true });
      expect([Number(st.mode) & 0o7777, st.uid, st.gid]).toEqual([0o4755, 0n, 0n]);
      expect([st.mtimeNs, st.atimeNs, st.ctimeNs]).toEqual([
        1700000000123456789n,
        1700000000123456789n,
        1700000000123456789n,
      ]);
      const cap = capabilityThroughKernel(path.join(mnt, 'bin/ping'));
      expect(cap).toContain(`security.capability=0x${CAP_NET_RAW}`);
      if (haveTool('getcap')) expect(run('getcap', [path.join(mnt, 'bin/ping')]).stdout).toMatch(/cap_net_raw[=+]ep/);
      const ssl = fs.statSync(path.join(mnt, 'etc/ssl'));
      expect([ssl.mode & 0o7777, ssl.uid, ssl.gid]).toEqual([0o750, 0, 101]);
      const lab = run('getfattr', ['-n', 'user.label', '--only-values', path.join(mnt, 'etc/ssl')]);
      expect(lab.stdout).toBe('ssl certs');
      const tool = fs.statSync(path.join(mnt, 'bin/tool'));
      expect([tool.uid, tool.gid]).toEqual([1000, 1000]);
      expect(fs.readlinkSync(path.join(mnt, 'bin/ping6'))).toBe('ping');
    });
  });

  it('a path the source lacks is NOT_FOUND and leaves no image; optional is no error; a type mismatch fails', () => {
    const src = hostTree();
    const img = fresh('missing.img');
    expectFails(
      ['mkfs', img, '--size', '64M', '--from', src, '--spec', writeSpec(['./bin/ping uid=0', './bin/nope uid=0'])],
      'NOT_FOUND',
    );
    expect(fs.existsSync(img)).toBe(false);
    expect(fs.readdirSync(path.dirname(img)).filter((f) => f.includes(path.basename(img)))).toEqual([]);
    expectFails(
      ['mkfs', img, '--size', '64M', '--from', src, '--spec', writeSpec(['./bin/ping type=dir'])],
      'SPEC_MISMATCH',
    );
    expect(fs.existsSync(img)).toBe(false);
    expectFails(
      ['mkfs', img, '--size', '64M', '--from', src, '--spec', writeSpec(['./bin/ping mode=88'])],
      'BAD_OPTION',
    );
    expect(fs.existsSync(img)).toBe(false);
    // An existing output is left as it was.
    fs.writeFileSync(img, 'old');
    expectFails(['mkfs', img, '--size', '64M', '--from', src, '--spec', writeSpec(['./nope'])], 'NOT_FOUND');
    expect(fs.readFileSync(img, 'utf8')).toBe('old');
    fs.rmSync(img);
    const ok = cli([
      'mkfs',
      img,
      '--size',
      '64M',
      '--from',
      src,
      '--spec',
      writeSpec(['./bin/nope optional uid=0', './bin/tool uid=3']),
      '--no-sync',
    ]);
    expect(ok.status, ok.stderr).toBe(0);
    expectClean(img);
    expect(readMeta(img, '/bin/tool').uid).toBe(3);
    expect(exists(img, '/bin/nope')).toBe(false);
    // --spec without --from is a usage mistake.
    expect(cli(['mkfs', fresh('x.img'), '--size', '64M', '--spec', writeSpec(['. uid=0'])]).status).toBe(2);
  });

  it('mkfs --from IMAGE:PATH: spec paths are relative to that subtree', () => {
    const src = hostTree();
    const base = fresh('base.img');
    expect(cli(['mkfs', base, '--size', '64M', '--from', src, '--no-sync']).status).toBe(0);
    expectClean(base);
    const img = fresh('sub.img');
    const spec = writeSpec(['. mode=0700 uid=0 gid=0', './ssl/key.pem type=file mode=0400 uid=0 gid=0']);
    const r = cli(['mkfs', img, '--size', '64M', '--from', `${base}:/etc`, '--spec', spec, '--no-sync']);
    expect(r.status, r.stderr).toBe(0);
    expectClean(img);
    expect(readMeta(img, '/')).toMatchObject({ mode: 0o700, uid: 0, gid: 0 });
    expect(readMeta(img, '/ssl/key.pem')).toMatchObject({ mode: 0o400, uid: 0, gid: 0 });
  });
});

describe.runIf(haveOracles)('--size auto with a spec', () => {
  // 2,000 files of three 1 KiB blocks (so blocks, not inodes, set the size), each given a 600-byte
  // attribute by the spec: too big for the inode, so each distinct value takes an attribute block that
  // the bare tree does not need.
  const children: Record<string, { data: string }> = {};
  for (let i = 0; i < 2000; i++) children[`f${i}`] = { data: 'x'.repeat(3000) };
  const source = memoryTreeSource({ children });
  const specOf = (value: (i: number) => string) =>
    parseSpec(
      ['/set type=file', ...Array.from({ length: 2000 }, (_, i) => `./f${i} xattr.user.big=${value(i)}`)].join('\n'),
    );
  const bare = autoSize({ source }, { bytes: 0 }).sizeBytes;

  it("counts the spec's attributes: the picked size holds them with no slack", () => {
    const spec = specOf((i) => '0x' + i.toString(16).padStart(8, '0') + 'ab'.repeat(596));
    const picked = autoSize({ source, spec }, { bytes: 0 });
    // About 2,000 blocks of 1 KiB more.
    expect(picked.sizeBytes - bare).toBeGreaterThanOrEqual(1 << 20);
    const img = path.join(work, 'auto-spec.img');
    formatImage(img, { source, spec, ...picked, sync: false });
    expect(fsck(img).status).toBe(0);
    const r = Ext4Reader.open(FileDevice.open(img));
    expect(r.xattrs(r.lookup('/f1999')).map((x) => [x.name, x.value.length])).toEqual([['user.big', 600]]);
    expect(() => formatImage(img, { source, spec, sizeBytes: picked.sizeBytes - (1 << 20), sync: false })).toThrow(
      /NO_SPACE|needs about/,
    );
  });

  it('counts a set every file shares once, as the writer stores it once', () => {
    const spec = specOf(() => '0x' + 'ab'.repeat(600));
    expect(autoSize({ source, spec }, { bytes: 0 }).sizeBytes).toBe(bare);
  });
});

describe.runIf(haveOracles)('seed and materialize --spec', () => {
  it('the seed forces root:root, the spec then gives named paths their owners, modes and attributes', () => {
    // A rootfs whose /root holds the seed.
    const rootDir = fresh('rootfs');
    fs.mkdirSync(path.join(rootDir, 'root', '.ssh'), { recursive: true });
    fs.mkdirSync(path.join(rootDir, 'etc'));
    fs.writeFileSync(path.join(rootDir, 'root', '.ssh', 'authorized_keys'), 'ssh-ed25519 AAAA\n');
    fs.writeFileSync(path.join(rootDir, 'root', 'agent'), 'agent\n');
    fs.writeFileSync(path.join(rootDir, 'etc', 'hostname'), 'vm\n');
    const rootfs = fresh('rootfs.img');
    expect(cli(['mkfs', rootfs, '--size', '64M', '--from', rootDir, '--owner', '1000:1000', '--no-sync']).status).toBe(
      0,
    );
    expectClean(rootfs);

    const seed = fresh('seed.img');
    const seedSpec = writeSpec([
      './.ssh type=dir mode=0700 uid=1000 gid=1000',
      './.ssh/authorized_keys type=file mode=0600 uid=1000 gid=1000 time=1650000000',
      `./agent mode=0755 xattr.security.capability=0s${Buffer.from(CAP_NET_RAW, 'hex').toString('base64')}`,
    ]);
    const s = cli(['seed', rootfs, seed, '--spec', seedSpec, '--no-sync']);
    expect(s.status, s.stderr).toBe(0);
    expectClean(seed);
    expect(readMeta(seed, '/.ssh')).toMatchObject({ mode: 0o700, uid: 1000, gid: 1000 });
    expect(readMeta(seed, '/.ssh/authorized_keys')).toMatchObject({
      mode: 0o600,
      uid: 1000,
      mtime: '1650000000.000000000',
    });
    expect(readMeta(seed, '/agent')).toMatchObject({
      mode: 0o755,
      uid: 0,
      gid: 0,
      xattrs: { 'security.capability': CAP_NET_RAW },
    });
    expect(readMeta(seed, '/')).toMatchObject({ uid: 0, gid: 0 });

    // A spec naming what /root lacks: no seed is written.
    const bad = fresh('badseed.img');
    expectFails(['seed', rootfs, bad, '--spec', writeSpec(['./hostname uid=0'])], 'NOT_FOUND');
    expect(fs.existsSync(bad)).toBe(false);

    // materialize: paths relative to the seed's root; / would be 0755, the spec makes it 0700.
    const disk = fresh('disk.img');
    const mSpec = writeSpec(['. mode=0700', './.ssh uid=2000 gid=2000', './lost+found optional uid=5']);
    const m = cli(['materialize', disk, '--size', '128M', '--seed', seed, '--spec', mSpec, '--no-sync']);
    expect(m.status, m.stderr).toBe(0);
    expectClean(disk);
    expect(readMeta(disk, '/')).toMatchObject({ mode: 0o700, uid: 0, gid: 0 });
    expect(readMeta(disk, '/.ssh')).toMatchObject({ mode: 0o700, uid: 2000, gid: 2000 });
    // Not named: root:root, as materialize makes every entry (the seed's owner is not kept).
    expect(readMeta(disk, '/.ssh/authorized_keys')).toMatchObject({ mode: 0o600, uid: 0, gid: 0 });
    expect(readMeta(disk, '/agent').xattrs).toEqual({ 'security.capability': CAP_NET_RAW });
    // The seed's lost+found is not copied (the disk has its own), so the optional entry names nothing.
    expect(readMeta(disk, '/lost+found').uid).toBe(0);
    const badDisk = fresh('baddisk.img');
    expectFails(
      ['materialize', badDisk, '--size', '128M', '--seed', seed, '--spec', writeSpec(['./agent type=dir'])],
      'SPEC_MISMATCH',
    );
    expect(fs.existsSync(badDisk)).toBe(false);
    expect(cli(['materialize', badDisk, '--size', '128M', '--spec', mSpec]).status).toBe(2);
    if (canMount)
      withMount(disk, (mnt) => {
        const st = fs.statSync(path.join(mnt, '.ssh'));
        expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o700, 2000, 2000]);
        expect(fs.statSync(mnt).mode & 0o7777).toBe(0o700);
        const cap = capabilityThroughKernel(path.join(mnt, 'agent'));
        expect(cap).toContain(`security.capability=0x${CAP_NET_RAW}`);
      });
  });
});

describe.runIf(haveOracles)('cp-in --spec', () => {
  const emptyImage = () => {
    const img = fresh('cp.img');
    expect(cli(['mkfs', img, '--size', '64M', '--no-sync']).status).toBe(0);
    return img;
  };

  it('paths relative to the copied tree; --owner first, the spec wins', () => {
    const img = emptyImage();
    const src = hostTree();
    const spec = writeSpec([
      '. type=dir mode=0750',
      `./bin/ping mode=04755 uid=0 gid=0 time=1700000000 xattr.security.capability=0x${CAP_NET_RAW}`,
      './etc/ssl uid=33 gid=33 xattr.user.tag=web',
    ]);
    const r = cli(['cp-in', img, src, '/app', '--owner', '1000:1000', '--spec', spec, '--no-sync']);
    expect(r.status, r.stderr).toBe(0);
    expectClean(img);
    expect(readMeta(img, '/app')).toMatchObject({ mode: 0o750, uid: 1000, gid: 1000 });
    const ping = readMeta(img, '/app/bin/ping');
    expect(ping).toMatchObject({
      mode: 0o4755,
      uid: 0,
      gid: 0,
      mtime: '1700000000.000000000',
      atime: '1700000000.000000000',
    });
    expect(ping.xattrs).toEqual({ 'security.capability': CAP_NET_RAW });
    expect(readMeta(img, '/app/etc/ssl')).toMatchObject({ uid: 33, gid: 33, xattrs: { 'user.tag': '776562' } });
    expect(readMeta(img, '/app/bin/tool')).toMatchObject({ uid: 1000, gid: 1000 });
    if (canMount)
      withMount(img, (mnt) => {
        const st = fs.statSync(path.join(mnt, 'app/bin/ping'));
        expect([st.mode & 0o7777, st.uid, st.gid, st.mtimeMs]).toEqual([0o4755, 0, 0, 1700000000000]);
        if (haveTool('getcap'))
          expect(run('getcap', [path.join(mnt, 'app/bin/ping')]).stdout).toMatch(/cap_net_raw[=+]ep/);
      });
  });

  it('a missing path fails before anything is copied; edit --script takes cp-in --spec too', () => {
    const img = emptyImage();
    const src = hostTree();
    expectFails(
      ['cp-in', img, src, '/app', '--spec', writeSpec(['./bin/ping uid=0', './bin/gone uid=0'])],
      'NOT_FOUND',
    );
    expectFails(['cp-in', img, src, '/app', '--spec', writeSpec(['./bin type=link'])], 'SPEC_MISMATCH');
    expect(exists(img, '/app')).toBe(false);
    expectClean(img);

    const single = path.join(fresh('one'));
    fs.writeFileSync(single, 'conf\n');
    const one = writeSpec(['. type=file mode=0600 uid=5 gid=6']);
    const script = fresh('script');
    fs.writeFileSync(
      script,
      [
        `mkdir -p /etc`,
        `cp-in ${single} /etc/app.conf --spec ${one}`,
        `cp-in ${src} /srv --spec ${writeSpec(['./bin/tool mode=0700 uid=7'])}`,
      ].join('\n') + '\n',
    );
    const r = cli(['edit', img, '--script', script, '--no-sync']);
    expect(r.status, r.stderr).toBe(0);
    expectClean(img);
    expect(readMeta(img, '/etc/app.conf')).toMatchObject({ type: 'file', mode: 0o600, uid: 5, gid: 6 });
    expect(readMeta(img, '/srv/bin/tool')).toMatchObject({ mode: 0o700, uid: 7 });
  });
});
