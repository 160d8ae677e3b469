/** The one argument parser of the CLI and the edit scripts: its grammar, its mistakes, and the CLI's answer to them. */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError, parseArgv, type OptionSet } from '../src/core/args.js';
import { parseScript } from '../src/edit/commands.js';
import { cli, scratchDir, HAVE_E2FSPROGS, oracleAvailable, fsck } from './helpers/oracle.js';
import { rng } from './helpers/rng.js';

const OPTS = {
  size: { type: 'string', short: 's' },
  from: { type: 'string', short: 'f' },
  json: { type: 'boolean' },
  recursive: { type: 'boolean', short: 'r' },
  force: { type: 'boolean', short: 'F' },
  'no-sync': { type: 'boolean' },
} as const satisfies OptionSet;

/** The message of the UsageError `f` throws (fails the test when it throws none or another error). */
function usageError(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error('no UsageError thrown');
}

describe('parseArgv', () => {
  it('takes values joined (--x=v, -xv) and separate (--x v, -x v), alike', () => {
    for (const args of [
      ['--size=8G', 'img'],
      ['--size', '8G', 'img'],
      ['-s8G', 'img'],
      ['-s', '8G', 'img'],
      ['img', '-s', '8G'],
    ])
      expect(parseArgv(args, OPTS, 'mkfs')).toEqual({ values: { size: '8G' }, positionals: ['img'] });
    // An empty value, and a value that starts with '-' when joined.
    expect(parseArgv(['--from='], OPTS, 'x').values).toEqual({ from: '' });
    expect(parseArgv(['--from', ''], OPTS, 'x').values).toEqual({ from: '' });
    expect(parseArgv(['--size=-5'], OPTS, 'x').values).toEqual({ size: '-5' });
    expect(parseArgv(['--from=a=b'], OPTS, 'x').values).toEqual({ from: 'a=b' });
    // '-' alone is a word (standard input), also as a value.
    expect(parseArgv(['-', '--from', '-'], OPTS, 'x')).toEqual({ values: { from: '-' }, positionals: ['-'] });
  });

  it('groups short flags; a string option in a group takes the rest of it, or the next word', () => {
    expect(parseArgv(['-rF', 'a'], OPTS, 'rm')).toEqual({
      values: { recursive: true, force: true },
      positionals: ['a'],
    });
    expect(parseArgv(['-rs8G'], OPTS, 'x').values).toEqual({ recursive: true, size: '8G' });
    expect(parseArgv(['-rs', '8G'], OPTS, 'x').values).toEqual({ recursive: true, size: '8G' });
    expect(parseArgv(['-sr'], OPTS, 'x').values).toEqual({ size: 'r' });
  });

  it('repeated options: the last value wins; flags stay set', () => {
    expect(parseArgv(['--size', '4M', '--size=8M', '-s', '16M'], OPTS, 'x').values).toEqual({ size: '16M' });
    expect(parseArgv(['--json', '--json'], OPTS, 'x').values).toEqual({ json: true });
  });

  it('-- ends the options: what follows is positional, even -- again', () => {
    expect(parseArgv(['a', '--', '--json', '-r', '--'], OPTS, 'x')).toEqual({
      values: {},
      positionals: ['a', '--json', '-r', '--'],
    });
  });

  it('mistakes are UsageErrors naming the command and the option as written', () => {
    expect(usageError(() => parseArgv(['--bogus'], OPTS, 'mkfs'))).toBe("mkfs: unknown option '--bogus'");
    expect(usageError(() => parseArgv(['--bogus=1'], OPTS, 'mkfs'))).toBe("mkfs: unknown option '--bogus'");
    expect(usageError(() => parseArgv(['-x'], OPTS, 'ls'))).toBe("ls: unknown option '-x'");
    expect(usageError(() => parseArgv(['-rx'], OPTS, 'rm'))).toBe("rm: unknown option '-x'");
    expect(usageError(() => parseArgv(['img', '--size'], OPTS, 'mkfs'))).toBe('mkfs: option --size needs a value');
    expect(usageError(() => parseArgv(['-s'], OPTS, 'mkfs'))).toBe('mkfs: option -s needs a value');
    expect(usageError(() => parseArgv(['--json=1'], OPTS, 'mkfs'))).toBe('mkfs: option --json takes no value');
    expect(usageError(() => parseArgv(['--size', '-5'], OPTS, 'mkfs'))).toMatch(
      /^mkfs: option --size needs a value; .* write --size=-5$/,
    );
    expect(usageError(() => parseArgv(['--size', '--json'], OPTS, 'mkfs'))).toMatch(/option --size needs a value/);
    // Names that exist only on Object.prototype are unknown options, not crashes.
    expect(usageError(() => parseArgv(['--constructor'], OPTS, 'x'))).toBe("x: unknown option '--constructor'");
    expect(usageError(() => parseArgv(['--__proto__=1'], OPTS, 'x'))).toBe("x: unknown option '--__proto__'");
  });

  it('an option with an optional value: alone it is true, with = it has the value, a following word stays a positional', () => {
    const o = { wait: { type: 'string', optionalValue: true }, ...OPTS } as const satisfies OptionSet;
    expect(parseArgv(['--wait', 'img'], o, 'write')).toEqual({ values: { wait: true }, positionals: ['img'] });
    expect(parseArgv(['--wait=5', 'img'], o, 'write')).toEqual({ values: { wait: '5' }, positionals: ['img'] });
    expect(parseArgv(['img', '--wait'], o, 'write')).toEqual({ values: { wait: true }, positionals: ['img'] });
  });

  it('accepts and rejects exactly what node:util parseArgs (strict) does, with the same result', () => {
    const words = ['a', '-', '--', '--size', '--size=1', '--size=', '-s', '-s2', '-rs', '-rs3', '-sr', '-rF', '-r'];
    words.push('--json', '--json=x', '--bogus', '-x', '-rx', '--no-sync', '-5', '--from', '-f-', '--from=-', '');
    const next = rng(20);
    let accepted = 0;
    for (let n = 0; n < 3000; n++) {
      const args = Array.from({ length: Math.floor(next() * 6) }, () => words[Math.floor(next() * words.length)]!);
      let theirs: { values: object; positionals: string[] } | undefined;
      try {
        const r = parseArgs({ args, options: OPTS, allowPositionals: true, strict: true });
        theirs = { values: { ...r.values }, positionals: r.positionals };
      } catch {
        theirs = undefined;
      }
      let ours: { values: object; positionals: string[] } | undefined;
      try {
        ours = parseArgv(args, OPTS, 'x');
      } catch (e) {
        expect(e, JSON.stringify(args)).toBeInstanceOf(UsageError);
        ours = undefined;
      }
      expect(ours, JSON.stringify(args)).toEqual(theirs);
      if (ours) accepted++;
    }
    // Both outcomes were exercised.
    expect(accepted).toBeGreaterThan(300);
    expect(accepted).toBeLessThan(2700);
  });

  it('edit scripts parse with it too', () => {
    const [l] = parseScript('write /a --data=x -m 600 --data y\n');
    expect(l!.positionals).toEqual(['/a']);
    expect(l!.values).toEqual({ data: 'y', mode: '600' });
    expect(() => parseScript('write /a --nope\n')).toThrow(/^line 1: write: unknown option '--nope'$/);
    expect(() => parseScript('rm\n')).toThrow(UsageError);
    // A name Object.prototype has is no command.
    expect(() => parseScript('toString /a\n')).toThrow(/^line 1: unknown command "toString"$/);
  });
});

describe('the CLI on argument mistakes', () => {
  const dir = scratchDir('ext4wd-cli-args');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('an unknown option, a missing value, a flag given a value: one line naming command and option, exit 2, nothing written', () => {
    const img = path.join(dir, 'never.img');
    for (const [args, text] of [
      [['mkfs', img, '--size', '8M', '--bogus'], "mkfs: unknown option '--bogus'"],
      [['mkfs', img, '--size'], 'mkfs: option --size needs a value'],
      [['mkfs', img, '--size=8M', '--json=yes'], 'mkfs: option --json takes no value'],
      [['ls', img, '-x'], "ls: unknown option '-x'"],
      [['write', img, '/f', '--data'], 'write: option --data needs a value'],
      [['rm', '-rq', img, '/f'], "rm: unknown option '-q'"],
      [['toString', img], 'unknown command "toString"'],
    ] as const) {
      const r = cli([...args]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(`ext4-workdisk: ${text} (see ext4-workdisk --help)\n`);
    }
    expect(fs.existsSync(img)).toBe(false);
  });

  it('--x=v and --x v, -xv, repeated options (the last wins), -- before a positional', () => {
    const sizes: number[] = [];
    for (const [n, args] of [
      [1, ['--size=8M']],
      [2, ['--size', '8M']],
      [3, ['-s8M']],
      [4, ['--size', '4M', '--size=8M']],
    ] as const) {
      const img = path.join(dir, `s${n}.img`);
      const r = cli(['mkfs', ...args, '--json', '--no-sync', '--', img]);
      expect(r.status, r.stderr).toBe(0);
      sizes.push((JSON.parse(r.stdout) as { sizeBytes: number }).sizeBytes);
      expect(fs.statSync(img).size).toBe(8 << 20);
      if (oracleAvailable('e2fsck', HAVE_E2FSPROGS)) expect(fsck(img).status).toBe(0);
    }
    expect(sizes).toEqual([8 << 20, 8 << 20, 8 << 20, 8 << 20]);
    const img = path.join(dir, 's1.img');
    const w = cli(['write', img, '--no-sync', '--data=--not-an-option', '--', '/-dash']);
    expect(w.status, w.stderr).toBe(0);
    expect(cli(['cat', img, '/-dash']).stdout).toBe('--not-an-option');
    if (oracleAvailable('e2fsck', HAVE_E2FSPROGS)) expect(fsck(img).status).toBe(0);
  });
});
