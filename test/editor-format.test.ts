/**
 * The editor on every on-disk structure it has to keep valid: htree directories (leaf splits, new
 * levels, linear-to-indexed, every hash version), extent trees that grow and shrink a level, block maps
 * up to triple indirection, files past 4 GiB, inline data, attributes in the inode and in shared blocks,
 * ACLs, uninitialized groups, meta_bg, 64 KiB blocks, trees copied in. Each image passes e2fsck -fn; as
 * root the kernel reads it back.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatImage } from '../src/mkfs/image.js';
import { Ext4Editor, editImage } from '../src/edit/editor.js';
import { hostDirectorySource } from '../src/tree/sources/host.js';
import { imageTreeSource } from '../src/tree/sources/image.js';
import { memoryTreeSource } from '../src/tree/sources/memory.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { FL_INDEX, FL_INLINE_DATA, FL_EXTENTS } from '../src/ext4/inode.js';
import {
  HAVE_E2FSPROGS,
  IS_ROOT,
  oracleAvailable,
  run,
  scratchDir,
  haveTool,
  mkfsExt4,
  expectClean,
} from './helpers/oracle.js';
import { mount, umount } from './helpers/model.js';
import { makeVariedTree, snapshot } from './helpers/tree.js';

const runIt = oracleAvailable('editor format suite (e2fsprogs)', HAVE_E2FSPROGS);
const asRoot = IS_ROOT && haveTool('mount') && haveTool('getfacl');
if (!asRoot) oracleAvailable('editor format suite, kernel checks (needs root, getfacl)', asRoot);
const work = scratchDir('ext4wd-edfmt');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
let n = 0;
const enc = new TextEncoder();

const mkfs = (opts: string[], size = '256M'): string => mkfsExt4(work, opts, size);
const clean = expectClean;
/** Runs `fn` on the kernel's read-only view of the image (as root; skipped otherwise). */
function kernel(img: string, fn: (mnt: string) => void): void {
  if (!asRoot) return;
  const mnt = path.join(work, `mnt-${n++}`);
  fs.mkdirSync(mnt);
  mount(img, mnt, true);
  try {
    fn(mnt);
  } finally {
    umount(mnt);
  }
}
const names = (count: number, len = 20) => Array.from({ length: count }, (_, k) => `name-${k}-`.padEnd(len, 'x'));

describe.runIf(runIt)('htree directories', () => {
  it('a linear directory that outgrows its block becomes indexed; leaves split; the kernel finds every name', () => {
    const img = mkfs(['-b', '4096']);
    const list = names(3000);
    editImage(img, (ed) => {
      ed.mkdir('/d');
      for (const x of list) ed.writeFile(`/d/${x}`, x);
      expect(ed.reader.inode(ed.reader.lookup('/d')).flags & FL_INDEX).toBe(FL_INDEX);
    });
    clean(img);
    kernel(img, (mnt) => {
      expect(fs.readdirSync(path.join(mnt, 'd')).sort()).toEqual([...list].sort());
      for (const x of list.filter((_, k) => k % 97 === 0))
        expect(fs.readFileSync(path.join(mnt, 'd', x), 'utf8')).toBe(x);
    });
    editImage(img, (ed) => {
      for (const x of list.filter((_, k) => k % 3)) ed.rm(`/d/${x}`);
    });
    clean(img);
    kernel(img, (mnt) => expect(fs.readdirSync(path.join(mnt, 'd')).length).toBe(1000));
  });

  it('two levels with 1 KiB blocks; a third with large_dir', () => {
    const img = mkfs(['-b', '1024', '-O', 'large_dir', '-N', '60000'], '512M');
    const list = Array.from({ length: 40000 }, (_, k) => `${k}-`.padEnd(250, 'q'));
    editImage(img, (ed) => {
      ed.mkdir('/big');
      for (const x of list) ed.writeFile(`/big/${x}`, '');
    });
    clean(img);
    expect(run('debugfs', ['-R', 'htree /big', img]).stdout).toMatch(/Indirect levels: 2/);
    kernel(img, (mnt) => {
      const got = fs.readdirSync(path.join(mnt, 'big'));
      expect(got.length).toBe(list.length);
      for (const x of list.filter((_, k) => k % 1013 === 0)) expect(fs.existsSync(path.join(mnt, 'big', x))).toBe(true);
    });
  });

  it('without large_dir a full two-level index is refused, with nothing changed', () => {
    // 1 KiB blocks and 250-byte names: each leaf holds 3 names, the index 123 x 126 leaves.
    const img = mkfs(['-b', '1024', '-N', '60000'], '512M');
    const ed = Ext4Editor.open(img);
    ed.mkdir('/big');
    let err: unknown;
    let k = 0;
    for (; k < 60000; k++) {
      try {
        ed.writeFile(`/big/${`${k}-`.padEnd(250, 'q')}`, '');
      } catch (e) {
        err = e;
        break;
      }
    }
    expect((err as { code?: string }).code).toBe('NO_SPACE');
    ed.commit();
    ed.close();
    clean(img);
    kernel(img, (mnt) => expect(fs.readdirSync(path.join(mnt, 'big')).length).toBe(k));
  });

  for (const [what, alg, flags] of [
    ['tea', 'tea', undefined],
    ['legacy', 'legacy', undefined],
    ['half_md4 unsigned', undefined, 'unsigned'],
    ['tea unsigned', 'tea', 'unsigned'],
  ] as [string, string | undefined, string | undefined][])
    it(`directory hash ${what}: indexes the editor builds and the kernel builds stay valid`, () => {
      const img = mkfs(['-b', '1024']);
      if (alg) run('tune2fs', ['-E', `hash_alg=${alg}`, img]);
      if (flags === 'unsigned') run('debugfs', ['-w', '-R', 'ssv flags 2', img]);
      // The kernel makes one indexed directory, the editor another, then each adds to the other's.
      if (asRoot) {
        const mnt = path.join(work, `mnt-${n++}`);
        fs.mkdirSync(mnt);
        mount(img, mnt, false);
        try {
          fs.mkdirSync(path.join(mnt, 'k'));
          for (const x of names(800)) fs.writeFileSync(path.join(mnt, 'k', x), '');
        } finally {
          umount(mnt);
        }
      }
      editImage(img, (ed) => {
        ed.mkdir('/e');
        for (const x of names(800)) ed.writeFile(`/e/${x}`, '');
        if (asRoot) for (const x of names(400, 31)) ed.writeFile(`/k/${x}`, '');
      });
      clean(img);
      kernel(img, (mnt) => {
        expect(fs.readdirSync(path.join(mnt, 'e')).length).toBe(800);
        for (const x of names(800).filter((_, k) => k % 37 === 0))
          expect(fs.existsSync(path.join(mnt, 'e', x))).toBe(true);
        expect(fs.readdirSync(path.join(mnt, 'k')).length).toBe(1200);
        for (const x of names(400, 31).filter((_, k) => k % 23 === 0))
          expect(fs.existsSync(path.join(mnt, 'k', x))).toBe(true);
      });
    });
});

describe.runIf(runIt)('file maps', () => {
  it('a fragmented file grows its extent tree to depth 2 and shrinks back to the inode', () => {
    const img = mkfs(['-b', '1024'], '16M');
    editImage(img, (ed) => {
      for (let k = 0; k < 900; k++) ed.writeFile(`/f${k}`, new Uint8Array(1024).fill(1 + (k % 200)));
    });
    // Fill what is left but 64 blocks, then free every other small file: 450 one-block holes.
    const free = Number(/Free blocks:\s+(\d+)/.exec(run('dumpe2fs', ['-h', img]).stdout)![1]);
    editImage(img, (ed) => ed.writeFile('/filler', [new Uint8Array((free - 120) * 1024).fill(9)]));
    editImage(img, (ed) => {
      for (let k = 0; k < 900; k += 2) ed.rm(`/f${k}`);
    });
    const data = new Uint8Array(480 * 1024);
    for (let k = 0; k < data.length; k++) data[k] = (k * 7 + (k >> 10)) & 0xff;
    editImage(img, (ed) => ed.writeFile('/frag', data));
    clean(img);
    // 1 KiB blocks: 84 extents a leaf, 4 in the inode, so 400 and more pieces need two levels.
    expect(run('debugfs', ['-R', 'ex /frag', img]).stdout).toMatch(/^\s*2\/\s*2\s/m);
    kernel(img, (mnt) => expect(Buffer.compare(fs.readFileSync(path.join(mnt, 'frag')), data)).toBe(0));
    editImage(img, (ed) => ed.truncate('/frag', 3000));
    clean(img);
    const r = Ext4Reader.open(FileDevice.open(img));
    const i = r.inode(r.lookup('/frag'));
    expect(i.block[6]! | (i.block[7]! << 8)).toBe(0); // depth 0: back in the inode
    expect(Buffer.compare(Buffer.from(r.readFileBytes(r.lookup('/frag'))), Buffer.from(data.subarray(0, 3000)))).toBe(
      0,
    );
  });

  it('a file past 4 GiB (sparse), and shrinking it', () => {
    const img = mkfs(['-b', '4096'], '1G');
    const tail = enc.encode('the end');
    editImage(img, (ed) => ed.writeFile('/huge', [new Uint8Array(1 << 20).fill(5), { hole: 5 * 2 ** 30 }, tail]));
    clean(img);
    const size = (1 << 20) + 5 * 2 ** 30 + tail.length;
    kernel(img, (mnt) => {
      const p = path.join(mnt, 'huge');
      expect(fs.statSync(p).size).toBe(size);
      const fd = fs.openSync(p, 'r');
      const b = Buffer.alloc(7);
      fs.readSync(fd, b, 0, 7, size - 7);
      fs.closeSync(fd);
      expect(b.toString()).toBe('the end');
    });
    expect(run('dumpe2fs', ['-h', img]).stdout).toMatch(/large_file/);
    editImage(img, (ed) => ed.truncate('/huge', 4 * 2 ** 30 + 1));
    clean(img);
  });

  it('ext2 block maps: direct, indirect, double and triple indirect blocks; truncation frees them', () => {
    const img = mkfs(['-t', 'ext2', '-b', '1024'], '128M');
    const part = (k: number) => new Uint8Array(3000).fill(k);
    // 1 KiB blocks: direct up to 12 KiB, single to 268 KiB, double to ~64 MiB, then triple.
    const content = [part(1), { hole: 200 << 10 }, part(2), { hole: 5 << 20 }, part(3), { hole: 70 << 20 }, part(4)];
    editImage(img, (ed) => {
      ed.writeFile('/maps', content);
      ed.writeFile('/small', 'block-mapped');
    });
    clean(img);
    const r = Ext4Reader.open(FileDevice.open(img));
    const i = r.inode(r.lookup('/maps'));
    expect(i.flags & FL_EXTENTS).toBe(0);
    expect(r.mapping(r.lookup('/maps'), i, true).metaBlocks.length).toBeGreaterThan(4);
    const bytes = r.readFileBytes(r.lookup('/maps'), 128 << 20);
    expect(bytes[bytes.length - 1]).toBe(4);
    kernel(img, (mnt) => expect(fs.statSync(path.join(mnt, 'maps')).size).toBe(bytes.length));
    editImage(img, (ed) => ed.truncate('/maps', 100 << 10));
    clean(img);
    editImage(img, (ed) => ed.rm('/maps'));
    clean(img);
  });

  it('inline data: small files and directories live in the inode until they outgrow it', () => {
    const img = mkfs(['-O', 'inline_data']);
    editImage(img, (ed) => {
      ed.writeFile('/tiny', 'inline!');
      ed.writeFile('/medium', 'm'.repeat(120));
      ed.mkdir('/dir');
      for (let k = 0; k < 3; k++) ed.writeFile(`/dir/f${k}`, `${k}`);
      const r = ed.reader;
      expect(r.inode(r.lookup('/tiny')).flags & FL_INLINE_DATA).toBe(FL_INLINE_DATA);
      expect(r.inode(r.lookup('/dir')).flags & FL_INLINE_DATA).toBe(FL_INLINE_DATA);
    });
    clean(img);
    editImage(img, (ed) => {
      ed.writeFile('/tiny', 't'.repeat(5000));
      for (let k = 3; k < 40; k++) ed.writeFile(`/dir/file-with-longer-name-${k}`, `${k}`);
      ed.truncate('/medium', 10);
      const r = ed.reader;
      expect(r.inode(r.lookup('/tiny')).flags & FL_INLINE_DATA).toBe(0);
      expect(r.inode(r.lookup('/dir')).flags & FL_INLINE_DATA).toBe(0);
    });
    clean(img);
    kernel(img, (mnt) => {
      expect(fs.readFileSync(path.join(mnt, 'tiny'), 'utf8')).toBe('t'.repeat(5000));
      expect(fs.readFileSync(path.join(mnt, 'medium'), 'utf8')).toBe('m'.repeat(10));
      expect(fs.readdirSync(path.join(mnt, 'dir')).length).toBe(40);
    });
  });
});

describe.runIf(runIt)('attributes and ACLs', () => {
  it('a shared attribute block is copied, never changed under the other inode', () => {
    const img = path.join(work, `x${n++}.img`);
    const big = { name: 'user.big', value: new Uint8Array(300).fill(0x61) };
    formatImage(img, {
      sizeBytes: 64 * 2 ** 20,
      sync: false,
      inodeSize: 128,
      source: memoryTreeSource({ children: { a: { data: 'a', xattrs: [big] }, b: { data: 'b', xattrs: [big] } } }),
    });
    const r0 = Ext4Reader.open(FileDevice.open(img));
    const shared = r0.inode(r0.lookup('/a')).fileAcl;
    expect(r0.inode(r0.lookup('/b')).fileAcl).toBe(shared);
    editImage(img, (ed) => ed.setXattr('/a', 'user.more', 'x'));
    clean(img);
    const r = Ext4Reader.open(FileDevice.open(img));
    expect(r.inode(r.lookup('/b')).fileAcl).toBe(shared);
    expect(r.inode(r.lookup('/a')).fileAcl).not.toBe(shared);
    expect(r.xattrs(r.lookup('/b'))).toEqual([big]);
    expect(
      r
        .xattrs(r.lookup('/a'))
        .map((x) => x.name)
        .sort(),
    ).toEqual(['user.big', 'user.more']);
    editImage(img, (ed) => {
      ed.removeXattr('/b', 'user.big');
      ed.rm('/a');
    });
    clean(img);
  });

  it('access ACLs set the mode like the kernel; chmod updates the ACL; capabilities', () => {
    const img = mkfs(['-b', '4096']);
    // getfattr's view of u::rw-,u:1000:rwx,g::r--,m::rwx,o::--- (version 2, tag, perm, id).
    const acl = (entries: [number, number, number][]) => {
      const b = Buffer.alloc(4 + entries.length * 8);
      b.writeUInt32LE(2, 0);
      entries.forEach(([tag, perm, id], k) => {
        b.writeUInt16LE(tag, 4 + k * 8);
        b.writeUInt16LE(perm, 6 + k * 8);
        b.writeUInt32LE(id, 8 + k * 8);
      });
      return new Uint8Array(b);
    };
    const U = 0xffffffff;
    const cap = new Uint8Array([0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    editImage(img, (ed) => {
      ed.writeFile('/f', 'acl', { mode: 0o600 });
      ed.setXattr(
        '/f',
        'system.posix_acl_access',
        acl([
          [1, 6, U],
          [2, 7, 1000],
          [4, 4, U],
          [0x10, 7, U],
          [0x20, 0, U],
        ]),
      );
      expect(ed.reader.inode(ed.reader.lookup('/f')).mode & 0o777).toBe(0o670);
      ed.chmod('/f', 0o640);
      ed.writeFile('/plain', 'p', { mode: 0o600 });
      // Equivalent to the mode: not stored, the mode follows it.
      ed.setXattr(
        '/plain',
        'system.posix_acl_access',
        acl([
          [1, 7, U],
          [4, 5, U],
          [0x20, 1, U],
        ]),
      );
      ed.mkdir('/d');
      ed.setXattr(
        '/d',
        'system.posix_acl_default',
        acl([
          [1, 7, U],
          [4, 5, U],
          [0x20, 0, U],
        ]),
      );
      ed.writeFile('/bin-ping', 'elf');
      ed.setXattr('/bin-ping', 'security.capability', cap);
      expect(() =>
        ed.setXattr(
          '/plain',
          'system.posix_acl_default',
          acl([
            [1, 7, U],
            [4, 5, U],
            [0x20, 0, U],
          ]),
        ),
      ).toThrow();
    });
    clean(img);
    const r = Ext4Reader.open(FileDevice.open(img));
    expect(r.inode(r.lookup('/plain')).mode & 0o777).toBe(0o751);
    expect(r.xattrs(r.lookup('/plain'))).toEqual([]);
    kernel(img, (mnt) => {
      const out = run('getfacl', ['-n', path.join(mnt, 'f')]).stdout;
      expect(out).toMatch(/user::rw-/);
      expect(out).toMatch(/user:1000:rwx\s+#effective:r--/);
      expect(out).toMatch(/mask::r--/);
      expect(out).toMatch(/other::---/);
      expect(run('getfacl', ['-n', path.join(mnt, 'd')]).stdout).toMatch(/default:user::rwx/);
      expect(run('getfattr', ['-n', 'security.capability', '-e', 'hex', path.join(mnt, 'bin-ping')]).stdout).toMatch(
        /0x0000000200200000/,
      );
    });
  });
});

describe.runIf(runIt)('geometry', () => {
  it('uninitialized groups are set up as the kernel does when first used', () => {
    const img = path.join(work, `u${n++}.img`);
    formatImage(img, { sizeBytes: 8 * 2 ** 30, sync: false });
    const before = run('dumpe2fs', [img]).stdout;
    editImage(img, (ed) => {
      // A top-level directory goes to the emptiest flex group (Orlov), away from group 0.
      for (let d = 0; d < 6; d++) {
        ed.mkdir(`/top${d}`);
        for (let k = 0; k < 20; k++) ed.writeFile(`/top${d}/f${k}`, new Uint8Array(100_000).fill(k));
      }
    });
    clean(img);
    const after = run('dumpe2fs', [img]).stdout;
    const uninit = (s: string) => (s.match(/INODE_UNINIT/g) ?? []).length;
    expect(uninit(after)).toBeLessThan(uninit(before));
    kernel(img, (mnt) => {
      expect(fs.readdirSync(mnt).filter((x) => x.startsWith('top')).length).toBe(6);
      expect(fs.readFileSync(path.join(mnt, 'top5', 'f19'))[99_999]).toBe(19);
    });
  });

  for (const [what, opts] of [
    ['meta_bg', ['-O', 'meta_bg,^resize_inode']],
    ['64 KiB blocks', ['-b', '65536']],
    ['^64bit, ^flex_bg', ['-O', '^64bit,^flex_bg']],
    ['metadata_csum_seed', ['-O', 'metadata_csum_seed']],
  ] as [string, string[]][])
    it(`${what}: edits pass e2fsck`, () => {
      const img = mkfs(opts, '512M');
      editImage(img, (ed) => {
        ed.mkdir('/a/b', { parents: true });
        for (let k = 0; k < 300; k++) ed.writeFile(`/a/b/f${k}`, new Uint8Array(k * 97).fill(k));
        ed.writeFile('/a/big', new Uint8Array(20 << 20).fill(3));
        ed.symlink('x'.repeat(200), '/a/l');
      });
      editImage(img, (ed) => {
        ed.rm('/a/b', { recursive: true });
        ed.truncate('/a/big', 1000);
      });
      clean(img);
    });
});

describe.runIf(runIt)('copying trees in', () => {
  it('a host tree merged into an existing directory equals the source in the kernel view, with --owner', () => {
    const src = path.join(work, `src-${n++}`);
    makeVariedTree(src);
    const img = mkfs(['-b', '4096'], '512M');
    editImage(img, (ed) => {
      ed.mkdir('/dest');
      ed.writeFile('/dest/small.txt', 'to be replaced');
      ed.writeFile('/dest/extra', 'stays');
    });
    const res = editImage(img, (ed) => ed.copyIn(src, '/dest', { owner: { uid: 0, gid: 0 } }));
    expect(res.files).toBeGreaterThan(2500);
    clean(img);
    kernel(img, (mnt) => {
      const want = snapshot(src, { owner: [0, 0] });
      const got = snapshot(path.join(mnt, 'dest'));
      expect(got.get('extra')?.type).toBe('file');
      got.delete('extra');
      for (const [k, v] of want) {
        if (v.type === 'sock' || v.type === 'fifo' || v.type === 'chr' || v.type === 'blk') {
          expect(got.get(k)?.type).toBe(v.type);
          continue;
        }
        const { atimeNs: _a, ...w } = v;
        const { atimeNs: _b, ...g } = got.get(k) ?? ({} as typeof v);
        expect(g, k).toEqual(w);
      }
    });
  });

  it('an image subtree with its attributes, hard links and devices, into a new directory', () => {
    const srcImg = path.join(work, `s${n++}.img`);
    formatImage(srcImg, {
      sizeBytes: 64 * 2 ** 20,
      sync: false,
      source: memoryTreeSource({
        children: {
          etc: {
            children: {
              hosts: { data: '127.0.0.1 localhost\n', xattrs: [{ name: 'user.x', value: enc.encode('1') }] },
            },
          },
          dev: { children: { null: { kind: 'chardev', rdev: [1, 3] } } },
          bin: { children: { sh: { data: 'elf', perm: 0o4755 } } },
        },
      }),
    });
    const img = mkfs(['-b', '4096']);
    editImage(img, (ed) => ed.copyIn(imageTreeSource(Ext4Reader.open(FileDevice.open(srcImg)), '/'), '/rootfs'));
    clean(img);
    const r = Ext4Reader.open(FileDevice.open(img));
    expect(r.xattrs(r.lookup('/rootfs/etc/hosts'))).toEqual([{ name: 'user.x', value: enc.encode('1') }]);
    expect(r.deviceNumbers(r.inode(r.lookup('/rootfs/dev/null')))).toEqual([1, 3]);
    expect(r.inode(r.lookup('/rootfs/bin/sh')).mode & 0o7777).toBe(0o4755);
    void hostDirectorySource;
  });
});

describe.runIf(runIt)('SOURCE_DATE_EPOCH', () => {
  const withEpoch = <T>(v: string, fn: () => T): T => {
    const was = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = v;
    try {
      return fn();
    } finally {
      if (was === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = was;
    }
  };

  it('a bad value is refused as mkfs refuses it (BAD_OPTION), before the image is opened, nothing changed', () => {
    const img = mkfs(['-b', '4096', '-O', 'mmp']);
    const before = fs.readFileSync(img);
    for (const bad of ['yesterday', '-5', '1.5', String(2 ** 40)])
      withEpoch(bad, () =>
        expect(() => editImage(img, (ed) => ed.mkdir('/d'))).toThrowError(
          expect.objectContaining({
            code: 'BAD_OPTION',
            message: expect.stringMatching(/SOURCE_DATE_EPOCH|timestamp/) as unknown,
          }),
        ),
      );
    expect(Buffer.compare(fs.readFileSync(img), before)).toBe(0);
    clean(img);
    // An explicit timestamp wins over the environment, as with mkfs.
    withEpoch('yesterday', () => editImage(img, (ed) => ed.mkdir('/a'), { timestamp: 1234567890 }));
    withEpoch('1500000000', () => editImage(img, (ed) => ed.mkdir('/b')));
    clean(img);
    const r = Ext4Reader.open(FileDevice.open(img));
    expect(r.inode(r.lookup('/a')).mtime.sec).toBe(1234567890);
    expect(r.inode(r.lookup('/b')).mtime.sec).toBe(1500000000);
  });
});
