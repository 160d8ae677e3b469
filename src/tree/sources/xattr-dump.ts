/**
 * Extended attributes for a host tree, from a `getfattr --dump` file. Node.js cannot read xattrs
 * itself, so they come from:
 *
 *     getfattr -R -d -m - -e hex --absolute-names DIR > xattrs.dump
 *
 * (relative paths work too: they are resolved against the current directory, as getfattr printed them).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Ext4Error } from '../../core/errors.js';
import type { XattrEntry } from '../../core/types.js';

/** getfattr escapes bytes as \ooo (octal) and backslash as \\. */
function unescapeOctal(s: string): Buffer {
  const out: number[] = [];
  const raw = Buffer.from(s, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === 0x5c && i + 3 < raw.length + 0 && /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString('latin1'))) {
      out.push(parseInt(raw.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else if (c === 0x5c && raw[i + 1] === 0x5c) {
      out.push(0x5c);
      i++;
    } else out.push(c);
  }
  return Buffer.from(out);
}

/**
 * An attribute value in getfattr's and setfattr's encodings: `0x` hex, `0s` base64, or text between
 * double quotes (bare text too where `bare` allows it), which `text` turns into bytes (each caller has
 * its own escapes). A malformed value is the Ext4Error `fail` makes of the message.
 */
export function decodeXattrValue(
  v: string,
  opts: { text: (s: string) => Uint8Array; bare: boolean; fail: (message: string) => Ext4Error },
): Uint8Array {
  if (/^0[xX]/.test(v)) {
    const hex = v.slice(2);
    if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw opts.fail(`"${v}" is not an even run of hex digits`);
    return new Uint8Array(Buffer.from(hex, 'hex'));
  }
  if (/^0[sS]/.test(v)) {
    const b64 = v.slice(2);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4) throw opts.fail(`"${v}" is not base64`);
    return new Uint8Array(Buffer.from(b64, 'base64'));
  }
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) return opts.text(v.slice(1, -1));
  if (opts.bare) return opts.text(v);
  throw opts.fail('value must be 0x hex, 0s base64 or "text"');
}

/** A value in a dump: quoted text has getfattr's escapes (\ooo, \\, \"). */
function parseValue(v: string, where: string): Uint8Array {
  return decodeXattrValue(v, {
    text: (s) => unescapeOctal(s.replace(/\\"/g, '"')),
    bare: false,
    fail: (m) => new Ext4Error('BAD_OPTION', `${where}: ${m}`),
  });
}

/** Parses dump text into absolute host path (as bytes, latin1 string key) -> attributes. */
export function parseXattrDump(text: string, cwd = process.cwd(), name = 'xattr dump'): Map<string, XattrEntry[]> {
  const out = new Map<string, XattrEntry[]>();
  let current: XattrEntry[] | undefined;
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    const where = `${name}:${i + 1}`;
    if (line.startsWith('# file: ')) {
      const p = unescapeOctal(line.slice('# file: '.length)).toString('latin1');
      const abs = path.isAbsolute(p) ? path.normalize(p) : path.resolve(Buffer.from(cwd).toString('latin1'), p);
      current = [];
      out.set(abs.replace(/\/+$/, '') || '/', current);
      return;
    }
    if (line.trim() === '' || line.startsWith('#')) return;
    if (!current) throw new Ext4Error('BAD_OPTION', `${where}: attribute before any "# file:" line`);
    const eq = line.indexOf('=');
    const attrName = unescapeOctal(eq < 0 ? line : line.slice(0, eq)).toString('utf8');
    current.push({ name: attrName, value: eq < 0 ? new Uint8Array(0) : parseValue(line.slice(eq + 1), where) });
  });
  return out;
}

/** Reads a dump file. */
export function readXattrDump(file: string): Map<string, XattrEntry[]> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Ext4Error('IO_ERROR', `cannot read ${file}: ${(e as Error).message}`, { path: file });
  }
  return parseXattrDump(text, process.cwd(), file);
}
