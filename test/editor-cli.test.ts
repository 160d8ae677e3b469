/**
 * The editing commands of the CLI: each command with --help, --json and its errors (a code on stderr,
 * exit 1, the image unchanged), content from a file, text or standard input, and `edit --script`
 * running a batch as one all-or-nothing change.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { formatImage } from '../src/mkfs/image.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { parseMode, parseOwner, parseXattrValue, parseTime, splitWords, parseScript } from '../src/edit/commands.js';
import { HAVE_E2FSPROGS, oracleAvailable, scratchDir, fsck, cli, CLI } from './helpers/oracle.js';

const runIt = oracleAvailable('editor CLI suite (e2fsprogs)', HAVE_E2FSPROGS);
const work = scratchDir('ext4wd-edcli');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
let n = 0;
function image(): string {
  const img = path.join(work, `c${n++}.img`);
  formatImage(img, { sizeBytes: 32 * 2 ** 20, sync: false });
  return img;
}
const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
function reader(img: string): Ext4Reader {
  return Ext4Reader.open(FileDevice.open(img));
}
function readText(img: string, p: string): string {
  const r = reader(img);
  return Buffer.from(r.readFileBytes(r.lookup(p, { followLast: true }))).toString();
}
function withInput(args: string[], input: string) {
  return spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'utf8' });
}

describe('argument parsing', () => {
  it('modes: octal and symbolic', () => {
    expect(parseMode('0644')).toBe(0o644);
    expect(parseMode('4755')).toBe(0o4755);
    expect(parseMode('u+x', 0o644)).toBe(0o744);
    expect(parseMode('go-w,u+s', 0o777)).toBe(0o4755);
    expect(parseMode('a=rX', 0o600, true)).toBe(0o555);
    expect(parseMode('a=rX', 0o600, false)).toBe(0o444);
    expect(parseMode('g=u', 0o750)).toBe(0o770);
    expect(parseMode('+t', 0o755)).toBe(0o1755);
    expect(() => parseMode('u+q')).toThrowError(expect.objectContaining({ code: 'BAD_OPTION' }));
  });
  it('owners, attribute values, times and script words', () => {
    expect(parseOwner('0:0')).toEqual({ uid: 0, gid: 0 });
    expect(parseOwner('1000')).toEqual({ uid: 1000, gid: undefined });
    expect(parseOwner(':5')).toEqual({ uid: undefined, gid: 5 });
    expect(() => parseOwner('root:root')).toThrowError(expect.objectContaining({ code: 'BAD_OPTION' }));
    expect([...parseXattrValue('0x0102ff')]).toEqual([1, 2, 255]);
    expect(Buffer.from(parseXattrValue('0sAQI=')).toString('hex')).toBe('0102');
    expect(Buffer.from(parseXattrValue('"quoted"')).toString()).toBe('quoted');
    expect(parseTime('1700000000.123456789')).toEqual({ sec: 1_700_000_000, nsec: 123_456_789 });
    expect(parseTime('2001-02-03T04:05:06.5Z')).toEqual({ sec: 981173106, nsec: 500_000_000 });
    expect(splitWords(`write /etc/motd --data "hello \\"world\\"" # comment`)).toEqual([
      'write',
      '/etc/motd',
      '--data',
      'hello "world"',
    ]);
    expect(splitWords(`mkdir '/a b'\\ c`)).toEqual(['mkdir', '/a b c']);
    expect(() => parseScript('mkdir /a\nfrobnicate /b\n')).toThrow(/line 2/);
    expect(() => parseScript('mkdir --bogus /a\n')).toThrow(/line 1/);
  });
});

describe.runIf(runIt)('editing commands', () => {
  it('every command has --help (exit 0) and rejects unknown options (exit 2)', () => {
    for (const c of [
      'write',
      'mkdir',
      'rm',
      'mv',
      'ln',
      'chmod',
      'chown',
      'touch',
      'truncate',
      'setfattr',
      'cp-in',
      'edit',
    ]) {
      const h = cli([c, '--help']);
      expect(h.status, c).toBe(0);
      expect(h.stdout).toMatch(new RegExp(`usage: ext4-workdisk ${c}`));
      const bad = cli([c, 'x.img', '--no-such-option']);
      expect(bad.status, c).toBe(2);
      expect(bad.stderr).not.toMatch(/at .*\.js/);
    }
  });

  it('write from a file, from text, from standard input; mkdir, ln, chmod, chown, setfattr, touch, truncate, mv, rm', () => {
    const img = image();
    const host = path.join(work, `h${n++}`);
    fs.writeFileSync(host, 'from a file\n');
    const ok = (args: string[]) => {
      const r = cli(args);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r;
    };
    ok(['mkdir', '-p', img, '/etc/ssh', '--mode', '0750', '--owner', '0:0']);
    ok(['write', img, '/etc/a', '--from', host]);
    ok(['write', img, '/etc/b', '--data', 'text', '--mode', 'u=rw,go=']);
    const stdin = withInput(['write', img, '/etc/c', '--json'], 'from stdin\n');
    expect(stdin.status, stdin.stderr).toBe(0);
    expect(JSON.parse(stdin.stdout)).toEqual({ ok: true, command: 'write', image: img, path: '/etc/c' });
    ok(['ln', '-s', img, '/etc/a', '/link']);
    ok(['ln', img, '/etc/a', '/hard']);
    ok(['chmod', img, 'u+x', '/etc/a']);
    ok(['chown', img, '1000:2000', '/etc/a']);
    ok(['setfattr', img, '-n', 'user.note', '-v', '"hi"', '/etc/a']);
    ok(['touch', img, '/etc/new', '--time', '1700000000.5']);
    ok(['truncate', img, '--size', '4', '/etc/c']);
    ok(['mv', img, '/etc/b', '/etc/ssh']);
    ok(['rm', img, '/hard']);
    expect(fsck(img).status).toBe(0);
    const r = reader(img);
    expect(readText(img, '/link')).toBe('from a file\n');
    expect(readText(img, '/etc/c')).toBe('from');
    const a = r.inode(r.lookup('/etc/a'));
    expect([a.mode & 0o7777, a.uid, a.gid, a.linksCount]).toEqual([0o744, 1000, 2000, 1]);
    expect(r.inode(r.lookup('/etc/ssh/b')).mode & 0o777).toBe(0o600);
    expect(r.inode(r.lookup('/etc/ssh')).mode & 0o7777).toBe(0o750);
    expect(r.xattrs(r.lookup('/etc/a'))).toEqual([{ name: 'user.note', value: new TextEncoder().encode('hi') }]);
    expect(r.inode(r.lookup('/etc/new')).mtime).toEqual({ sec: 1_700_000_000, nsec: 500_000_000 });
    const x = cli(['setfattr', img, '-x', 'user.note', '/etc/a']);
    expect(x.status).toBe(0);
    expect(reader(img).xattrs(reader(img).lookup('/etc/a'))).toEqual([]);
  });

  it('errors: a code on stderr (and stdout with --json), exit 1, the image unchanged', () => {
    const img = image();
    const before = sha(img);
    const huge = path.join(work, `huge${n++}`);
    fs.writeFileSync(huge, '');
    fs.truncateSync(huge, 64 << 20);
    for (const [args, code] of [
      [['write', img, '/no/such/f', '--data', 'x'], 'NOT_FOUND'],
      [['mkdir', img, '/' + 'n'.repeat(256)], 'NAME_TOO_LONG'],
      [['rm', img, '/'], 'INVALID_ARGUMENT'],
      [['mkdir', img, '/lost+found'], 'EXISTS'],
      [['write', img, '/big', '--from', huge], 'NO_SPACE'],
      [['write', img, '/dev', '--from', '/dev/null'], 'SOURCE_ERROR'],
    ] as [string[], string][]) {
      const r = cli(args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`error \\[${code}\\]`));
      expect(r.stderr).not.toMatch(/\n\s+at /);
      const j = cli([...args, '--json']);
      expect(JSON.parse(j.stdout)).toMatchObject({ ok: false, code });
    }
    expect(sha(img)).toBe(before);
  });

  it('cp-in copies a host tree like cp -a, with --owner', () => {
    const img = image();
    const src = path.join(work, `tree${n++}`);
    fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(src, 'sub', 'f'), 'deep');
    fs.chmodSync(path.join(src, 'sub', 'f'), 0o640);
    fs.symlinkSync('sub/f', path.join(src, 'l'));
    const r = cli(['cp-in', img, src, '/dest', '--owner', '0:0', '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, files: 1, dirs: 2, other: 1 });
    expect(fsck(img).status).toBe(0);
    expect(readText(img, '/dest/l')).toBe('deep');
    const i = reader(img).inode(reader(img).lookup('/dest/sub/f'));
    expect([i.mode & 0o7777, i.uid, i.gid]).toEqual([0o640, 0, 0]);
  });

  it('cp-in of a single file takes its attributes from --xattrs; touch without a time takes --timestamp', () => {
    const img = image();
    const f = path.join(work, `single${n++}`);
    fs.writeFileSync(f, 'one');
    const dump = path.join(work, `dump${n++}`);
    fs.writeFileSync(dump, `# file: ${f}\nuser.origin="host"\n\n`);
    const r = cli(['cp-in', img, f, '/copied', '--xattrs', dump]);
    expect(r.status, r.stderr).toBe(0);
    const rd = reader(img);
    const xs = rd.xattrs(rd.lookup('/copied'));
    expect(xs.map((x) => [x.name, Buffer.from(x.value).toString()])).toEqual([['user.origin', 'host']]);
    const t = cli(['touch', img, '/copied', '--timestamp', '1600000000']);
    expect(t.status, t.stderr).toBe(0);
    const i = reader(img).inode(reader(img).lookup('/copied'));
    expect([i.atime.sec, i.mtime.sec, i.ctime.sec]).toEqual([1600000000, 1600000000, 1600000000]);
    expect(fsck(img).status).toBe(0);
  });

  it('edit --script runs a batch as one change; a failing line leaves the image as it was', () => {
    const img = image();
    const good = path.join(work, `s${n++}.txt`);
    fs.writeFileSync(
      good,
      [
        '# provision a VM disk',
        'mkdir -p /root/.ssh --mode 700',
        'write /root/.ssh/authorized_keys --data "ssh-ed25519 AAAA user@host" --mode 600',
        'mkdir /etc',
        'write /etc/hostname --data vm-1 \\',
        '  --mode 644',
        "ln -s /etc/hostname '/etc/host name'",
        'chown 0:0 /root/.ssh',
        '',
      ].join('\n'),
    );
    const r = cli(['edit', img, '--script', good, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ ok: true, command: 'edit', image: img, commands: 6 });
    expect(readText(img, '/etc/host name')).toBe('vm-1');
    expect(fsck(img).status).toBe(0);
    const before = sha(img);
    const bad = withInput(['edit', img, '--script', '-'], 'mkdir /new\nwrite /new/f --data x\nrm /does-not-exist\n');
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/line 3 \(rm\).*NOT_FOUND|NOT_FOUND.*line 3 \(rm\)/);
    expect(sha(img)).toBe(before);
    const syntax = withInput(['edit', img, '--script', '-'], 'mkdir /x\nwrite /y --from -\n');
    expect(syntax.status).toBe(2);
    expect(sha(img)).toBe(before);
  });
});
