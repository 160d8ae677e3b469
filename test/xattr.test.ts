/** Extended attributes: codecs, the getfattr dump reader, and images checked by e2fsck and the kernel. */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  aclToDisk,
  aclFromDisk,
  toDisk,
  entryHash,
  encodeXattrBlock,
  sealXattrBlock,
  xattrSpace,
} from '../src/ext4/xattr.js';
import { parseXattrDump } from '../src/tree/sources/xattr-dump.js';
import { parseSpec } from '../src/tree/sources/spec.js';
import { parseXattrValue } from '../src/edit/commands.js';
import {
  HAVE_E2FSPROGS,
  IN_CI,
  IS_ROOT,
  haveTool,
  oracleAvailable,
  run,
  fsck,
  scratchDir,
  cli,
} from './helpers/oracle.js';

const ACL = Buffer.from(
  '0200000001000600ffffffff02000700e803000004000400ffffffff10000700ffffffff20000400ffffffff',
  'hex',
);

describe('xattr codecs', () => {
  it('converts POSIX ACLs between the VFS and ext4 formats', () => {
    const disk = aclToDisk(ACL, 'system.posix_acl_access');
    // version 1, three short entries, one long (named user), two short.
    expect(Buffer.from(disk).toString('hex')).toBe(
      '01000000' + '01000600' + '02000700e8030000' + '04000400' + '10000700' + '20000400',
    );
    expect(Buffer.from(aclFromDisk(disk))).toEqual(ACL);
    expect(() => aclToDisk(new Uint8Array(3), 'x')).toThrowError(expect.objectContaining({ code: 'SOURCE_ERROR' }));
  });
  it('maps name prefixes to indexes and refuses unknown namespaces', () => {
    expect(toDisk({ name: 'user.color', value: new Uint8Array(1) })).toMatchObject({
      index: 1,
      name: new TextEncoder().encode('color'),
    });
    expect(toDisk({ name: 'security.capability', value: new Uint8Array(1) }).index).toBe(6);
    expect(toDisk({ name: 'trusted.x', value: new Uint8Array(1) }).index).toBe(4);
    expect(toDisk({ name: 'system.posix_acl_default', value: ACL })).toMatchObject({
      index: 3,
      name: new Uint8Array(0),
    });
    expect(() => toDisk({ name: 'weird.x', value: new Uint8Array(1) })).toThrowError(
      expect.objectContaining({ code: 'UNSUPPORTED_FEATURE' }),
    );
  });
  it('hashes names and values, builds blocks with the block hash and checksum', () => {
    const a = toDisk({ name: 'user.a', value: new Uint8Array([1, 2, 3, 4, 5]) });
    expect(entryHash(a)).toBe(entryHash({ ...a }));
    expect(entryHash(a)).not.toBe(entryHash({ ...a, value: new Uint8Array([1, 2, 3, 4, 6]) }));
    const b = encodeXattrBlock(4096, [a, toDisk({ name: 'trusted.big', value: new Uint8Array(2000).fill(7) })]);
    sealXattrBlock(b, 1234, 2, 0xdeadbeef);
    expect(b.subarray(0, 12)).toEqual(new Uint8Array([0, 0, 2, 0xea, 2, 0, 0, 0, 1, 0, 0, 0]));
    expect(xattrSpace([a])).toBe(4 + 20 + 8);
  });
  it('refuses a dump whose paths are not in the source, naming the path, before writing anything', () => {
    const dir = scratchDir('ext4wd-dump');
    try {
      fs.mkdirSync(path.join(dir, 'tree/bin'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'tree/bin/ping'), 'x');
      fs.mkdirSync(path.join(dir, 'other'));
      const cap = 'security.capability=0x0100000200200000000000000000000000000000';
      const dump = (p: string) => `# file: ${p}\n${cap}\n`;
      const mkfsWithDump = (img: string) =>
        cli(['mkfs', img, '--size', '8M', '--from', path.join(dir, 'tree'), '--xattrs', path.join(dir, 'dump')]);
      // Of another directory, relative to somewhere else, of a path that is not there.
      for (const [text, named] of [
        [dump(path.join(dir, 'other')), path.join(dir, 'other')],
        [dump('bin/ping'), path.resolve('bin/ping')],
        [dump(path.join(dir, 'tree/bin/pong')), path.join(dir, 'tree/bin/pong')],
      ] as const) {
        fs.writeFileSync(path.join(dir, 'dump'), text);
        const img = path.join(dir, 'out.img');
        const r = mkfsWithDump(img);
        expect(r.status).not.toBe(0);
        expect(r.stderr).toContain('BAD_OPTION');
        expect(r.stderr).toContain(named);
        expect(fs.existsSync(img)).toBe(false);
        expect(fs.readdirSync(dir).sort()).toEqual(['dump', 'other', 'tree']);
      }
      // The matching dump is taken.
      fs.writeFileSync(path.join(dir, 'dump'), dump(path.join(dir, 'tree/bin/ping')));
      const img = path.join(dir, 'ok.img');
      const r = mkfsWithDump(img);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      if (HAVE_E2FSPROGS || IN_CI) expect(fsck(img).status).toBe(0);
      const x = cli(['stat', img, '/bin/ping', '--json']);
      expect((JSON.parse(x.stdout) as { xattrs: Record<string, string> }).xattrs['security.capability']).toBe(
        '0x0100000200200000000000000000000000000000',
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  it('reads getfattr dumps: hex, base64 and quoted values, escapes, relative paths', () => {
    const text = [
      '# file: rootfs/etc/x\\040y',
      'user.hex=0x6869',
      'user.b64=0saGk=',
      'user.text="a\\"b\\012c"',
      'user.empty',
      '',
      '# file: /abs/p',
      'security.capability=0x01',
      '',
    ].join('\n');
    const m = parseXattrDump(text, '/work');
    expect([...m.keys()]).toEqual(['/work/rootfs/etc/x y', '/abs/p']);
    const e = m.get('/work/rootfs/etc/x y')!;
    expect(e.map((x) => [x.name, Buffer.from(x.value).toString('latin1')])).toEqual([
      ['user.hex', 'hi'],
      ['user.b64', 'hi'],
      ['user.text', 'a"b\nc'],
      ['user.empty', ''],
    ]);
    expect(() => parseXattrDump('user.x=0x1\n')).toThrowError(expect.objectContaining({ code: 'BAD_OPTION' }));
    expect(() => parseXattrDump('# file: a\nuser.x=zz\n')).toThrowError(
      expect.objectContaining({ code: 'BAD_OPTION' }),
    );
  });

  it('the dump, the spec and setfattr share one value decoder: same bytes, same refusals', () => {
    const viaDump = (v: string) => parseXattrDump(`# file: /f\nuser.v=${v}\n`).get('/f')![0]!.value;
    const viaSpec = (v: string) =>
      parseSpec(`./f type=file xattr.user.v=${v}\n`).entries[0]!.xattrs.find((x) => x.name === 'user.v')!.value;
    const viaSetfattr = (v: string) => parseXattrValue(v);
    for (const decode of [viaDump, viaSpec, viaSetfattr]) {
      expect(Buffer.from(decode('0x6869')).toString()).toBe('hi');
      expect(Buffer.from(decode('0SaGk=')).toString()).toBe('hi');
      expect(Buffer.from(decode('"hi"')).toString()).toBe('hi');
      for (const bad of ['0x686', '0xzz', '0saGk', '0s!!!!'])
        expect(() => decode(bad), bad).toThrowError(expect.objectContaining({ code: 'BAD_OPTION' }));
    }
    // Bare text: setfattr and the spec take it, a getfattr dump always quotes.
    expect(Buffer.from(viaSetfattr('hi')).toString()).toBe('hi');
    expect(Buffer.from(viaSpec('hi')).toString()).toBe('hi');
    expect(() => viaDump('hi')).toThrowError(expect.objectContaining({ code: 'BAD_OPTION' }));
  });
});

const tools =
  HAVE_E2FSPROGS && IS_ROOT && haveTool('setfattr') && haveTool('getfattr') && haveTool('setfacl') && haveTool('mount');
describe.runIf(oracleAvailable('xattr kernel suite (root, attr, acl)', tools))(
  'xattrs through mkfs --from --xattrs',
  () => {
    const work = scratchDir('ext4wd-xattr');
    afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

    /** getfattr output parsed into path -> sorted "name=value" lines. */
    function attrs(dir: string): Map<string, string[]> {
      const out = run('sh', ['-c', `cd "${dir}" && getfattr -R -d -m - -e hex . 2>/dev/null`]).stdout;
      const m = new Map<string, string[]>();
      let cur: string[] = [];
      for (const line of out.split('\n')) {
        if (line.startsWith('# file: ')) m.set(line.slice(8), (cur = []));
        else if (line.trim()) cur.push(line);
      }
      for (const v of m.values()) v.sort();
      return m;
    }

    for (const [label, blockSize, inodeSize] of [
      ['4 KiB blocks, 256-byte inodes', 4096, 256],
      ['1 KiB blocks, 128-byte inodes (everything in blocks)', 1024, 128],
    ] as [string, number, number][]) {
      it(label, () => {
        const src = path.join(work, `src-${blockSize}`);
        fs.mkdirSync(path.join(src, 'dir'), { recursive: true });
        for (const f of ['small', 'big1', 'big2', 'acl', 'cap']) fs.writeFileSync(path.join(src, f), f);
        const sh = (cmd: string) => expect(run('sh', ['-c', cmd]).status, cmd).toBe(0);
        sh(`cd ${src} && setfattr -n user.color -v blue small && setfattr -n user.rootattr -v 1 .`);
        const big = 'x'.repeat(700);
        // Two files with the same large set share one attribute block.
        sh(
          `cd ${src} && setfattr -n trusted.big -v ${big} big1 && setfattr -n trusted.big -v ${big} big2 && setfattr -n user.more -v ${'y'.repeat(120)} big2`,
        );
        sh(
          `cd ${src} && setfacl -m u:1000:rwx,g:50:r acl && setfacl -d -m u:7:rx dir && setfattr -n user.dirattr -v "hello world" dir`,
        );
        sh(`cd ${src} && setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 cap`);
        const dump = path.join(work, `x-${blockSize}.dump`);
        sh(`getfattr -R -d -m - -e hex --absolute-names ${src} > ${dump}`);
        const img = path.join(work, `x-${blockSize}.img`);
        const r = cli([
          'mkfs',
          img,
          '--size',
          '64M',
          '--block-size',
          String(blockSize),
          '--inode-size',
          String(inodeSize),
          '--from',
          src,
          '--xattrs',
          dump,
          '--no-sync',
        ]);
        expect(r.status, r.stderr).toBe(0);
        const f = fsck(img);
        expect(f.status, f.output).toBe(0);
        const mnt = path.join(work, `mnt-${blockSize}`);
        fs.mkdirSync(mnt);
        expect(run('mount', ['-o', 'loop,ro', img, mnt]).status).toBe(0);
        try {
          expect(attrs(mnt)).toEqual(attrs(src));
          expect(run('getfacl', ['-c', path.join(mnt, 'acl')]).stdout).toBe(
            run('getfacl', ['-c', path.join(src, 'acl')]).stdout,
          );
        } finally {
          run('umount', [mnt]);
        }
      });
    }
  },
);
