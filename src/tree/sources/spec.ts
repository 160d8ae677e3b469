/**
 * Per-path metadata from an mtree(5) specification, for builds run as a user who cannot chown, set
 * setuid bits the kernel would strip, or write `security.*` attributes: the spec names paths of the
 * source and says what their owner, mode, time and attributes are to be in the image.
 *
 * The text is what `bsdtar --format=mtree`, BSD `mtree -c` and makefs specs hold: comments, blank lines,
 * backslash continuation, `/set` and `/unset` defaults, entries by full path (a name with a slash,
 * `./usr/bin/ping`) or relative to the current directory (a `type=dir` entry descends into it, `..`
 * goes back up), names in vis(3) encoding. Besides mtree's keywords, `xattr.NAME=VALUE` sets an
 * extended attribute (VALUE as getfattr prints it: `0x` hex, `0s` base64, else vis-encoded text).
 *
 * This module parses; `overlay.ts` lays a parsed spec over a tree source.
 */
import * as fs from 'node:fs';
import { Ext4Error } from '../../core/errors.js';
import { parseUnixSeconds, type Timestamp } from '../../ext4/inode.js';
import { xattrKey } from '../../ext4/xattr.js';
import type { NodeKind, XattrEntry } from '../../core/types.js';
import { decodeXattrValue } from './xattr-dump.js';

/** mtree's type names and ours. */
export const KINDS: Record<string, NodeKind> = {
  file: 'file',
  dir: 'dir',
  link: 'symlink',
  char: 'chardev',
  block: 'blockdev',
  fifo: 'fifo',
  socket: 'socket',
};

/**
 * Keywords that describe an entry without saying anything this tool sets: accepted and ignored.
 * Digests would need a second read of every file; flags are BSD chflags, not ext4's.
 */
const DESCRIBING = new Set([
  'nlink',
  'flags',
  'cksum',
  'md5',
  'md5digest',
  'sha1',
  'sha1digest',
  'sha256',
  'sha256digest',
  'sha384',
  'sha384digest',
  'sha512',
  'sha512digest',
  'rmd160',
  'rmd160digest',
  'ripemd160digest',
  'device',
  'resdevice',
  'inode',
  'tags',
]);

/** Keywords taking a value that this tool uses (or, for uname/gname, checks). */
const VALUED = new Set(['type', 'uid', 'gid', 'mode', 'time', 'link', 'size', 'uname', 'gname', 'contents']);
/** Keywords without a value. */
const BARE = new Set(['optional', 'nochange', 'ignore']);

/** What a spec sets or checks of an entry, by keyword. */
interface EntryKeywords {
  /** `type`: the source's entry must be of this kind. */
  type?: NodeKind;
  uid?: number;
  gid?: number;
  /** `mode`: permission bits, setuid/setgid/sticky included (ignored on symlinks, which Linux keeps 0777). */
  mode?: number;
  /** `time`: the modification time; also taken as access and change time. */
  time?: Timestamp;
  /** `link`: the source's symlink must point here. */
  link?: Uint8Array;
  /** `size`: a regular file of the source must have this many bytes. */
  size?: number;
}

/** One path of a spec, its keywords resolved (defaults from `/set` included). */
export interface SpecEntry extends EntryKeywords {
  /** The path for messages: `.` for the root, else `./a/b`. */
  path: string;
  /** Path components as raw bytes, relative to the source's root (empty for the root itself). */
  names: Uint8Array[];
  /** Line of the spec where the entry (first) appears. */
  line: number;
  /** `optional`: a path missing from the source is no error. */
  optional: boolean;
  /** `nochange`: the path must exist; its metadata is left as the source has it. */
  nochange: boolean;
  /** `xattr.NAME=VALUE` keywords, in the order given. */
  xattrs: XattrEntry[];
}

/** A parsed spec: its entries in the order of first appearance (an entry named again is merged). */
export interface Spec {
  /** Where it came from, for messages. */
  file: string;
  entries: SpecEntry[];
}

/** Keywords in force for an entry (or as `/set` defaults). */
interface Keywords extends EntryKeywords {
  uname?: string;
  gname?: string;
  optional?: boolean;
  nochange?: boolean;
  xattrs: Map<string, Uint8Array>;
}

/** vis(3)'s one-letter escapes. */
const ESCAPES: Record<string, number> = {
  '\\': 0x5c,
  n: 0x0a,
  t: 0x09,
  r: 0x0d,
  b: 0x08,
  a: 0x07,
  v: 0x0b,
  f: 0x0c,
  s: 0x20,
  E: 0x1b,
};

const bad = (where: string, msg: string) => new Ext4Error('BAD_OPTION', `${where}: ${msg}`);

/**
 * Decodes vis(3) text (given as a latin1 string, one character per byte) into bytes: `\\`, the C
 * escapes `\n \t \r \b \a \v \f \0`, `\s` (space), `\E` (escape), octal `\ooo`, hex `\xHH`, `\^C`
 * (control), `\M-C` and `\M^C` (meta), `\$` (nothing); a backslash before any other character stands
 * for that character.
 */
export function unvis(s: string, where = 'spec'): Buffer {
  const out: number[] = [];
  const ctrl = (c: number) => (c === 0x3f ? 0x7f : c & 0x9f);
  const isOctal = (ch: string | undefined) => ch !== undefined && ch >= '0' && ch <= '7';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x5c) {
      out.push(c);
      continue;
    }
    const n = s[++i];
    if (n === undefined) throw bad(where, `"${s}" ends in a lone backslash`);
    const simple = ESCAPES[n];
    if (simple !== undefined) out.push(simple);
    else if (isOctal(n)) {
      // Up to three octal digits, the one just read included.
      let v = 0;
      let k = 0;
      for (; k < 3 && isOctal(s[i + k]); k++) v = v * 8 + (s.charCodeAt(i + k) - 0x30);
      i += k - 1;
      if (v > 0xff) throw bad(where, `octal escape in "${s}" is larger than a byte`);
      out.push(v);
    } else if (n === 'x') {
      const m = /^[0-9a-fA-F]{1,2}/.exec(s.slice(i + 1));
      if (!m) throw bad(where, `"\\x" in "${s}" is not followed by hex digits`);
      out.push(parseInt(m[0], 16));
      i += m[0].length;
    } else if (n === '^') {
      const t = s[++i];
      if (t === undefined) throw bad(where, `"\\^" at the end of "${s}"`);
      out.push(ctrl(t.charCodeAt(0)));
    } else if (n === 'M') {
      const how = s[++i];
      const t = s[++i];
      if ((how !== '-' && how !== '^') || t === undefined) throw bad(where, `bad "\\M" escape in "${s}"`);
      out.push((how === '-' ? t.charCodeAt(0) : ctrl(t.charCodeAt(0))) | 0x80);
    } else if (n !== '$') out.push(n.charCodeAt(0)); // \$ marks a hidden newline and stands for nothing
  }
  return Buffer.from(out);
}

/** An attribute value as getfattr prints it: `0x` hex, `0s` base64, `"text"` or text, vis-decoded. */
function xattrValue(v: string, where: string): Uint8Array {
  return decodeXattrValue(v, {
    text: (s) => new Uint8Array(unvis(s, where)),
    bare: true,
    fail: (m) => bad(where, m),
  });
}

function idValue(key: string, v: string, where: string): number {
  if (!/^\d+$/.test(v) || Number(v) > 0xffffffff) throw bad(where, `${key}=${v} is not a 32-bit number`);
  return Number(v);
}

function setKeyword(kw: Keywords, word: string, where: string): void {
  const eq = word.indexOf('=');
  const key = eq < 0 ? word : word.slice(0, eq);
  const v = eq < 0 ? undefined : word.slice(eq + 1);
  if (key.startsWith('xattr.')) {
    const name = unvis(key.slice('xattr.'.length), where).toString('utf8');
    try {
      xattrKey(name);
    } catch (e) {
      throw bad(where, `${key}: ${(e as Error).message}`);
    }
    if (v === undefined) throw bad(where, `${key} needs a value (${key}=0x..., =0s... or =text)`);
    kw.xattrs.set(name, xattrValue(v, where));
    return;
  }
  if (BARE.has(key)) {
    if (v !== undefined) throw bad(where, `${key} takes no value`);
    if (key === 'optional') kw.optional = true;
    else if (key === 'nochange') kw.nochange = true;
    // ignore: mtree skips what is below in a comparison; the spec still applies to what it names.
    return;
  }
  if (!VALUED.has(key) && !DESCRIBING.has(key)) throw bad(where, `unknown keyword "${key}"`);
  if (v === undefined) throw bad(where, `${key} needs a value (${key}=...)`);
  switch (key) {
    case 'type': {
      const k = KINDS[v];
      if (!k) throw bad(where, `type=${v} is not one of ${Object.keys(KINDS).join(', ')}`);
      kw.type = k;
      return;
    }
    case 'uid':
      kw.uid = idValue(key, v, where);
      return;
    case 'gid':
      kw.gid = idValue(key, v, where);
      return;
    case 'mode': {
      if (!/^[0-7]+$/.test(v) || parseInt(v, 8) > 0o7777)
        throw bad(where, `mode=${v} is not an octal permission mode (0 to 07777)`);
      kw.mode = parseInt(v, 8);
      return;
    }
    case 'time': {
      const t = parseUnixSeconds(v);
      if (!t) throw bad(where, `time=${v} is not seconds[.nanoseconds] since 1970`);
      kw.time = t;
      return;
    }
    case 'link':
      kw.link = new Uint8Array(unvis(v, where));
      return;
    case 'size':
      if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw bad(where, `size=${v} is not a byte count`);
      kw.size = Number(v);
      return;
    case 'uname':
      kw.uname = v;
      return;
    case 'gname':
      kw.gname = v;
      return;
    case 'contents':
      throw bad(where, 'contents= is not supported: file data comes from the source tree');
  }
  // A describing keyword: accepted, not used.
}

function unsetKeyword(kw: Keywords, word: string, where: string): void {
  if (word === 'all') {
    for (const k of Object.keys(kw) as (keyof Keywords)[]) if (k !== 'xattrs') delete kw[k];
    kw.xattrs.clear();
  } else if (word.startsWith('xattr.')) kw.xattrs.delete(unvis(word.slice('xattr.'.length), where).toString('utf8'));
  else if (VALUED.has(word) || BARE.has(word)) delete kw[word as keyof Keywords];
  else if (!DESCRIBING.has(word)) throw bad(where, `unknown keyword "${word}"`);
}

const copyKeywords = (k: Keywords): Keywords => ({ ...k, xattrs: new Map(k.xattrs) });

/** True when the line ends in an odd number of backslashes: the last one escapes the newline. */
function continues(line: string): boolean {
  let n = 0;
  while (n < line.length && line[line.length - 1 - n] === '\\') n++;
  return n % 2 === 1;
}

/** A spec path for messages: `.`, or `./a/b`. */
export const specPath = (names: Uint8Array[]) =>
  names.length ? './' + names.map((n) => Buffer.from(n).toString('utf8')).join('/') : '.';

/** Splits a full path into its components; `.` parts and empty parts drop out, `..` is refused. */
function pathNames(name: Buffer, where: string): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= name.length; i++) {
    if (i < name.length && name[i] !== 0x2f) continue;
    const part = name.subarray(start, i);
    start = i + 1;
    if (part.length === 0 || (part.length === 1 && part[0] === 0x2e)) continue;
    checkName(part, where);
    out.push(part);
  }
  return out;
}

function checkName(part: Buffer, where: string): void {
  const shown = part.toString('utf8');
  if (shown === '..') throw bad(where, `".." inside a path: paths of a spec stay inside the source`);
  if (part.includes(0)) throw bad(where, `a name holds a NUL byte`);
  if (part.length > 255) throw bad(where, `the name ${shown.slice(0, 40)}... is longer than 255 bytes`);
}

/**
 * Parses mtree(5) text. `file` names it in messages. Every problem is an Ext4Error BAD_OPTION naming
 * the file and line: unknown keywords, bad values, `..` above the starting directory, owner names
 * (`uname`/`gname`) without numbers (names cannot be resolved without the target's passwd file).
 */
export function parseSpec(text: string | Uint8Array, file = 'spec'): Spec {
  // One character per byte: names that are not UTF-8 survive exactly.
  const src = Buffer.from(typeof text === 'string' ? Buffer.from(text, 'utf8') : text).toString('latin1');
  const lines = src.split('\n');
  const defaults: Keywords = { xattrs: new Map() };
  const byPath = new Map<string, SpecEntry>();
  const dirs: Buffer[][] = [];
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const where = `${file}:${lineNo}`;
    let line = lines[i]!.replace(/\r$/, '');
    while (continues(line)) {
      if (i + 1 >= lines.length) throw bad(where, 'a backslash continues the last line');
      line = line.slice(0, -1) + ' ' + lines[++i]!.replace(/\r$/, '');
    }
    const words = line.split(/[ \t]+/).filter((w) => w !== '');
    const [first, ...rest] = words;
    if (first === undefined || first.startsWith('#')) continue;
    if (first === '/set' || first === '/unset') {
      if (!rest.length) throw bad(where, `${first} needs keywords`);
      for (const w of rest) (first === '/set' ? setKeyword : unsetKeyword)(defaults, w, where);
      continue;
    }
    if (first.startsWith('/'))
      throw bad(where, `unknown command "${first}" (paths in a spec are relative to the source: ./usr/bin/...)`);
    if (first === '..') {
      if (rest.length) throw bad(where, '".." takes no keywords');
      if (!dirs.pop()) throw bad(where, '".." goes above the directory the spec starts in');
      continue;
    }
    const kw = copyKeywords(defaults);
    for (const w of rest) setKeyword(kw, w, where);
    for (const [name, id] of [
      ['uname', 'uid'],
      ['gname', 'gid'],
    ] as const)
      if (kw[name] !== undefined && kw[id] === undefined)
        throw bad(
          where,
          `${name}=${kw[name]} without ${id}=: owner names cannot be resolved here (the image's passwd is not read); give ${id}=`,
        );
    const raw = unvis(first, where);
    const full = raw.includes(0x2f);
    let names: Buffer[];
    if (full) names = pathNames(raw, where);
    else {
      const cwd = dirs[dirs.length - 1] ?? [];
      if (raw.length === 1 && raw[0] === 0x2e) names = cwd;
      else {
        checkName(raw, where);
        names = [...cwd, raw];
      }
    }
    const key = names.map((n) => n.toString('latin1')).join('/');
    let e = byPath.get(key);
    if (!e) {
      const own = names.map((n) => new Uint8Array(n));
      e = { path: specPath(own), names: own, line: lineNo, optional: false, nochange: false, xattrs: [] };
      byPath.set(key, e);
    }
    // An entry named again (a second spec appended, a relative and a full form) is merged: later wins.
    for (const k of ['type', 'uid', 'gid', 'mode', 'time', 'link', 'size', 'optional', 'nochange'] as const)
      if (kw[k] !== undefined) (e as unknown as Record<string, unknown>)[k] = kw[k];
    for (const [name, value] of kw.xattrs) {
      const at = e.xattrs.findIndex((x) => x.name === name);
      if (at >= 0) e.xattrs[at] = { name, value };
      else e.xattrs.push({ name, value });
    }
    if (!full && kw.type === 'dir') dirs.push(names);
  }
  return { file, entries: [...byPath.values()] };
}

/** Reads and parses a spec file. */
export function readSpec(file: string): Spec {
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch (e) {
    throw new Ext4Error('IO_ERROR', `cannot read the spec ${file}: ${(e as Error).message}`, { path: file, cause: e });
  }
  return parseSpec(data, file);
}
