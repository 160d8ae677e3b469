/**
 * Helpers for the oracle suites (e2fsprogs, the kernel). Locally a suite skips with a printed reason
 * when a tool or root is missing; under CI=true nothing skips, so a missing tool fails the run.
 */
import { expect } from 'vitest';
import { checkImage, type CheckResult } from '../../src/check/check.js';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

export function haveTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).status === 0;
}

export const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;

/** True when the suite should run; prints why not otherwise. Under CI it is always true. */
export function oracleAvailable(what: string, ok: boolean): boolean {
  if (ok || IN_CI) return true;
  console.warn(`skipping ${what}: not available on this machine (runs in CI)`);
  return false;
}

export const HAVE_E2FSPROGS = ['mkfs.ext4', 'e2fsck', 'dumpe2fs', 'debugfs'].every(haveTool);

export function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    env: { ...process.env, ...opts.env },
    input: opts.input,
    timeout: opts.timeoutMs ?? 300_000,
    maxBuffer: 256 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  return r;
}

/**
 * Runs `e2fsck -fn` and returns its exit code and output; our own `check` runs beside it on every
 * image, and where e2fsck finds the image clean but check does not, the status is 104 with check's
 * problems in the output (a second judge that must agree).
 */
export function fsck(image: string): { status: number; output: string } {
  const r = run('e2fsck', ['-fn', image]);
  const status = r.status ?? -1;
  const output = r.stdout + r.stderr;
  if (status !== 0) return { status, output };
  let ours: CheckResult;
  try {
    ours = checkImage(image);
  } catch (e) {
    return { status: 104, output: `${output}\ncheck could not check what e2fsck finds clean: ${(e as Error).message}` };
  }
  if (ours.clean) return { status, output };
  const listed = ours.problems.slice(0, 20).map((p) => `  ${p.code}: ${p.text}`);
  return { status: 104, output: `${output}\ncheck finds problems where e2fsck finds none:\n${listed.join('\n')}` };
}

/** e2fsck -fn and our check both find the image clean. */
export function expectClean(img: string): void {
  const r = fsck(img);
  expect(r.status, r.output).toBe(0);
}

let mkfsCount = 0;
/** A new image in `dir` of `size` (truncate's syntax), made by `mkfs.ext4 -q -F` with the options given. */
export function mkfsExt4(dir: string, opts: string[], size: string): string {
  const img = path.join(dir, `m${mkfsCount++}.img`);
  run('truncate', ['-s', size, img]);
  const r = run('mkfs.ext4', ['-q', '-F', ...opts, img]);
  if (r.status !== 0) throw new Error(r.stderr);
  return img;
}

/**
 * A new `mkfs.ext4` image of `size` (bytes, or truncate's units) in `dir`, owned by root (as the
 * images the resize tests grow and shrink), ext4 unless `args` names a `-t`.
 */
export function mkfsImage(dir: string, size: number | string, args: string[]): string {
  const img = path.join(dir, `m${mkfsCount++}.img`);
  run('truncate', ['-s', String(size), img]);
  const fsType = args.includes('-t') ? [] : ['-t', 'ext4'];
  const r = run('mkfs.ext4', ['-q', '-F', ...fsType, '-E', 'root_owner=0:0', ...args, img]);
  if (r.status !== 0) throw new Error(r.stderr);
  return img;
}

/** `dumpe2fs` (full or -h) with the lines that legitimately differ between two mkfs runs removed. */
export function dumpe2fs(image: string, headerOnly: boolean): string {
  const r = run('dumpe2fs', headerOnly ? ['-h', image] : [image]);
  if (r.status !== 0) throw new Error(`dumpe2fs failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => !/^(Lifetime writes|Checksum):/.test(l))
    .join('\n');
}

/**
 * A scratch directory for images. Very large sparse images need a host file system that allows huge
 * files: tmpfs (/dev/shm) does, ext4 stops at 16 TiB.
 */
export function scratchDir(prefix: string, huge = false): string {
  const base = huge && fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  return fs.mkdtempSync(path.join(base, `${prefix}-`));
}

export const CLI = path.resolve(__dirname, '../../dist/cli.cjs');

export function cli(args: string[], env?: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  return run(process.execPath, [CLI, ...args], { env });
}

/** Allocated bytes of a file (what du reports). */
export function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}
