/**
 * The `ext4-workdisk` executable: loads the CLI bundle through a V8 code cache, so a command does not
 * pay for compiling the code it runs every time (about half of the CLI's own time for one edit). One
 * cache per command, written after its first run; they live in the user's cache directory ($XDG_CACHE_HOME or ~/.cache, a directory only the user
 * may write), keyed by the runtime (Node, Bun or Deno) and its engine's version and by the bundle; V8 checks it and drops it when it does not fit.
 * EXT4_WORKDISK_NO_CODE_CACHE=1 turns it off; any problem with it just means compiling as usual.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vm from 'node:vm';
import Module from 'node:module';

declare const __dirname: string;
declare const require: NodeJS.Require;
declare const module: NodeJS.Module;

const bundle = path.join(__dirname, 'cli-bundle.cjs');
const debug = process.env.EXT4_WORKDISK_DEBUG_CODE_CACHE === '1';

/**
 * The runtime and its engine's version: Bun and Deno report a Node version too (the same one), and a
 * cache one of them wrote is rejected by the other, then rewritten, on every run.
 */
function runtime(): string {
  const v = process.versions as Partial<Record<string, string>>;
  const name = v.bun ? `bun${v.bun}` : v.deno ? `deno${v.deno}` : `node${process.version}`;
  return `${name}-${v.v8 ?? 'js'}`;
}

/** The cache file for this bundle and this runtime, in a directory that only this user can write. */
function cacheFile(): string | undefined {
  if (process.env.EXT4_WORKDISK_NO_CODE_CACHE === '1') return undefined;
  try {
    const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
    const dir = path.join(base, 'ext4-workdisk');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = fs.statSync(dir);
    // Cached code runs as this user: a directory others can write would let them supply it.
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) return undefined;
    if (st.mode & 0o022) return undefined;
    const b = fs.statSync(bundle);
    // One cache a command: each holds the functions that command compiled on its first run.
    const cmd = /^[a-z][a-z-]{0,15}$/.test(process.argv[2] ?? '') ? process.argv[2] : 'other';
    return path.join(dir, `${cmd}-${runtime()}-${process.arch}-${b.size}-${Math.floor(b.mtimeMs)}.v8cache`);
  } catch {
    return undefined;
  }
}

const source = fs.readFileSync(bundle, 'utf8');
const file = cacheFile();
let cached: Buffer | undefined;
if (file)
  try {
    cached = fs.readFileSync(file);
  } catch {
    cached = undefined;
  }
const script = new vm.Script(Module.wrap(source), { filename: bundle, cachedData: cached });
const state = !cached ? 'missing' : script.cachedDataRejected ? 'rejected' : 'used';
if (debug) process.stderr.write(`ext4-workdisk: code cache ${state}${file ? ` (${file})` : ' (off)'}\n`);
if (file && state !== 'used')
  // After the command: the cache then holds the functions it compiled too.
  process.once('exit', () => {
    try {
      const tmp = `${file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, script.createCachedData(), { mode: 0o600 });
      fs.renameSync(tmp, file);
    } catch {
      // A read-only or full cache directory only costs speed.
    }
  });
const run = script.runInThisContext() as (
  e: unknown,
  r: NodeJS.Require,
  m: NodeJS.Module,
  f: string,
  d: string,
) => void;
run.call(module.exports, module.exports, require, module, bundle, __dirname);
