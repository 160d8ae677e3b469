/**
 * `extract IMG PATH --tar OUT|-`: the pax archive's encoding (numbers, records, times, ACL text), what
 * GNU tar and Python's tarfile read in it, and, as root, the round trip: the kernel's view of an image
 * (loop-mounted) must equal what `tar -x` recreates from the archive, entry for entry, down to
 * nanosecond times, owners, link counts, device numbers, holes, extended attributes and ACLs.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { spawnSync } from 'node:child_process';
import { formatImage } from '../src/mkfs/image.js';
import { editImage } from '../src/edit/editor.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { Ext4Error } from '../src/core/errors.js';
import { FileDevice, MemoryDevice } from '../src/io/device.js';
import { formatDevice } from '../src/mkfs/format.js';
import { memoryTreeSource } from '../src/tree/sources/memory.js';
import { encodeMemberHeaders } from '../src/archive/write.js';
import { exportTar } from '../src/tree/tar-export.js';
import { aclToText } from '../src/archive/acl.js';
import {
  FIELD,
  TAR_BLOCK,
  headerChecksum,
  headerChecksums,
  paxRecord,
  paxTime,
  xattrKeyword,
  xattrNameOfKeyword,
} from '../src/archive/header.js';
import { tarTreeSource } from '../src/tree/sources/tar.js';
import {
  CLI,
  HAVE_E2FSPROGS,
  IN_CI,
  IS_ROOT,
  cli,
  fsck,
  haveTool,
  oracleAvailable,
  run,
  scratchDir,
} from './helpers/oracle.js';
import { allXattrs as xattrView, contents, makeVariedTree, snapshot, type NodeInfo } from './helpers/tree.js';
import { mount, umount } from './helpers/model.js';

const scratch = scratchDir('ext4wd-tar-export');
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** The restore command the README documents. */
const TAR_X = ['-x', '--xattrs', '--xattrs-include=*', '--acls', '--numeric-owner', '-G'];
const HAVE_TAR = haveTool('tar') && /GNU tar/.test(run('tar', ['--version']).stdout);
const HAVE_PY = haveTool('python3');
const T = { sec: 1_650_000_000, nsec: 123_456_789 };

/** Members of an archive as Python's tarfile reads them (an independent pax reader). */
function pyList(tar: string): {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  pax: Record<string, string>;
  sparse: [number, number][] | null;
}[] {
  const script = `
import json, sys, tarfile
out = []
for m in tarfile.open(sys.argv[1]):
    out.append(dict(name=m.name, type=m.type.decode(), mode=m.mode, uid=m.uid, gid=m.gid, size=m.size,
        mtime=str(m.mtime), linkname=m.linkname, devmajor=m.devmajor, devminor=m.devminor,
        pax={k: v.encode('utf-8', 'surrogateescape').hex() for k, v in m.pax_headers.items()},
        sparse=getattr(m, 'sparse', None)))
print(json.dumps(out))`;
  const r = run('python3', ['-c', script, tar]);
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as ReturnType<typeof pyList>;
}
const hex = (s: string) => Buffer.from(s).toString('hex');

/** The record values of the pax header in front of the first member of `b`. */
function paxOf(b: Buffer): Map<string, Buffer> {
  const size = parseInt(b.subarray(124, 136).toString('latin1').replace(/\0.*$/, ''), 8);
  const body = b.subarray(TAR_BLOCK, TAR_BLOCK + size);
  const out = new Map<string, Buffer>();
  for (let at = 0; at < body.length;) {
    const sp = body.indexOf(0x20, at);
    const len = Number(body.subarray(at, sp).toString('ascii'));
    const rec = body.subarray(sp + 1, at + len - 1);
    const eq = rec.indexOf(0x3d);
    out.set(rec.subarray(0, eq).toString('utf8'), rec.subarray(eq + 1));
    at += len;
  }
  return out;
}

describe('pax encoding', () => {
  it('pax records count their own length, across a digit boundary', () => {
    for (let n = 80; n < 120; n++) {
      const r = paxRecord('k', 'v'.repeat(n));
      expect(Number(r.subarray(0, r.indexOf(0x20)).toString())).toBe(r.length);
      expect(r[r.length - 1]).toBe(0x0a);
    }
    expect(paxRecord('path', Buffer.from([0, 0xff, 0x0a])).toString('latin1')).toBe('12 path=\0\xff\n\n');
  });

  it('times keep nanoseconds, before 1970 too', () => {
    expect(paxTime({ sec: 1_600_000_000, nsec: 0 })).toBe('1600000000');
    expect(paxTime({ sec: 1_600_000_000, nsec: 120_000_000 })).toBe('1600000000.12');
    expect(paxTime({ sec: 1, nsec: 1 })).toBe('1.000000001');
    expect(paxTime({ sec: -2, nsec: 250_000_000 })).toBe('-1.75');
    expect(paxTime({ sec: -1, nsec: 500_000_000 })).toBe('-0.5');
    expect(paxTime({ sec: -2_147_483_648, nsec: 0 })).toBe('-2147483648');
    expect(paxTime({ sec: 15_000_000_000, nsec: 999_999_999 })).toBe('15000000000.999999999');
  });

  it('xattr keywords escape % and =; ACLs become text with numeric ids', () => {
    expect(xattrKeyword('user.a=b%c')).toBe('SCHILY.xattr.user.a%3Db%25c');
    // Read back in one pass: an encoded '%' followed by "3D" stays "%3D"; any other '%' is kept.
    expect(xattrNameOfKeyword('user.a%3Db%25c')).toBe('user.a=b%c');
    expect(xattrNameOfKeyword('user.%253D%41%')).toBe('user.%3D%41%');
    // The header checksum, and the signed-byte sum old tars wrote, counted in one pass.
    const h = new Uint8Array(TAR_BLOCK);
    h[0] = 0xff;
    h[150] = 0xff; // inside the checksum field: counted as a space
    expect(headerChecksums(h)).toEqual({ sum: 255 + 8 * 0x20, signed: -1 + 8 * 0x20 });
    expect(headerChecksum(h)).toBe(255 + 8 * 0x20);
    const acl = Buffer.alloc(4 + 6 * 8);
    acl.writeUInt32LE(2, 0);
    const e = [
      [1, 6, 0xffffffff],
      [2, 7, 1000],
      [4, 4, 0xffffffff],
      [8, 5, 50],
      [0x10, 7, 0xffffffff],
      [0x20, 0, 0xffffffff],
    ];
    e.forEach(([tag, perm, id], k) => {
      acl.writeUInt16LE(tag!, 4 + 8 * k);
      acl.writeUInt16LE(perm!, 6 + 8 * k);
      acl.writeUInt32LE(id!, 8 + 8 * k);
    });
    expect(aclToText(acl)).toBe('user::rw-\nuser:1000:rwx\ngroup::r--\ngroup:50:r-x\nmask::rwx\nother::---\n');
    expect(aclToText(acl.subarray(0, 10))).toBeUndefined();
  });

  it('what the ustar fields cannot hold goes to pax records, the field in base-256', () => {
    const name = Buffer.from('./' + 'd'.repeat(120) + '/f');
    const link = Buffer.from('t'.repeat(150));
    const h = encodeMemberHeaders({
      name,
      type: 0x30,
      perm: 0o6755,
      uid: 4_000_000_000,
      gid: 70_000,
      size: 2 ** 33 + 5,
      mtime: { sec: -2_147_483_000, nsec: 5 },
      atime: T,
      ctime: T,
      linkName: link,
      xattrs: [{ name: 'user.bin', value: new Uint8Array([0, 10, 0x3d, 0xff]) }],
    });
    expect(h.length % TAR_BLOCK).toBe(0);
    const pax = paxOf(h);
    expect(pax.get('path')).toEqual(name);
    expect(pax.get('linkpath')).toEqual(link);
    expect(pax.get('uid')!.toString()).toBe('4000000000');
    expect(pax.has('gid')).toBe(false);
    expect(pax.get('size')!.toString()).toBe(String(2 ** 33 + 5));
    expect(pax.get('mtime')!.toString()).toBe('-2147482999.999999995');
    expect(pax.get('atime')!.toString()).toBe('1650000000.123456789');
    expect(pax.get('SCHILY.xattr.user.bin')).toEqual(Buffer.from([0, 10, 0x3d, 0xff]));
    const u = h.subarray(h.length - TAR_BLOCK);
    expect(headerChecksum(u)).toBe(parseInt(u.subarray(148, 154).toString(), 8));
    const field = (f: readonly [number, number]) => u.subarray(f[0], f[0] + f[1]);
    expect(field(FIELD.mode).toString()).toBe('0006755\0');
    expect(field(FIELD.gid).toString()).toBe('0210560\0');
    // base-256: 0x80 then big-endian; negative: two's complement with 0xff first.
    expect(field(FIELD.size)[0]).toBe(0x80);
    expect(field(FIELD.size).readBigUInt64BE(4)).toBe(BigInt(2 ** 33 + 5));
    expect(field(FIELD.uid)[0]).toBe(0x80);
    expect(field(FIELD.uid).readUInt32BE(4)).toBe(4_000_000_000);
    expect(field(FIELD.mtime)[0]).toBe(0xff);
    expect(field(FIELD.mtime).readBigInt64BE(4)).toBe(-2_147_483_000n);
    expect(field(FIELD.name)).toEqual(name.subarray(0, 100));
    expect(field(FIELD.uname).every((c) => c === 0)).toBe(true);
  });
});

/** A formatted in-memory image from a tree description (no root needed). */
function memImage(): Ext4Reader {
  const dev = new MemoryDevice(64 << 20);
  const holey = new Uint8Array(3 * 4096 + 100);
  holey.set([1, 2, 3], 4096);
  formatDevice(dev, {
    sizeBytes: 64 << 20,
    timestamp: 1_600_000_000,
    source: memoryTreeSource(
      {
        perm: 0o755,
        children: {
          'b-file': { data: 'hello\n', perm: 0o4755, uid: 1234, gid: 5678 },
          'a-dir': {
            perm: 0o1777,
            children: { inner: { data: 'x' } },
            xattrs: [{ name: 'user.dir', value: new TextEncoder().encode('d') }],
          },
          holey: { data: holey },
          'all-hole': { data: new Uint8Array(10_000) },
          dev: { kind: 'chardev', rdev: [4000, 70000] },
          fifo: { kind: 'fifo' },
          sock: { kind: 'socket' },
          link: { target: 'b-file' },
          ['é'.repeat(60)]: { data: 'long utf-8 name' },
          xa: {
            data: '',
            xattrs: [
              { name: 'user.a=b%c', value: new Uint8Array([0, 1, 2, 10]) },
              { name: 'trusted.t', value: new Uint8Array(300).fill(7) },
              { name: 'security.capability', value: Buffer.from('0100000200200000000000000000000000000000', 'hex') },
            ],
          },
        },
      },
      T,
    ),
  });
  return Ext4Reader.open(dev);
}

describe('where the archive may go', () => {
  it('a directory or a device path is refused with IO_ERROR, the hint naming standard output', () => {
    const reader = memImage();
    expect(() => exportTar(reader, '/', scratch)).toThrowError(
      expect.objectContaining({ code: 'IO_ERROR', message: `${scratch} is a directory` }),
    );
    expect(() => exportTar(reader, '/', '/dev/null')).toThrowError(
      expect.objectContaining({ code: 'IO_ERROR', message: expect.stringMatching(/standard output \(-\)/) as unknown }),
    );
    expect(fs.readdirSync(scratch).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});

describe.runIf(oracleAvailable('e2fsck', HAVE_E2FSPROGS))('an archive read back by mkfs --from', () => {
  it('gives every attribute its own name again (% and = in names included)', async () => {
    const reader = memImage();
    const tar = path.join(scratch, 'names.tar');
    exportTar(reader, '/', tar, { sync: false, onWarning: () => {} });
    const t = await tarTreeSource(tar, { spoolDir: scratch });
    const img = path.join(scratch, 'names.img');
    try {
      formatImage(img, { sizeBytes: 64 << 20, source: t.source, sync: false });
    } finally {
      t.close();
    }
    expect(fsck(img).status).toBe(0);
    const back = Ext4Reader.open(FileDevice.open(img));
    const names = (r: Ext4Reader) =>
      r.xattrs(r.lookup('/xa')).map((x) => [x.name, Buffer.from(x.value).toString('hex')]);
    expect(names(back).sort()).toEqual(names(reader).sort());
    expect(names(back).map(([n]) => n)).toContain('user.a=b%c');
  });
});

describe.runIf(oracleAvailable('tar export readers (GNU tar, python3)', HAVE_TAR && HAVE_PY))(
  'the archive as other readers see it',
  () => {
    const reader = memImage();
    const tar = path.join(scratch, 'mem.tar');
    const warnings: string[] = [];
    const res = exportTar(reader, '/', tar, { onWarning: (m) => warnings.push(m), sync: false });

    it('names entries as tar -C DIR -cf - . does, children in byte order, sockets left out', () => {
      expect(warnings).toEqual(['/sock: socket not archived (tar has no socket type)']);
      expect(res).toMatchObject({ files: 6, dirs: 3, symlinks: 1, devices: 1, fifos: 1, socketsSkipped: 1 });
      expect(res.sparseFiles).toBe(2);
      expect(res.unreadable).toEqual([]);
      expect(res.archiveBytes).toBe(fs.statSync(tar).size);
      const t = run('tar', ['-tf', tar]);
      expect(t.stderr).toBe('');
      expect(t.stdout.split('\n').filter(Boolean)).toEqual([
        './',
        './a-dir/',
        './a-dir/inner',
        './all-hole',
        './b-file',
        './dev',
        './fifo',
        './holey',
        './link',
        './lost+found/',
        './xa',
        './' + 'é'.repeat(60),
      ]);
      expect(fs.readdirSync(scratch).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    });

    it('carries modes, numeric owners, nanosecond times, devices, links, xattrs and holes', () => {
      const ms = new Map(pyList(tar).map((m) => [m.name, m]));
      const f = ms.get('./b-file')!;
      expect([f.type, f.mode, f.uid, f.gid, f.size]).toEqual(['0', 0o4755, 1234, 5678, 6]);
      expect(f.pax.mtime).toBe(hex('1650000000.123456789'));
      expect(f.pax.atime).toBe(hex('1650000000.123456789'));
      expect(ms.get('./a-dir')!.mode).toBe(0o1777);
      expect(ms.get('./a-dir')!.pax['SCHILY.xattr.user.dir']).toBe(hex('d'));
      const d = ms.get('./dev')!;
      expect([d.type, d.devmajor, d.devminor]).toEqual(['3', 4000, 70000]);
      expect(ms.get('./fifo')!.type).toBe('6');
      expect([ms.get('./link')!.type, ms.get('./link')!.linkname]).toEqual(['2', 'b-file']);
      const xa = ms.get('./xa')!.pax;
      expect(xa['SCHILY.xattr.user.a%3Db%25c']).toBe('0001020a');
      expect(xa['SCHILY.xattr.trusted.t']).toBe('07'.repeat(300));
      expect(xa['SCHILY.xattr.security.capability']).toBe('0100000200200000000000000000000000000000');
      // GNU sparse 1.0: data at 4096 (one 1 KiB block of the image holds bytes 1,2,3), a hole to the end.
      const h = ms.get('./holey')!;
      expect(h.size).toBe(3 * 4096 + 100);
      expect(h.sparse).toEqual([
        [4096, 1024],
        [3 * 4096 + 100, 0],
      ]);
      expect(ms.get('./all-hole')!.sparse).toEqual([[10_000, 0]]);
      expect(ms.get('./' + 'é'.repeat(60))!.pax.path).toBe(hex('./' + 'é'.repeat(60)));
    });

    it('GNU tar restores the contents, holes included', () => {
      const out = path.join(scratch, 'mem-x');
      fs.mkdirSync(out);
      const x = run('tar', ['-x', '-f', tar, '-C', out, '--no-same-owner', '--exclude=./dev']);
      expect(x.status, x.stderr).toBe(0);
      const holey = fs.readFileSync(path.join(out, 'holey'));
      expect(holey.length).toBe(3 * 4096 + 100);
      expect([...holey.subarray(4096, 4099)]).toEqual([1, 2, 3]);
      expect(holey.subarray(4099).every((c) => c === 0)).toBe(true);
      expect(fs.statSync(path.join(out, 'all-hole')).size).toBe(10_000);
      expect(fs.statSync(path.join(out, 'all-hole')).blocks).toBe(0);
      expect(fs.readFileSync(path.join(out, 'b-file'), 'utf8')).toBe('hello\n');
      expect(fs.statSync(path.join(out, 'b-file'), { bigint: true }).mtimeNs).toBe(1_650_000_000_123_456_789n);
    });

    it('is deterministic, and standard output carries the same bytes (--json then on stderr)', () => {
      const again = path.join(scratch, 'mem2.tar');
      exportTar(reader, '/', again, { sync: false });
      expect(fs.readFileSync(again).equals(fs.readFileSync(tar))).toBe(true);
      const img = path.join(scratch, 'mem.img');
      formatImage(img, {
        sizeBytes: 32 << 20,
        timestamp: 1_600_000_000,
        source: memoryTreeSource({ children: { f: { data: 'x'.repeat(100_000) }, l: { target: 'f' } } }, T),
        sync: false,
      });
      if (oracleAvailable('e2fsck', HAVE_E2FSPROGS)) expect(fsck(img).status).toBe(0);
      const file = path.join(scratch, 'cli.tar');
      const r1 = cli(['extract', img, '/', '--tar', file]);
      expect(r1.status, r1.stderr).toBe(0);
      const r2 = spawnSync(process.execPath, [CLI, 'extract', img, '/', '--tar', '-', '--json'], {
        maxBuffer: 64 << 20,
      });
      expect(r2.status, r2.stderr.toString()).toBe(0);
      expect(Buffer.compare(r2.stdout, fs.readFileSync(file))).toBe(0);
      expect(JSON.parse(r2.stderr.toString())).toMatchObject({ files: 1, symlinks: 1, unreadable: [] });
      // A file path exports one member named by its base name.
      const one = spawnSync(process.execPath, [CLI, 'extract', img, '/f', '--tar', '-'], { maxBuffer: 64 << 20 });
      const listed = spawnSync('tar', ['-tvf', '-'], { input: one.stdout, encoding: 'utf8' });
      expect(listed.stdout).toMatch(/^-rw-r--r-- 0\/0 +100000 .* f\n$/);
    });

    it('a file past 8 GiB (sparse) and an owner past 2^21 round trip', () => {
      const img = path.join(scratch, 'huge.img');
      formatImage(img, { sizeBytes: 64 << 20, sync: false });
      const end = new TextEncoder().encode('the end');
      editImage(
        img,
        (e) => {
          e.writeFile('/huge', [new Uint8Array(5000).fill(9), { hole: 9 * 2 ** 30 }, end], {
            uid: 4_000_000_000,
            gid: 3_000_000,
            mtime: { sec: -1_000_000_000, nsec: 7 },
          });
        },
        { sync: false },
      );
      if (oracleAvailable('e2fsck', HAVE_E2FSPROGS)) expect(fsck(img).status).toBe(0);
      const tarFile = path.join(scratch, 'huge.tar');
      const r = cli(['extract', img, '/', '--tar', tarFile]);
      expect(r.status, r.stderr).toBe(0);
      expect(fs.statSync(tarFile).size).toBeLessThan(100_000);
      const size = 5000 + 9 * 2 ** 30 + end.length;
      const listed = run('tar', ['-tvf', tarFile]);
      expect(listed.stderr).toBe('');
      expect(listed.stdout).toContain(`4000000000/3000000 ${size} 1938-04-24 22:13 ./huge`);
      const m = pyList(tarFile).find((x) => x.name === './huge')!;
      expect([m.size, m.uid, m.gid]).toEqual([size, 4_000_000_000, 3_000_000]);
      expect(m.pax.mtime).toBe(hex('-999999999.999999993'));
      const out = path.join(scratch, 'huge-x');
      fs.mkdirSync(out);
      const x = run('tar', ['-x', '-f', tarFile, '-C', out, '--no-same-owner', '--warning=no-timestamp']);
      expect(x.status, x.stderr).toBe(0);
      const p = path.join(out, 'huge');
      const st = fs.statSync(p);
      expect(st.size).toBe(size);
      expect(st.blocks * 512).toBeLessThan(1 << 20);
      const fd = fs.openSync(p, 'r');
      const tail = Buffer.alloc(end.length);
      fs.readSync(fd, tail, 0, tail.length, size - end.length);
      fs.closeSync(fd);
      expect(tail.toString()).toBe('the end');
      fs.rmSync(out, { recursive: true });
    });
  },
);

describe('errors leave nothing behind', () => {
  const img = path.join(scratch, 'err.img');
  formatImage(img, {
    sizeBytes: 16 << 20,
    source: memoryTreeSource({ children: { big: { data: new Uint8Array(3 << 20).fill(1) } } }, T),
    sync: false,
  });
  const dir = path.join(scratch, 'err-out');
  fs.mkdirSync(dir);
  const left = () => fs.readdirSync(dir);

  it('a missing path is NOT_FOUND, a missing directory or a directory target IO_ERROR; the CLI says so', () => {
    if (oracleAvailable('e2fsck', HAVE_E2FSPROGS)) expect(fsck(img).status).toBe(0);
    const r = Ext4Reader.open(FileDevice.open(img));
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(Ext4Error);
        return (e as Ext4Error).code;
      }
      return 'no error';
    };
    expect(code(() => exportTar(r, '/nope', path.join(dir, 'a.tar')))).toBe('NOT_FOUND');
    expect(code(() => exportTar(r, '/', path.join(dir, 'missing', 'a.tar')))).toBe('IO_ERROR');
    expect(code(() => exportTar(r, '/', dir))).toBe('IO_ERROR');
    expect(left()).toEqual([]);
    for (const [args, want] of [
      [['extract', img, '/nope', '--tar', path.join(dir, 'b.tar')], /error \[NOT_FOUND\]/],
      [['extract', img, '/', '--tar', path.join(dir, 'no', 'b.tar')], /error \[IO_ERROR\]/],
    ] as const) {
      const c = cli([...args]);
      expect(c.status).toBe(1);
      expect(c.stderr).toMatch(want);
      expect(c.stderr).not.toMatch(/\n\s+at /);
    }
    const usage = cli(['extract', img, '/', dir, '--tar', path.join(dir, 'c.tar')]);
    expect(usage.status).toBe(2);
    expect(left()).toEqual([]);
  });

  it('a device error half way removes the partial archive and keeps an existing one', () => {
    const target = path.join(dir, 'keep.tar');
    fs.writeFileSync(target, 'old');
    const dev = FileDevice.open(img);
    const r = Ext4Reader.open(dev);
    const big = r.lookup('/big');
    // Reads of the file's data blocks fail (its header is written by then; its block map is in the inode).
    const bs = r.blockSize;
    const runs = r.blockRuns(big, r.inode(big));
    const realRead = dev.readInto.bind(dev);
    dev.readInto = (pos: number, buf: Uint8Array) => {
      for (const run of runs)
        if (pos < (run.pblk + run.len) * bs && pos + buf.length > run.pblk * bs)
          throw new Ext4Error('IO_ERROR', 'simulated read error');
      realRead(pos, buf);
    };
    expect(() => exportTar(r, '/', target, { sync: false })).toThrowError(
      expect.objectContaining({ code: 'IO_ERROR' }),
    );
    expect(left()).toEqual(['keep.tar']);
    expect(fs.readFileSync(target, 'utf8')).toBe('old');
    dev.close();
  });
});

const CORPUS = path.resolve(__dirname, '../../shared/corpus/ext4-view/test_disk1.bin.gz');
describe.runIf(oracleAvailable('tar export of the ext4-view corpus image', fs.existsSync(CORPUS) && HAVE_TAR))(
  'unreadable entries',
  () => {
    it('an encrypted directory is left out with a warning, the rest archived, INCOMPLETE exit 1', () => {
      const dir = scratchDir('ext4wd-tar-encrypted');
      try {
        const img = path.join(dir, 'disk1.img');
        fs.writeFileSync(img, zlib.gunzipSync(fs.readFileSync(CORPUS)));
        const tarFile = path.join(dir, 'out.tar');
        const r = cli(['extract', img, '/', '--tar', tarFile]);
        expect(r.status).toBe(1);
        expect(r.stderr).toContain('warning: /encrypted_dir: not archived');
        expect(r.stderr).toContain('[INCOMPLETE]');
        const listed = run('tar', ['-tf', tarFile], { timeoutMs: 60_000 });
        expect(listed.status).toBe(0);
        expect(listed.stderr).toBe('');
        const names = listed.stdout
          .split('\n')
          .filter((n) => n && n !== './')
          .map((n) => n.slice(1).replace(/\/$/, ''))
          .sort();
        // What extract to a directory gives (it also leaves out only the encrypted directory).
        const ours = path.join(dir, 'ours');
        fs.mkdirSync(ours);
        expect(cli(['extract', img, '/', ours, '--no-owners']).status).toBe(1);
        const found = run('find', [ours, '-mindepth', '1'], { timeoutMs: 60_000 })
          .stdout.split('\n')
          .filter(Boolean)
          .map((p) => p.slice(ours.length))
          .sort();
        expect(names).toEqual(found);
        expect(names.length).toBeGreaterThan(11_000);
        expect(names.some((n) => n.startsWith('/encrypted_dir'))).toBe(false);
        // The library reports it too.
        const fd = fs.openSync('/dev/null', 'w');
        const res = exportTar(Ext4Reader.open(FileDevice.open(img)), '/', { fd });
        fs.closeSync(fd);
        expect(res.unreadable.map((u) => [u.path, u.code])).toEqual([['/encrypted_dir', 'UNSUPPORTED_FEATURE']]);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);

const ROOT_TOOLS =
  IS_ROOT &&
  HAVE_E2FSPROGS &&
  HAVE_TAR &&
  ['mount', 'setfattr', 'getfattr', 'setfacl', 'mknod', 'python3'].every(haveTool);
if (IN_CI && !ROOT_TOOLS) throw new Error('CI runs as root with e2fsprogs, tar, attr and acl: the round trip must run');

describe.runIf(oracleAvailable('tar round trip (root, e2fsprogs, GNU tar, attr, acl)', ROOT_TOOLS))(
  'round trip through GNU tar as root',
  () => {
    it('tar -x recreates the kernel view of the image, entry for entry', () => {
      const dir = scratchDir('ext4wd-tar-rt');
      const mnt = path.join(dir, 'mnt');
      const dst = path.join(dir, 'dst');
      fs.mkdirSync(mnt);
      fs.mkdirSync(dst);
      let mounted: string[] = [];
      try {
        const src = path.join(dir, 'src');
        makeVariedTree(src);
        const sh = (cmd: string) => {
          const r = run('sh', ['-c', cmd]);
          expect(r.status, `${cmd}: ${r.stderr}`).toBe(0);
        };
        fs.writeFileSync(path.join(src, 'cap'), 'capable');
        fs.writeFileSync(path.join(src, 'acl-file'), 'acl');
        fs.mkdirSync(path.join(src, 'acl-dir'));
        fs.writeFileSync(path.join(src, 'acl-dir', 'child'), 'inherits nothing');
        fs.mkdirSync(path.join(src, 'acl-dir', 'sub'));
        fs.writeFileSync(path.join(src, 'hole-tail'), 'data then a hole');
        fs.truncateSync(path.join(src, 'hole-tail'), 1 << 20);
        fs.writeFileSync(path.join(src, 'all-hole'), '');
        fs.truncateSync(path.join(src, 'all-hole'), 5 << 20);
        // A path and a link target past the ustar fields (pax path/linkpath).
        const longDir = path.join(src, 'l'.repeat(120), 'm'.repeat(200));
        fs.mkdirSync(longDir, { recursive: true });
        fs.writeFileSync(path.join(longDir, 'f'.repeat(255)), 'far away');
        fs.symlinkSync('x'.repeat(300), path.join(longDir, 'long-target'));
        fs.chownSync(path.join(src, 'cap'), 1234, 1234);
        sh(`cd ${src} && setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 cap`);
        sh(`cd ${src} && setfattr -n user.color -v blue small.txt && setfattr -n user.rootattr -v 1 .`);
        sh(`cd ${src} && setfattr -n 'user.a=b%c' -v 0x000a0d3d25ff multi-block.bin`);
        sh(`cd ${src} && setfattr -n trusted.big -v ${'x'.repeat(700)} multi-block.bin`);
        sh(`cd ${src} && setfattr -h -n trusted.onlink -v 1 fast-link && setfattr -n trusted.fifo -v 2 fifo`);
        sh(`cd ${src} && setfattr -n trusted.dev -v 3 null-dev && setfattr -n user.dir -v d sticky`);
        sh(`cd ${src} && setfacl -m u:1000:rwx,g:50:r acl-file && setfacl -m u:9:rwx acl-dir`);
        sh(`cd ${src} && setfacl -d -m u:7:rx,g:8:rwx acl-dir`);
        const dump = path.join(dir, 'src.xattrs');
        sh(`getfattr -R -P -h -d -m - -e hex --absolute-names ${src} > ${dump}`);

        const img = path.join(dir, 'src.img');
        const mk = cli([
          'mkfs',
          img,
          '--size',
          '256M',
          '--block-size',
          '4096',
          '--from',
          src,
          '--xattrs',
          dump,
          '--no-sync',
        ]);
        expect(mk.status, mk.stderr).toBe(0);
        expect(fsck(img).status).toBe(0);

        // The kernel's view of the image; metadata before contents (reading moves nothing on a ro
        // mount, but the same order is needed for the extracted tree below).
        mount(img, mnt, true);
        mounted.push(mnt);
        const want = snapshot(mnt, { read: false });
        const wantData = contents(mnt);
        const wantX = xattrView(mnt);
        const wantAcl = run('getfacl', ['-c', path.join(mnt, 'acl-dir')]).stdout;
        umount(mnt);
        mounted = [];
        expect(want.get('socket')?.type).toBe('sock');
        expect(wantX.get('cap')).toMatch(/security\.capability=/);
        expect(wantX.get('acl-dir')).toMatch(/system\.posix_acl_default=/);
        expect(wantX.get('fast-link')).toMatch(/trusted\.onlink=/);

        const tarFile = path.join(dir, 'out.tar');
        const ex = cli(['extract', img, '/', '--tar', tarFile]);
        expect(ex.status, ex.stderr).toBe(0);
        expect(ex.stderr).toBe('ext4-workdisk: warning: /socket: socket not archived (tar has no socket type)\n');

        const listed = run('tar', ['-tvf', tarFile]);
        expect(listed.status).toBe(0);
        expect(listed.stderr).toBe('');

        // Extract onto a fresh file system of ours, so the host's /tmp does not matter.
        const dstImg = path.join(dir, 'dst.img');
        formatImage(dstImg, { sizeBytes: 512 << 20, sync: false });
        mount(dstImg, dst, false);
        mounted.push(dst);
        const x = run('tar', [...TAR_X, '-f', tarFile, '-C', dst]);
        expect(x.status, x.stderr).toBe(0);
        // GNU tar's only remarks: times before 1970 or in the future (--warning=no-timestamp silences them).
        for (const line of x.stderr.split('\n').filter(Boolean))
          expect(line).toMatch(/implausibly old time stamp|time stamp .* in the future/);

        const got = snapshot(dst, { read: false });
        const gotData = contents(dst);
        const gotX = xattrView(dst);
        want.delete('socket');
        wantData.delete('socket');
        expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
        for (const [rel, w] of want) expect(got.get(rel), rel).toEqual(w);
        for (const [rel, w] of wantData) expect(gotData.get(rel), rel).toEqual(w);
        expect(gotX).toEqual(wantX);
        expect(run('getfacl', ['-c', path.join(dst, 'acl-dir')]).stdout).toBe(wantAcl);
        // Holes stay holes.
        for (const [rel, most] of [
          ['sparse.bin', 64 << 10],
          ['hole-tail', 64 << 10],
          ['all-hole', 0],
        ] as const)
          expect(fs.statSync(path.join(dst, rel)).blocks * 512, rel).toBeLessThanOrEqual(most);
        // GNU tar's own comparison agrees.
        const d = run('tar', [
          '-d',
          '--xattrs',
          '--xattrs-include=*',
          '--acls',
          '--numeric-owner',
          '-f',
          tarFile,
          '-C',
          dst,
        ]);
        expect(d.stdout + d.stderr).toBe('');
        expect(d.status).toBe(0);

        umount(dst);
        mounted = [];
        expect(fsck(dstImg).status).toBe(0);
      } finally {
        for (const m of mounted) run('umount', [m]);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);

/** Valid images of the corpus the kernel mounts: block maps, inline data, htree, EAs on special files, ext2/3. */
const ROUND_TRIP_IMAGES = [
  'e2fsprogs/d_inline_dump/image.gz',
  'e2fsprogs/f_special_ea/image.gz',
  'e2fsprogs/f_selinux/image.gz',
  'e2fsprogs/f_uninit_ext_past_eof/image.gz',
  'e2fsprogs/f_convert_bmap_sparse/image.gz',
  'e2fsprogs/f_desc_size_128/image.gz',
  'e2fsprogs/f_ea_signed_hash/image.gz',
  'e2fsprogs/f_rehash_dir/image.gz',
  'e2fsprogs/f_h_normal/image.gz',
  'e2fsprogs/f_okgroup/image.gz',
  'ext4-view/test_disk_ext2.bin.gz',
  'ext4-view/test_disk_ext3.bin.gz',
  'go-ext4/hierarchy_64.ext4.gz',
  'go-ext4/tiny.ext4.gz',
];
const CORPUS_DIR = path.resolve(__dirname, '../../shared/corpus');

describe.runIf(
  oracleAvailable('tar round trip of corpus images (root, GNU tar)', ROOT_TOOLS && fs.existsSync(CORPUS_DIR)),
)('round trip of images others made: extract --tar, then tar -x as root, equals the kernel view', () => {
  for (const rel of ROUND_TRIP_IMAGES)
    it(rel, () => {
      const dir = scratchDir('ext4wd-tar-corpus');
      const mounted: string[] = [];
      try {
        const img = path.join(dir, 'src.img');
        fs.writeFileSync(img, zlib.gunzipSync(fs.readFileSync(path.join(CORPUS_DIR, rel))));
        const mnt = path.join(dir, 'mnt');
        fs.mkdirSync(mnt);
        const m = run('mount', ['-t', 'ext4', '-o', 'ro,loop,noload', img, mnt]);
        expect(m.status, m.stderr).toBe(0);
        mounted.push(mnt);
        const want = snapshot(mnt, { read: false });
        const wantData = contents(mnt);
        const wantX = xattrView(mnt);
        run('umount', [mnt]);
        mounted.pop();
        const tarFile = path.join(dir, 'out.tar');
        const ex = cli(['extract', img, '/', '--tar', tarFile]);
        expect(ex.status, ex.stderr).toBe(0);
        const dstImg = path.join(dir, 'dst.img');
        formatImage(dstImg, { sizeBytes: 256 << 20, blockSize: 4096, sync: false });
        const dst = path.join(dir, 'dst');
        fs.mkdirSync(dst);
        mount(dstImg, dst, false);
        mounted.push(dst);
        const x = run('tar', [...TAR_X, '--warning=no-timestamp', '-f', tarFile, '-C', dst]);
        expect(x.status, x.stderr).toBe(0);
        const got = snapshot(dst, { read: false });
        // The root's link count and times belong to the directory tar extracted into.
        for (const v of [want.get('/'), got.get('/')]) {
          delete (v as Partial<NodeInfo>).nlink;
          delete (v as Partial<NodeInfo>).mtimeNs;
        }
        for (const [k, w] of want) if (w.type === 'sock') want.delete(k);
        expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
        for (const [k, w] of want) expect(got.get(k), k).toEqual(w);
        const gotData = contents(dst);
        for (const [k, w] of wantData) if (want.has(k)) expect(gotData.get(k), k).toEqual(w);
        expect(xattrView(dst)).toEqual(wantX);
        // The image tar -x wrote into through the kernel is sound too.
        expect(run('umount', [dst]).status).toBe(0);
        mounted.pop();
        expect(fsck(dstImg).status).toBe(0);
      } finally {
        for (const m of mounted.reverse()) run('umount', [m]);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
});
