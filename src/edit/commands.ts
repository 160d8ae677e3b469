/**
 * The editing commands as the CLI and edit scripts know them: one table of commands, each declaring its
 * options (parsed by core/args) and calling the editor. A script line is a command without the
 * image argument, split into words like a shell would (quotes, backslashes, # comments).
 */
import * as fs from 'node:fs';
import { Ext4Error } from '../core/errors.js';
import { sleepSync } from '../core/sleep.js';
import { UsageError, parseArgv, type OptionSet } from '../core/args.js';
import { parseSize } from '../ext4/layout.js';
import { S_IFMT, S_IFDIR, parseUnixSeconds, type Timestamp } from '../ext4/inode.js';
import { decodeXattrValue, readXattrDump } from '../tree/sources/xattr-dump.js';
import { hostPathSource } from '../tree/sources/host.js';
import { readSpec } from '../tree/sources/spec.js';
import { imageTreeSource } from '../tree/sources/image.js';
import { Ext4Reader } from '../fs/reader.js';
import { FileDevice } from '../io/device.js';
import { lockForRead } from '../host/lock.js';
import type { TreeSource } from '../core/types.js';
import type { Ext4Editor, FileContent } from './editor.js';

export { UsageError };

type Values = Record<string, string | boolean | undefined>;

interface Command {
  usage: string;
  summary: string;
  options: OptionSet;
  /** Positional arguments after the image: [min, max]. */
  args: [number, number];
  run(ed: Ext4Editor, args: string[], values: Values, ctx: RunContext): void;
}

export interface RunContext {
  /** Standard input may be read by this command (false inside a script read from stdin). */
  stdinFree: boolean;
  /** What was changed, for --json output. */
  result: Record<string, unknown>;
}

/** An octal mode (0644, 4755) or a symbolic one (u+x,go-w, a=rX) applied to `current`. */
export function parseMode(spec: string, current = 0, isDir = false): number {
  if (/^[0-7]{1,4}$/.test(spec)) return parseInt(spec, 8);
  let mode = current & 0o7777;
  for (const clause of spec.split(',')) {
    const m = /^([ugoa]*)((?:[-+=](?:[rwxXst]*|[ugo]))+)$/.exec(clause);
    if (!m) throw new Ext4Error('BAD_OPTION', `mode "${spec}" is neither octal nor symbolic (like u+x,go-w)`);
    const who = m[1] || 'a';
    let mask = 0;
    if (who.includes('u') || who.includes('a')) mask |= 0o4700;
    if (who.includes('g') || who.includes('a')) mask |= 0o2070;
    if (who.includes('o') || who.includes('a')) mask |= 0o1007;
    for (const act of m[2]!.match(/[-+=][^-+=]*/g)!) {
      const op = act[0];
      const perms = act.slice(1);
      let bits = 0;
      if (/^[ugo]$/.test(perms)) {
        const src = perms === 'u' ? (mode >> 6) & 7 : perms === 'g' ? (mode >> 3) & 7 : mode & 7;
        bits = (src << 6) | (src << 3) | src;
      } else
        for (const c of perms) {
          if (c === 'r') bits |= 0o444;
          else if (c === 'w') bits |= 0o222;
          else if (c === 'x') bits |= 0o111;
          else if (c === 'X') {
            if (isDir || mode & 0o111) bits |= 0o111;
          } else if (c === 's') bits |= 0o6000;
          else if (c === 't') bits |= 0o1000;
        }
      bits &= mask;
      if (op === '+') mode |= bits;
      else if (op === '-') mode &= ~bits;
      else mode = (mode & ~(mask & 0o7777)) | bits;
    }
  }
  return mode & 0o7777;
}

/** UID:GID, UID, UID: or :GID (numbers; an empty side is kept). */
export function parseOwner(s: string): { uid?: number; gid?: number } {
  const m = /^(\d*)(?::(\d*))?$/.exec(s);
  if (!m || (m[1] === '' && !m[2])) throw new Ext4Error('BAD_OPTION', `owner must be UID:GID (numbers), got "${s}"`);
  const num = (x: string | undefined) => {
    if (x === undefined || x === '') return undefined;
    const n = Number(x);
    if (n > 0xffffffff) throw new Ext4Error('BAD_OPTION', `id ${x} does not fit 32 bits`);
    return n;
  };
  return { uid: num(m[1]), gid: num(m[2]) };
}

/** An attribute value as setfattr(1) takes it: 0x hex, 0s base64, "quoted text" or text. */
export function parseXattrValue(v: string): Uint8Array {
  return decodeXattrValue(v, {
    text: (s) => new TextEncoder().encode(s),
    bare: true,
    fail: (m) => new Ext4Error('BAD_OPTION', m),
  });
}

/** A time: UNIX seconds with an optional fraction (nanoseconds kept), or a date Date.parse reads. */
export function parseTime(s: string): Timestamp {
  const t = parseUnixSeconds(s);
  if (t) return t;
  const ms = Date.parse(s);
  if (Number.isNaN(ms)) throw new Ext4Error('BAD_OPTION', `"${s}" is not a time (UNIX seconds or a date)`);
  return { sec: Math.floor(ms / 1000), nsec: (((ms % 1000) + 1000) % 1000) * 1_000_000 };
}

/** Standard input as content, read in pieces as the editor asks for them. */
export function stdinContent(): Iterable<Uint8Array> {
  return {
    *[Symbol.iterator]() {
      const buf = Buffer.allocUnsafe(1 << 20);
      for (;;) {
        let n: number;
        try {
          n = fs.readSync(0, buf, 0, buf.length, null);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'EAGAIN') {
            sleepSync(5);
            continue;
          }
          if (code === 'EOF') return;
          throw new Ext4Error('SOURCE_ERROR', `cannot read standard input: ${(e as Error).message}`);
        }
        if (n === 0) return;
        yield buf.subarray(0, n);
      }
    },
  };
}

function ownerOpt(values: Values): { uid?: number; gid?: number } {
  return typeof values.owner === 'string' ? parseOwner(values.owner) : {};
}

function isDirAt(ed: Ext4Editor, path: string): boolean {
  try {
    return (ed.reader.inode(ed.reader.lookup(path, { followLast: true })).mode & S_IFMT) === S_IFDIR;
  } catch {
    return false;
  }
}

/** An image subtree named IMAGE:PATH, or a host path, as a tree source for cp-in. */
function treeFrom(src: string, values: Values): string | TreeSource {
  const image = values.image;
  if (typeof image === 'string') {
    // Read while the edit runs; the lock goes with the process (a script may name the image again).
    lockForRead(image);
    const dev = FileDevice.open(image);
    return imageTreeSource(Ext4Reader.open(dev), src);
  }
  if (typeof values.xattrs === 'string') return hostPathSource(src, { xattrs: readXattrDump(values.xattrs) });
  return src;
}

const OWNER = { owner: { type: 'string' as const } };
const MODE = { mode: { type: 'string' as const, short: 'm' } };

export const COMMANDS: Record<string, Command> = {
  write: {
    usage: 'write <image> <path> [--from FILE|-] [--data TEXT] [--mode M] [--owner U:G]',
    summary: 'create or replace a file (content from FILE, TEXT or standard input)',
    options: { from: { type: 'string', short: 'f' }, data: { type: 'string' }, ...MODE, ...OWNER },
    args: [1, 1],
    run(ed, [path], values, ctx) {
      let content: FileContent;
      if (typeof values.data === 'string') {
        if (values.from !== undefined) throw new UsageError('write takes --from or --data, not both');
        content = values.data;
      } else if (values.from === undefined || values.from === '-') {
        if (!ctx.stdinFree) throw new UsageError('standard input is the script; use --from FILE or --data');
        content = stdinContent();
      } else content = { hostPath: values.from as string };
      const mode = typeof values.mode === 'string' ? parseMode(values.mode, 0o644) : undefined;
      ed.writeFile(path!, content, { mode, ...ownerOpt(values) });
      ctx.result.path = path;
    },
  },
  mkdir: {
    usage: 'mkdir [-p] <image> <path> [--mode M] [--owner U:G]',
    summary: 'make a directory (-p: with missing parents, no error if it exists)',
    options: { parents: { type: 'boolean', short: 'p' }, ...MODE, ...OWNER },
    args: [1, 1],
    run(ed, [path], values, ctx) {
      const mode = typeof values.mode === 'string' ? parseMode(values.mode, 0o755, true) : undefined;
      ed.mkdir(path!, { parents: !!values.parents, mode, ...ownerOpt(values) });
      ctx.result.path = path;
    },
  },
  rm: {
    usage: 'rm [-r] [-f] <image> <path>',
    summary: 'remove a file or link (-r: a directory tree; -f: no error when missing)',
    options: { recursive: { type: 'boolean', short: 'r' }, force: { type: 'boolean', short: 'f' } },
    args: [1, 1],
    run(ed, [path], values, ctx) {
      ed.rm(path!, { recursive: !!values.recursive, force: !!values.force });
      ctx.result.path = path;
    },
  },
  mv: {
    usage: 'mv [-T] <image> <from> <to>',
    summary: 'rename or move (into <to> when it is a directory, like mv; -T: <to> is the new name itself)',
    options: { 'no-target-directory': { type: 'boolean', short: 'T' } },
    args: [2, 2],
    run(ed, [from, to], values, ctx) {
      let dest = to!;
      const base = from!.replace(/\/+$/, '').split('/').pop();
      if (!values['no-target-directory'] && base && isDirAt(ed, dest)) dest = dest.replace(/\/+$/, '') + '/' + base;
      ed.rename(from!, dest);
      ctx.result.from = from;
      ctx.result.to = dest;
    },
  },
  ln: {
    usage: 'ln [-s] <image> <target> <path>',
    summary: 'make a hard link to <target> (-s: a symbolic link holding <target>)',
    options: { symbolic: { type: 'boolean', short: 's' }, ...OWNER },
    args: [2, 2],
    run(ed, [target, path], values, ctx) {
      if (values.symbolic) ed.symlink(target!, path!, ownerOpt(values));
      else ed.link(target!, path!);
      ctx.result.path = path;
    },
  },
  chmod: {
    usage: 'chmod <image> <mode> <path>',
    summary: 'set permission bits (octal or symbolic like u+x,go-w)',
    options: {},
    args: [2, 2],
    run(ed, [mode, path], _values, ctx) {
      const ino = ed.reader.lookup(path!, { followLast: true });
      const cur = ed.reader.inode(ino);
      ed.chmod(path!, parseMode(mode!, cur.mode, (cur.mode & S_IFMT) === S_IFDIR));
      ctx.result.path = path;
    },
  },
  chown: {
    usage: 'chown [-h] <image> <uid:gid> <path>',
    summary: 'set the owner (numbers; UID, UID:GID or :GID; -h: a symlink itself)',
    options: { 'no-dereference': { type: 'boolean', short: 'h' } },
    args: [2, 2],
    run(ed, [owner, path], values, ctx) {
      const o = parseOwner(owner!);
      ed.chown(path!, o.uid, o.gid, { noFollow: !!values['no-dereference'] });
      ctx.result.path = path;
    },
  },
  touch: {
    usage: 'touch <image> <path> [--time T] [--atime T] [--mtime T]',
    summary: 'set times (UNIX seconds with nanoseconds, or a date; default now), making an empty file if missing',
    options: { time: { type: 'string', short: 'd' }, atime: { type: 'string' }, mtime: { type: 'string' } },
    args: [1, 1],
    run(ed, [path], values, ctx) {
      const both = typeof values.time === 'string' ? parseTime(values.time) : undefined;
      // 'now' is the edit's time: the clock, or --timestamp / SOURCE_DATE_EPOCH for reproducible images.
      const a =
        typeof values.atime === 'string' ? parseTime(values.atime) : (both ?? (values.mtime ? undefined : 'now'));
      const m =
        typeof values.mtime === 'string' ? parseTime(values.mtime) : (both ?? (values.atime ? undefined : 'now'));
      try {
        ed.reader.lookup(path!, { followLast: true });
      } catch (e) {
        if (!(e instanceof Ext4Error) || e.code !== 'NOT_FOUND') throw e;
        ed.writeFile(path!, new Uint8Array(0));
      }
      ed.utimes(path!, a, m);
      ctx.result.path = path;
    },
  },
  truncate: {
    usage: 'truncate <image> --size S <path>',
    summary: 'set a file size (K/M/G suffixes; bytes past it are freed, growing makes a hole)',
    options: { size: { type: 'string', short: 's' } },
    args: [1, 1],
    run(ed, [path], values, ctx) {
      if (typeof values.size !== 'string') throw new UsageError('truncate needs --size');
      ed.truncate(path!, parseSize(values.size));
      ctx.result.path = path;
    },
  },
  setfattr: {
    usage: 'setfattr <image> (-n NAME [-v VALUE] | -x NAME) [-h] <path>',
    summary: 'set (-n) or remove (-x) an extended attribute, as setfattr(1); VALUE as it takes it (0x.., 0s.., text)',
    options: {
      name: { type: 'string', short: 'n' },
      value: { type: 'string', short: 'v' },
      remove: { type: 'string', short: 'x' },
      'no-dereference': { type: 'boolean', short: 'h' },
    },
    args: [1, 1],
    run(ed, [path], values, ctx) {
      const noFollow = !!values['no-dereference'];
      if (typeof values.remove === 'string') {
        if (values.name !== undefined || values.value !== undefined)
          throw new UsageError('setfattr takes -n NAME [-v VALUE] or -x NAME, not both');
        ed.removeXattr(path!, values.remove, { noFollow });
      } else {
        if (typeof values.name !== 'string') throw new UsageError('setfattr needs -n NAME or -x NAME');
        ed.setXattr(path!, values.name, parseXattrValue((values.value as string | undefined) ?? ''), { noFollow });
      }
      ctx.result.path = path;
    },
  },
  'cp-in': {
    usage: 'cp-in <image> <source> <path> [--owner U:G] [--xattrs DUMP] [--image SRC.ext4] [--spec MTREE]',
    summary:
      'copy a host file or tree into the image like cp -a (a directory is merged into <path>); --spec: per-path owner, mode, time, xattrs (mtree)',
    options: { ...OWNER, xattrs: { type: 'string' }, image: { type: 'string' }, spec: { type: 'string' } },
    args: [2, 2],
    run(ed, [src, dest], values, ctx) {
      const o = ownerOpt(values);
      if ((o.uid === undefined) !== (o.gid === undefined)) throw new UsageError('cp-in --owner needs UID:GID');
      const r = ed.copyIn(treeFrom(src!, values), dest!, {
        owner: o.uid !== undefined ? { uid: o.uid, gid: o.gid! } : undefined,
        spec: typeof values.spec === 'string' ? readSpec(values.spec) : undefined,
      });
      Object.assign(ctx.result, r, { path: dest });
    },
  },
};

/**
 * Parses one command's arguments; throws UsageError on a mistake. With `extra` options (the CLI's
 * --json and friends) and `withImage`, the first positional is the image.
 */
export function parseCommand(
  name: string,
  args: string[],
  withImage = false,
  extra: Command['options'] = {},
): { cmd: Command; positionals: string[]; values: Values; image?: string } {
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!cmd) throw new UsageError(`unknown command "${name}"`);
  const parsed = parseArgv(args, { ...cmd.options, ...extra }, name);
  return { cmd, ...commandOperands(cmd, parsed.positionals, withImage), values: parsed.values };
}

/** The image (`withImage`) and the operands of a command, their count checked against its usage. */
export function commandOperands(
  cmd: Command,
  positionals: string[],
  withImage: boolean,
): { positionals: string[]; image?: string } {
  const pos = [...positionals];
  const image = withImage ? pos.shift() : undefined;
  const n = pos.length;
  if ((withImage && image === undefined) || n < cmd.args[0] || n > cmd.args[1])
    throw new UsageError(`usage: ${cmd.usage}`);
  return { positionals: pos, image };
}

/** Splits a script line into words like a POSIX shell (no expansion): quotes, backslashes, # comments. */
export function splitWords(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === '#' && !inWord) break;
    if (c === ' ' || c === '\t' || c === '\r') {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
      i++;
      continue;
    }
    inWord = true;
    if (c === '\\') {
      if (i + 1 < line.length) cur += line[i + 1];
      i += 2;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new UsageError('unterminated single quote');
      cur += line.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= line.length) throw new UsageError('unterminated double quote');
        const d = line[i]!;
        if (d === '"') break;
        if (d === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1]!)) {
          cur += line[i + 1];
          i += 2;
        } else {
          cur += d;
          i++;
        }
      }
      i++;
    } else {
      cur += c;
      i++;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

export interface ScriptLine {
  line: number;
  name: string;
  positionals: string[];
  values: Values;
  cmd: Command;
}

/** Parses a whole script (every line checked before anything runs). A trailing backslash continues a line. */
export function parseScript(text: string): ScriptLine[] {
  const out: ScriptLine[] = [];
  const raw = text.split('\n');
  for (let k = 0; k < raw.length; k++) {
    const start = k;
    let line = raw[k]!;
    while (line.endsWith('\\') && !line.endsWith('\\\\') && k + 1 < raw.length) line = line.slice(0, -1) + raw[++k];
    let words: string[];
    try {
      words = splitWords(line);
    } catch (e) {
      throw new UsageError(`line ${start + 1}: ${(e as Error).message}`);
    }
    if (!words.length) continue;
    const [name, ...args] = words;
    if (name === 'edit') throw new UsageError(`line ${start + 1}: edit scripts cannot nest`);
    try {
      const p = parseCommand(name!, args);
      out.push({ line: start + 1, name: name!, ...p });
    } catch (e) {
      throw new UsageError(`line ${start + 1}: ${(e as Error).message}`);
    }
  }
  return out;
}
