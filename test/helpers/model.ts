/**
 * The differential model for the editor: random operations applied both to a host directory (through
 * the kernel, as root) and to an image (through Ext4Editor). Every operation must succeed on both or
 * fail on both with the matching error; at checkpoints the kernel's view of the image (loop-mounted)
 * must equal the host directory, and e2fsck must find the image clean.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Ext4Editor } from '../../src/edit/editor.js';
import { Ext4Error } from '../../src/core/errors.js';
import { parseXattrDump } from '../../src/tree/sources/xattr-dump.js';
import { run, fsck } from './oracle.js';
import { rng } from './rng.js';
export { rng };

const ERRNO: Record<string, string> = {
  ENOENT: 'NOT_FOUND',
  EEXIST: 'EXISTS',
  ENOTDIR: 'NOT_A_DIRECTORY',
  EISDIR: 'IS_A_DIRECTORY',
  ENOTEMPTY: 'NOT_EMPTY',
  EINVAL: 'INVALID_ARGUMENT',
  EPERM: 'IS_A_DIRECTORY',
  EMLINK: 'TOO_MANY_LINKS',
  ENAMETOOLONG: 'NAME_TOO_LONG',
  ENODATA: 'NOT_FOUND',
};

export function mount(img: string, mnt: string, ro: boolean): void {
  const r = run('mount', ['-t', 'ext4', '-o', ro ? 'loop,ro' : 'loop', img, mnt]);
  if (r.status !== 0) throw new Error(`mount failed: ${r.stderr}`);
}
export function umount(mnt: string): void {
  const r = run('umount', [mnt]);
  if (r.status !== 0) throw new Error(`umount failed: ${r.stderr}`);
}

/** Content with holes: random data pieces separated by runs of zeros. */
export function content(rand: () => number, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = size;
  while (left > 0) {
    const n = Math.min(left, 1 + Math.floor(rand() * (rand() < 0.5 ? 5000 : 3 << 20)));
    const b = new Uint8Array(n);
    if (rand() < 0.7) {
      const seed = Math.floor(rand() * 256);
      for (let i = 0; i < n; i++) b[i] = (seed + i * 31 + (i >> 9)) & 0xff;
    }
    out.push(b);
    left -= n;
  }
  return out;
}

/** What the kernel reports for a tree: everything but times the test does not control. */
export function view(
  root: string,
  explicitTimes: Map<string, [bigint, bigint]>,
  seconds32 = false,
): Map<string, string> {
  // 128-byte inodes keep whole seconds in a signed 32-bit field (the kernel clamps to it).
  const t32 = (ns: bigint) => {
    if (!seconds32) return ns;
    let s = ns / 1_000_000_000n;
    if (ns < 0n && s * 1_000_000_000n !== ns) s -= 1n;
    const c = s < -(2n ** 31n) ? -(2n ** 31n) : s > 2n ** 31n - 1n ? 2n ** 31n - 1n : s;
    return c * 1_000_000_000n;
  };
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    const p = path.join(root, rel);
    const st = fs.lstatSync(p, { bigint: true });
    const type = st.isFile() ? 'f' : st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : 'o';
    const parts = [type, (Number(st.mode) & 0o7777).toString(8), st.uid, st.gid];
    if (type !== 'd') parts.push(`n${st.nlink}`);
    if (type === 'f') {
      parts.push(String(st.size));
      const h = createHash('sha256');
      // O_NOATIME: reading must not move the atimes being compared.
      const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOATIME);
      const buf = Buffer.allocUnsafe(1 << 20);
      for (let pos = 0; ;) {
        const n = fs.readSync(fd, buf, 0, buf.length, pos);
        if (!n) break;
        h.update(buf.subarray(0, n));
        pos += n;
      }
      fs.closeSync(fd);
      parts.push(h.digest('hex').slice(0, 16));
    }
    if (type === 'l') parts.push(fs.readlinkSync(p));
    const t = explicitTimes.get(rel);
    if (t && type !== 'd') parts.push(`a${t32(st.atimeNs)}`, `m${t32(st.mtimeNs)}`);
    out.set(rel || '/', parts.join(' '));
    if (type === 'd')
      for (const n of fs.readdirSync(p).sort()) if (!(rel === '' && n === 'lost+found')) walk(rel ? `${rel}/${n}` : n);
  };
  walk('');
  return out;
}

/** user.* attributes of a tree, by relative path. */
export function xattrView(root: string): Map<string, string> {
  const r = run('getfattr', ['-R', '-P', '-d', '-m', '^user\\.', '-e', 'hex', '--absolute-names', root]);
  const out = new Map<string, string>();
  for (const [p, xs] of parseXattrDump(r.stdout, '/')) {
    const rel = path.relative(root, Buffer.from(p, 'latin1').toString('utf8'));
    out.set(
      rel || '/',
      xs
        .map((x) => `${x.name}=${Buffer.from(x.value).toString('hex')}`)
        .sort()
        .join(','),
    );
  }
  return out;
}

export interface ModelOptions {
  img: string;
  host: string;
  mnt: string;
  seed: number;
  ops: number;
  checkpointEvery: number;
  /** Block size of the image (symlink target limits). */
  blockSize: number;
  /** A directory of this many entries is made at the start (htree growth); 0 for none. */
  bulk?: number;
  /** The image keeps times in whole 32-bit seconds (128-byte inodes). */
  seconds32?: boolean;
  log?: (m: string) => void;
  /** Called with the open editor when an operation's outcomes differ (for debugging a seed). */
  inspect?: (ed: Ext4Editor) => void;
}

/** Runs the model; throws with the seed and the operation on the first difference. */
export function runModel(o: ModelOptions): { ops: number; errors: number; checkpoints: number } {
  const rand = rng(o.seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const H = (rel: string) => path.join(o.host, rel);
  const I = (rel: string) => '/' + rel;
  const explicit = new Map<string, [bigint, bigint]>();
  let ed = Ext4Editor.open(o.img, { sync: false });
  let dirs: string[] = [''];
  let others: string[] = [];
  const rescan = () => {
    dirs = [''];
    others = [];
    const walk = (rel: string) => {
      for (const d of fs.readdirSync(H(rel), { withFileTypes: true })) {
        if (rel === '' && d.name === 'lost+found') continue;
        const r = rel ? `${rel}/${d.name}` : d.name;
        if (d.isDirectory()) {
          dirs.push(r);
          walk(r);
        } else others.push(r);
      }
    };
    walk('');
  };
  const ALPHA = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const newName = (): string => {
    const r = rand();
    if (r < 0.01) return 'n'.repeat(256);
    if (r < 0.03) return 'n'.repeat(255);
    if (r < 0.06) return 'ünï-' + Math.floor(rand() * 100);
    const len = 1 + Math.floor(rand() * (rand() < 0.7 ? 3 : 24));
    let s = '';
    for (let i = 0; i < len; i++) s += ALPHA[Math.floor(rand() * (rand() < 0.5 ? 6 : ALPHA.length))];
    return s === 'lost+found' ? 'x' : s;
  };
  const anyPath = (): string => {
    const r = rand();
    if (r < 0.35 && others.length) return pick(others);
    if (r < 0.6 && dirs.length > 1) return pick(dirs.slice(1));
    const d = pick(dirs);
    return d ? `${d}/${newName()}` : newName();
  };
  const newPath = (): string => {
    const d = rand() < 0.1 && others.length ? pick(others) : pick(dirs);
    return d ? `${d}/${newName()}` : newName();
  };
  const quiet = <T>(f: () => T): T | undefined => {
    try {
      return f();
    } catch {
      return undefined;
    }
  };
  const stat = (rel: string) => quiet(() => fs.lstatSync(H(rel)));
  const inoOf = (rel: string) => quiet(() => fs.statSync(H(rel)).ino);

  interface Op {
    what: string;
    host: () => void;
    image: () => void;
    /** Paths whose explicit times no longer hold after the op. */
    touches?: string[];
    after?: () => void;
  }

  const makeOp = (): Op => {
    const r = rand();
    if (r < 0.24) {
      const p = rand() < 0.3 && others.length ? pick(others) : newPath();
      const big = rand() < 0.04;
      const size = big
        ? Math.floor(rand() * (24 << 20))
        : rand() < 0.8
          ? Math.floor(rand() * 9000)
          : Math.floor(rand() * (1 << 20));
      const pieces = content(rand, size);
      const mode = 0o600 | Math.floor(rand() * 0o200);
      const existed = stat(p) !== undefined;
      return {
        what: `write ${p} (${size} bytes, mode ${mode.toString(8)})`,
        touches: [p],
        host: () => {
          const target = stat(p)?.isSymbolicLink() ? fs.realpathSync(H(p)) : H(p);
          const fd = fs.openSync(target, 'w', mode);
          let off = 0;
          for (const b of pieces) {
            if (b.some((x) => x !== 0)) fs.writeSync(fd, b, 0, b.length, off);
            off += b.length;
          }
          fs.ftruncateSync(fd, size);
          fs.closeSync(fd);
        },
        image: () => ed.writeFile(I(p), pieces, existed ? {} : { mode }),
      };
    }
    if (r < 0.34) {
      const p = newPath();
      const mode = 0o700 | Math.floor(rand() * 0o100);
      const parents = rand() < 0.2;
      const deep = parents ? `${p}/${newName()}/${newName()}` : p;
      return {
        what: `mkdir${parents ? ' -p' : ''} ${deep} ${mode.toString(8)}`,
        host: () => {
          if (parents) {
            // mkdir -p, all or nothing like the editor's: the first problem in path order wins
            // (a non-directory in the way, a dangling symlink, a name too long), then the rest is made.
            const parts = deep.split('/');
            let missing = false;
            for (let k = 1; k <= parts.length; k++) {
              const q = parts.slice(0, k).join('/');
              if (Buffer.byteLength(parts[k - 1]!) > 255)
                throw Object.assign(new Error('long'), { code: 'ENAMETOOLONG' });
              if (missing) continue;
              const st = quiet(() => fs.statSync(H(q)));
              if (st?.isDirectory()) continue;
              if (st || quiet(() => fs.lstatSync(H(q))))
                throw Object.assign(new Error('in the way'), { code: st ? 'ENOTDIR' : 'EEXIST' });
              missing = true;
            }
            for (let k = 1; k <= parts.length; k++) {
              const q = parts.slice(0, k).join('/');
              if (!quiet(() => fs.statSync(H(q)))) fs.mkdirSync(H(q), { mode: k === parts.length ? mode : 0o755 });
            }
          } else fs.mkdirSync(H(deep), { mode });
        },
        image: () => ed.mkdir(I(deep), { mode, parents }),
      };
    }
    if (r < 0.42) {
      const p = newPath();
      const long = rand() < 0.3;
      const target = long
        ? 'L'.repeat(60 + Math.floor(rand() * Math.min(3000, o.blockSize - 61)))
        : rand() < 0.5 && others.length
          ? pick(others)
          : newName();
      return {
        what: `symlink ${target.slice(0, 40)} ${p}`,
        host: () => fs.symlinkSync(target, H(p)),
        image: () => ed.symlink(target, I(p)),
      };
    }
    if (r < 0.48) {
      const a = anyPath();
      const b = newPath();
      return { what: `link ${a} ${b}`, host: () => fs.linkSync(H(a), H(b)), image: () => ed.link(I(a), I(b)) };
    }
    if (r < 0.58) {
      const p = anyPath();
      const recursive = rand() < 0.25;
      return {
        what: `rm${recursive ? ' -r' : ''} ${p}`,
        host: () => {
          const s = fs.lstatSync(H(p));
          if (s.isDirectory()) {
            if (!recursive && fs.readdirSync(H(p)).length) throw Object.assign(new Error('dir'), { code: 'EISDIR' });
            fs.rmSync(H(p), { recursive: true });
          } else fs.unlinkSync(H(p));
        },
        image: () => ed.rm(I(p), { recursive }),
        touches: [p],
      };
    }
    if (r < 0.68) {
      const a = anyPath();
      const b = rand() < 0.3 ? anyPath() : newPath();
      return {
        what: `rename ${a} ${b}`,
        host: () => fs.renameSync(H(a), H(b)),
        image: () => ed.rename(I(a), I(b)),
        after: () => {
          // Explicit times travel with the inode.
          for (const [k, v] of [...explicit])
            if (k === a || k.startsWith(a + '/')) {
              explicit.delete(k);
              explicit.set(b + k.slice(a.length), v);
            }
        },
        touches: [b],
      };
    }
    if (r < 0.74) {
      const p = anyPath();
      const mode = Math.floor(rand() * 0o10000);
      return {
        what: `chmod ${mode.toString(8)} ${p}`,
        host: () => fs.chmodSync(H(p), mode),
        image: () => ed.chmod(I(p), mode),
      };
    }
    if (r < 0.79) {
      const p = anyPath();
      const uid = rand() < 0.1 ? 4_000_000_000 : Math.floor(rand() * 70000);
      const gid = Math.floor(rand() * 70000);
      return {
        what: `chown ${uid}:${gid} ${p}`,
        host: () => fs.chownSync(H(p), uid, gid),
        image: () => ed.chown(I(p), uid, gid),
      };
    }
    if (r < 0.84) {
      const p = anyPath();
      const t = () => ({ sec: Math.floor(rand() * 4e9) - 1e9, nsec: Math.floor(rand() * 1e9) });
      const a = t();
      const m = t();
      const at = (x: { sec: number; nsec: number }) => {
        const ns = BigInt(x.sec) * 1_000_000_000n + BigInt(x.nsec);
        const abs = ns < 0n ? -ns : ns;
        return `@${ns < 0n ? '-' : ''}${abs / 1_000_000_000n}.${String(abs % 1_000_000_000n).padStart(9, '0')}`;
      };
      return {
        what: `utimes ${p}`,
        host: () => {
          fs.statSync(H(p));
          for (const [flag, x] of [
            ['-a', a],
            ['-m', m],
          ] as const) {
            const res = run('touch', ['-c', flag, '-d', at(x), H(p)]);
            if (res.status) throw new Error(res.stderr);
          }
        },
        image: () => ed.utimes(I(p), a, m),
        after: () => {
          const real = stat(p)?.isSymbolicLink() ? undefined : p;
          if (real !== undefined && !stat(p)?.isDirectory())
            explicit.set(real, [
              BigInt(a.sec) * 1_000_000_000n + BigInt(a.nsec),
              BigInt(m.sec) * 1_000_000_000n + BigInt(m.nsec),
            ]);
        },
      };
    }
    if (r < 0.9) {
      const p = anyPath();
      const size = rand() < 0.5 ? Math.floor(rand() * 10000) : Math.floor(rand() * (8 << 20));
      return {
        what: `truncate ${p} ${size}`,
        host: () => fs.truncateSync(H(p), size),
        image: () => ed.truncate(I(p), size),
        touches: [p],
      };
    }
    if (r < 0.95) {
      const p = anyPath();
      const name = `user.${pick(['a', 'b', 'long.name.' + 'x'.repeat(30), 'c'])}`;
      const value = Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 120) }, () => Math.floor(rand() * 256)));
      return {
        what: `setfattr ${name} ${p}`,
        host: () => {
          const s = fs.statSync(H(p));
          if (!s.isFile() && !s.isDirectory()) throw Object.assign(new Error('type'), { code: 'EINVAL' });
          const res = run('setfattr', ['-n', name, '-v', '0x' + value.toString('hex'), H(p)]);
          if (res.status) throw new Error(res.stderr);
        },
        image: () => ed.setXattr(I(p), name, value),
      };
    }
    const p = anyPath();
    const name = `user.${pick(['a', 'b', 'c'])}`;
    return {
      what: `removexattr ${name} ${p}`,
      host: () => {
        fs.statSync(H(p));
        const res = run('setfattr', ['-x', name, H(p)]);
        if (res.status)
          throw Object.assign(new Error(res.stderr), {
            code: /No such attribute/.test(res.stderr) ? 'ENODATA' : 'EIO',
          });
      },
      image: () => ed.removeXattr(I(p), name),
    };
  };

  const codeOf = (e: unknown): string => {
    if (e instanceof Ext4Error) return e.code;
    const c = (e as NodeJS.ErrnoException).code;
    if (c && ERRNO[c]) return ERRNO[c];
    throw e;
  };
  /** Some errors have two honest names (ENOTDIR vs ENOENT for a path through a file, and the like). */
  const sameFailure = (h: string, i: string) =>
    h === i ||
    (h === 'NOT_FOUND' && i === 'NOT_A_DIRECTORY') ||
    (h === 'NOT_A_DIRECTORY' && (i === 'NOT_FOUND' || i === 'EXISTS')) ||
    (h === 'EXISTS' && (i === 'NOT_EMPTY' || i === 'NOT_A_DIRECTORY')) ||
    (h === 'NOT_EMPTY' && i === 'EXISTS') ||
    (h === 'INVALID_ARGUMENT' && i === 'IS_A_DIRECTORY');

  let checkpoints = 0;
  const checkpoint = (at: number) => {
    ed.commit();
    ed.close();
    const f = fsck(o.img);
    if (f.status !== 0)
      throw new Error(`seed ${o.seed}, after op ${at}: e2fsck found problems:\n${f.output.slice(0, 4000)}`);
    mount(o.img, o.mnt, true);
    try {
      try {
        Ext4Editor.open(o.img).close();
        throw new Error('a mounted image was opened for editing');
      } catch (e) {
        if (!(e instanceof Ext4Error) || e.code !== 'IN_USE') throw e;
      }
      const want = view(o.host, explicit, o.seconds32);
      const got = view(o.mnt, explicit, o.seconds32);
      const diffs: string[] = [];
      for (const [k, v] of want) if (got.get(k) !== v) diffs.push(`${k}: host ${v} / image ${got.get(k)}`);
      for (const k of got.keys()) if (!want.has(k)) diffs.push(`${k}: only in the image`);
      const wx = xattrView(o.host);
      const gx = xattrView(o.mnt);
      for (const k of new Set([...wx.keys(), ...gx.keys()]))
        if ((wx.get(k) ?? '') !== (gx.get(k) ?? '')) diffs.push(`${k} xattrs: host ${wx.get(k)} / image ${gx.get(k)}`);
      if (diffs.length)
        throw new Error(
          `seed ${o.seed}, after op ${at}: ${diffs.length} differences:\n${diffs.slice(0, 20).join('\n')}`,
        );
    } finally {
      umount(o.mnt);
    }
    checkpoints++;
    ed = Ext4Editor.open(o.img, { sync: false });
  };

  let errors = 0;
  rescan();
  if (o.bulk) {
    const d = `bulk-${o.bulk}`;
    fs.mkdirSync(H(d), { mode: 0o755 });
    ed.mkdir(I(d));
    for (let k = 0; k < o.bulk; k++) {
      const n = `entry-${k}-${'z'.repeat(k % 40)}`;
      fs.writeFileSync(H(`${d}/${n}`), k % 5 ? String(k) : '', { mode: 0o644 });
      ed.writeFile(I(`${d}/${n}`), k % 5 ? String(k) : '');
    }
    for (let k = 0; k < o.bulk; k += 3) {
      const n = `entry-${k}-${'z'.repeat(k % 40)}`;
      fs.unlinkSync(H(`${d}/${n}`));
      ed.rm(I(`${d}/${n}`));
    }
    rescan();
  }
  for (let k = 1; k <= o.ops; k++) {
    if (k % 25 === 0) rescan();
    const op = makeOp();
    const touchedInodes = (op.touches ?? []).map(inoOf).filter((x) => x !== undefined);
    let hostErr: string | undefined;
    let imgErr: string | undefined;
    try {
      op.host();
    } catch (e) {
      hostErr = codeOf(e);
    }
    try {
      op.image();
    } catch (e) {
      imgErr = codeOf(e);
      if (imgErr === 'CORRUPT' || imgErr === 'BAD_CHECKSUM') o.log?.(`image error: ${(e as Error).stack}`);
    }
    o.log?.(`${k}: ${op.what} -> ${hostErr ?? 'ok'}`);
    if ((hostErr === undefined) !== (imgErr === undefined) || (hostErr && imgErr && !sameFailure(hostErr, imgErr))) {
      o.inspect?.(ed);
      throw new Error(`seed ${o.seed}, op ${k} (${op.what}): host ${hostErr ?? 'ok'}, image ${imgErr ?? 'ok'}`);
    }
    if (hostErr) errors++;
    else {
      // A change through one name changes the inode every hard link shares.
      for (const t of touchedInodes)
        for (const key of [...explicit.keys()]) if (inoOf(key) === t || inoOf(key) === undefined) explicit.delete(key);
      for (const t of op.touches ?? [])
        for (const key of [...explicit.keys()]) if (key === t || key.startsWith(t + '/')) explicit.delete(key);
      op.after?.();
    }
    if (k % o.checkpointEvery === 0 || k === o.ops) checkpoint(k);
  }
  ed.close();
  return { ops: o.ops, errors, checkpoints };
}
