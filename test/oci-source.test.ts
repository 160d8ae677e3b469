/**
 * mkfs --from oci:DIR / docker-archive:FILE: image layers with whiteouts, opaque directories, files
 * replaced by directories and back, applied in order. The reference is the kernel's overlayfs over the
 * same layers (whiteouts converted to overlay's form), which is how container runtimes apply them.
 * Digests, tags and platforms are checked too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Ext4Reader } from '../src/fs/reader.js';
import { Ext4Error } from '../src/core/errors.js';
import { containerTreeSource } from '../src/tree/sources/oci.js';
import { rng } from './helpers/rng.js';
import { FileDevice } from '../src/io/device.js';
import { HAVE_E2FSPROGS, IS_ROOT, cli, fsck, haveTool, oracleAvailable, run, scratchDir } from './helpers/oracle.js';
import { snapshot } from './helpers/tree.js';
import { mount, umount } from './helpers/model.js';

const haveOracles = oracleAvailable('container image source suite', HAVE_E2FSPROGS && haveTool('tar'));
const canMount = oracleAvailable(
  'container image overlayfs comparison (needs root)',
  IS_ROOT && HAVE_E2FSPROGS && haveTool('mount') && fs.readFileSync('/proc/filesystems', 'utf8').includes('overlay'),
);

const work = scratchDir('ext4wd-oci');
afterAll(() => {
  run('sh', ['-c', `for m in $(grep -o '${work}/[^ ]*' /proc/mounts | sort -r); do umount $m; done; true`]);
  fs.rmSync(work, { recursive: true, force: true });
});

type Tree = Record<string, string | { link: string } | { hard: string } | null>;

/** Makes a layer directory: 'path/' a directory, a string a file's content, {link} a symlink, {hard} a hard link. */
function layerDir(dir: string, t: Tree): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const [p, v] of Object.entries(t)) {
    const full = path.join(dir, p);
    fs.mkdirSync(p.endsWith('/') ? full : path.dirname(full), { recursive: true });
    if (p.endsWith('/')) continue;
    if (typeof v === 'string' || v === null) fs.writeFileSync(full, v ?? '');
    else if ('link' in v) fs.symlinkSync(v.link, full);
    else fs.linkSync(path.join(dir, v.hard), full);
  }
  // Fixed times, so the archive and the overlay reference agree on every file.
  run('sh', ['-c', `find "$1" -exec touch -h -d @1700000000.5 {} +`, 'sh', dir]);
}

const LAYERS: Tree[] = [
  {
    'etc/a': 'a1',
    'etc/b': 'b1',
    'dir1/x': 'x',
    'dir1/y': 'y',
    'dir2/p': 'p',
    'dir2/sub/q': 'q',
    f2d: 'file',
    'd2f/k': 'k',
    keep: 'v1',
    link: { link: 'etc/a' },
    hard1: 'shared',
    hard2: { hard: 'hard1' },
    'empty/': null,
  },
  {
    'etc/.wh.a': '',
    'etc/c': 'c2',
    'dir1/.wh..wh..opq': '',
    'dir1/z': 'z',
    'f2d/inner': 'inner',
    d2f: 'now a file',
    keep: 'v2',
    'dir2/sub/.wh.q': '',
    'newdir/.wh..wh..opq': '',
    'newdir/n': 'n',
    '.wh.ghost': '',
    '.wh.empty': '',
  },
  {
    f2d: 'file again',
    'etc/a': 'a3',
    'dir1/.wh.z': '',
    'dir1/w': 'w',
    'etc/.wh..wh..opq': '',
    'etc/d': 'd3',
  },
];

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** The parts of a manifest and a config these tests read back and change. */
interface Manifest {
  config: ReturnType<typeof putBlob>;
  layers: ReturnType<typeof putBlob>[];
}
interface ImageConfig {
  rootfs: { diff_ids: string[] };
}

/** Writes a blob into an OCI layout; returns its descriptor. */
function putBlob(dir: string, bytes: Buffer, mediaType: string): { mediaType: string; digest: string; size: number } {
  const hex = sha256(bytes);
  fs.mkdirSync(path.join(dir, 'blobs/sha256'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'blobs/sha256', hex), bytes);
  return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
}

/** The layer tarballs (uncompressed), made with GNU tar from the layer directories. */
function layerTars(prefix: string, layers: Tree[]): Buffer[] {
  return layers.map((t, i) => {
    const d = path.join(work, `${prefix}-layer${i}`);
    layerDir(d, t);
    const out = path.join(work, `${prefix}-layer${i}.tar`);
    const r = run('tar', ['-c', '--format=posix', '--numeric-owner', '-f', out, '-C', d, '.']);
    if (r.status !== 0) throw new Error(r.stderr);
    return fs.readFileSync(out);
  });
}

function gzip(b: Buffer): Buffer {
  const p = path.join(work, `gz-${sha256(b).slice(0, 12)}`);
  fs.writeFileSync(p, b);
  run('gzip', ['-n', '-f', p]);
  const out = fs.readFileSync(`${p}.gz`);
  fs.rmSync(`${p}.gz`);
  return out;
}

interface ImageSpec {
  tars: Buffer[];
  platform?: { os: string; architecture: string };
  gzip?: boolean;
}

/** The manifest blob of one image; returns its descriptor. */
function putImage(dir: string, img: ImageSpec) {
  const layers = img.tars.map((t) =>
    img.gzip
      ? putBlob(dir, gzip(t), 'application/vnd.oci.image.layer.v1.tar+gzip')
      : putBlob(dir, t, 'application/vnd.oci.image.layer.v1.tar'),
  );
  const config = {
    architecture: img.platform?.architecture ?? 'amd64',
    os: img.platform?.os ?? 'linux',
    rootfs: { type: 'layers', diff_ids: img.tars.map((t) => `sha256:${sha256(t)}`) },
  };
  const cfg = putBlob(dir, Buffer.from(JSON.stringify(config)), 'application/vnd.oci.image.config.v1+json');
  const manifest = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: cfg, layers };
  return putBlob(dir, Buffer.from(JSON.stringify(manifest)), 'application/vnd.oci.image.manifest.v1+json');
}

function ociDir(name: string, index: object[]): string {
  const dir = path.join(work, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: index }));
  return dir;
}

/** The layers merged by the kernel's overlayfs: whiteouts as 0/0 devices, opaque markers as the xattr. */
function overlayView(prefix: string, n: number): Map<string, unknown> {
  const lowers: string[] = [];
  const tag = Math.random().toString(36).slice(2, 8);
  for (let i = 0; i < n; i++) {
    const d = path.join(work, `${prefix}-ovl${tag}-${i}`);
    fs.mkdirSync(d);
    run('tar', ['-x', '--numeric-owner', '-p', '-f', path.join(work, `${prefix}-layer${i}.tar`), '-C', d]);
    const found = run('find', [d, '-name', '.wh.*']).stdout.split('\n').filter(Boolean);
    for (const f of found.sort().reverse()) {
      const base = path.basename(f);
      fs.rmSync(f);
      if (base === '.wh..wh..opq') run('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', path.dirname(f)]);
      else run('mknod', [path.join(path.dirname(f), base.slice(4)), 'c', '0', '0']);
    }
    lowers.unshift(d);
  }
  const mnt = path.join(work, `${prefix}-merged-${tag}`);
  fs.mkdirSync(mnt);
  const r = run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lowers.join(':')}`, mnt]);
  if (r.status !== 0) throw new Error(`overlay mount: ${r.stderr}`);
  try {
    return comparable(snapshot(mnt));
  } finally {
    umount(mnt);
  }
}

/** Drops what overlayfs and a fresh file system legitimately report differently (dir times, link counts). */
function comparable(m: Map<string, unknown>): Map<string, unknown> {
  for (const [k, v] of m) {
    const o = v as { type: string; nlink?: number; mtimeNs?: bigint; atimeNs?: bigint };
    delete o.nlink;
    delete o.atimeNs;
    if (o.type === 'dir' || k === '/') delete o.mtimeNs;
  }
  return m;
}

function imageView(img: string): Map<string, unknown> {
  const mnt = fs.mkdtempSync(path.join(work, 'mnt-'));
  mount(img, mnt, true);
  try {
    return comparable(snapshot(mnt));
  } finally {
    umount(mnt);
  }
}

const mkfs = (from: string, img: string, more: string[] = []) =>
  cli(['mkfs', img, '--size', '64M', '--from', from, '--no-sync', ...more]);

describe.runIf(haveOracles)('mkfs --from oci: and docker-archive:', () => {
  let tars: Buffer[];
  beforeAll(() => {
    tars = layerTars('main', LAYERS);
  });

  it('applies layers with whiteouts and opaque directories like overlayfs does (plain and gzip layers)', () => {
    for (const gz of [false, true]) {
      const dir = ociDir(`oci-${gz}`, [
        {
          ...putImage(path.join(work, `oci-${gz}`), { tars, gzip: gz }),
          annotations: { 'org.opencontainers.image.ref.name': 'latest' },
        },
      ]);
      const img = path.join(work, `oci-${gz}.img`);
      const r = mkfs(`oci:${dir}`, img);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(fsck(img).status).toBe(0);
      const rd = Ext4Reader.open(FileDevice.open(img));
      const has = (p: string) => {
        try {
          rd.lookup(p);
          return true;
        } catch {
          return false;
        }
      };
      expect(has('/etc/b')).toBe(false); // hidden by the opaque /etc of the last layer
      expect(Buffer.from(rd.readFileBytes(rd.lookup('/etc/a'))).toString()).toBe('a3');
      expect(has('/dir1/x') || has('/dir1/z') || has('/dir2/sub/q') || has('/empty') || has('/ghost')).toBe(false);
      expect(Buffer.from(rd.readFileBytes(rd.lookup('/f2d'))).toString()).toBe('file again');
      expect(Buffer.from(rd.readFileBytes(rd.lookup('/d2f'))).toString()).toBe('now a file');
      expect(rd.lookup('/hard2')).toBe(rd.lookup('/hard1'));
      if (canMount) expect(imageView(img)).toEqual(overlayView('main', LAYERS.length));
    }
  });

  it('picks the image by tag and by platform (default: the host), refuses ambiguity', () => {
    const dir = path.join(work, 'multi');
    const amd = putImage(dir, { tars: tars.slice(0, 1), platform: { os: 'linux', architecture: 'amd64' } });
    const arm = putImage(dir, { tars, platform: { os: 'linux', architecture: 'arm64' } });
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { ...amd, platform: { os: 'linux', architecture: 'amd64' } },
        { ...arm, platform: { os: 'linux', architecture: 'arm64' } },
      ],
    };
    const idx = putBlob(dir, Buffer.from(JSON.stringify(index)), 'application/vnd.oci.image.index.v1+json');
    const other = putImage(dir, { tars: tars.slice(0, 2) });
    ociDir('multi', [
      { ...idx, annotations: { 'org.opencontainers.image.ref.name': 'v1' } },
      { ...other, annotations: { 'org.opencontainers.image.ref.name': 'v2' } },
    ]);
    const ambiguous = mkfs(`oci:${dir}`, path.join(work, 'amb.img'));
    expect(ambiguous.status).toBe(1);
    expect(ambiguous.stderr).toMatch(/several images \(.*v1.*v2|no image for platform/);
    const arm64 = path.join(work, 'arm.img');
    expect(mkfs(`oci:${dir}:v1`, arm64, ['--platform', 'linux/arm64']).status).toBe(0);
    const rd = Ext4Reader.open(FileDevice.open(arm64));
    expect(Buffer.from(rd.readFileBytes(rd.lookup('/etc/d'))).toString()).toBe('d3');
    expect(fsck(arm64).status).toBe(0);
    if (process.arch === 'x64') {
      const host = path.join(work, 'host.img');
      expect(mkfs(`oci:${dir}:v1`, host).status).toBe(0);
      expect(fsck(host).status).toBe(0);
      const h = Ext4Reader.open(FileDevice.open(host));
      expect(Buffer.from(h.readFileBytes(h.lookup('/etc/a'))).toString()).toBe('a1');
    }
    const none = mkfs(`oci:${dir}:v1`, path.join(work, 'none.img'), ['--platform', 'linux/s390x']);
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/NOT_FOUND.*no image for platform linux\/s390x \(has: linux\/amd64, linux\/arm64\)/);
    const missing = mkfs(`oci:${dir}:v9`, path.join(work, 'v9.img'));
    expect(missing.stderr).toMatch(/no image tagged "v9" \(tags: v1, v2\)/);
  });

  it('verifies digests and diff_ids: a changed layer is refused before any image is written', () => {
    const dir = path.join(work, 'tampered');
    const m = putImage(dir, { tars, gzip: true });
    ociDir('tampered', [m]);
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'blobs/sha256', m.digest.slice(7)), 'utf8')) as Manifest;
    const layer = path.join(dir, 'blobs/sha256', manifest.layers[1]!.digest.slice(7));
    const b = fs.readFileSync(layer);
    b[4]! ^= 1; // the gzip header's time: the data still decompresses, only the digest tells
    fs.writeFileSync(layer, b);
    const img = path.join(work, 'tampered.img');
    const r = mkfs(`oci:${dir}`, img);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/SOURCE_ERROR.*does not match its digest/);
    expect(fs.existsSync(img)).toBe(false);
    b[4]! ^= 1;
    b[b.length - 30]! ^= 0x55; // inside the compressed data: the gzip stream itself is damaged
    fs.writeFileSync(layer, b);
    const r1 = mkfs(`oci:${dir}`, img);
    expect(r1.status).toBe(1);
    expect(r1.stderr).toMatch(/SOURCE_ERROR.*(gzip stream is (damaged|truncated)|does not match)/);
    expect(fs.existsSync(img)).toBe(false);
    // A config whose diff_ids do not match the layers.
    const dir2 = path.join(work, 'bad-diffid');
    const m2 = putImage(dir2, { tars: [tars[0]!, tars[2]!] });
    const man2 = JSON.parse(fs.readFileSync(path.join(dir2, 'blobs/sha256', m2.digest.slice(7)), 'utf8')) as Manifest;
    const cfg = JSON.parse(
      fs.readFileSync(path.join(dir2, 'blobs/sha256', man2.config.digest.slice(7)), 'utf8'),
    ) as ImageConfig;
    cfg.rootfs.diff_ids.reverse();
    man2.config = putBlob(dir2, Buffer.from(JSON.stringify(cfg)), 'application/vnd.oci.image.config.v1+json');
    ociDir('bad-diffid', [
      putBlob(dir2, Buffer.from(JSON.stringify(man2)), 'application/vnd.oci.image.manifest.v1+json'),
    ]);
    const r2 = mkfs(`oci:${dir2}`, path.join(work, 'bad-diffid.img'));
    expect(r2.status).toBe(1);
    expect(r2.stderr).toMatch(/does not match its diff_id/);
  });

  it('docker save archives (layer.tar members, gzip or not) give the same tree as the OCI layout', () => {
    const stage = path.join(work, 'docker');
    fs.mkdirSync(stage);
    const names = tars.map((t, i) => {
      const id = sha256(Buffer.from(`layer${i}`));
      fs.mkdirSync(path.join(stage, id));
      fs.writeFileSync(path.join(stage, id, 'layer.tar'), t);
      return `${id}/layer.tar`;
    });
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: tars.map((t) => `sha256:${sha256(t)}`) },
      }),
    );
    fs.writeFileSync(path.join(stage, `${sha256(config)}.json`), config);
    fs.writeFileSync(
      path.join(stage, 'manifest.json'),
      JSON.stringify([{ Config: `${sha256(config)}.json`, RepoTags: ['demo:1.0'], Layers: names }]),
    );
    const archive = path.join(work, 'docker.tar');
    run('tar', ['-c', '-f', archive, '-C', stage, '.']);
    const img = path.join(work, 'docker.img');
    const r = mkfs(`docker-archive:${archive}`, img);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(fsck(img).status).toBe(0);
    const tagged = path.join(work, 'docker-tag.img');
    expect(mkfs(`docker-archive:${archive}:demo:1.0`, tagged).status).toBe(0);
    expect(fsck(tagged).status).toBe(0);
    run('gzip', ['-k', archive]);
    const gzImg = path.join(work, 'docker-gz.img');
    expect(mkfs(`docker-archive:${archive}.gz`, gzImg).status).toBe(0);
    expect(fsck(gzImg).status).toBe(0);
    if (canMount) {
      expect(imageView(img)).toEqual(imageView(path.join(work, 'oci-false.img')));
      expect(imageView(gzImg)).toEqual(imageView(img));
    }
    // Docker 25 and later: the layers and config as blobs/sha256/HEX members (an OCI layout inside).
    const stage2 = path.join(work, 'docker25');
    fs.mkdirSync(path.join(stage2, 'blobs/sha256'), { recursive: true });
    const blobNames = tars.map((t) => {
      fs.writeFileSync(path.join(stage2, 'blobs/sha256', sha256(t)), t);
      return `blobs/sha256/${sha256(t)}`;
    });
    fs.writeFileSync(path.join(stage2, 'blobs/sha256', sha256(config)), config);
    fs.writeFileSync(
      path.join(stage2, 'manifest.json'),
      JSON.stringify([{ Config: `blobs/sha256/${sha256(config)}`, RepoTags: null, Layers: blobNames }]),
    );
    const archive2 = path.join(work, 'docker25.tar');
    run('tar', ['-c', '-f', archive2, '-C', stage2, '.']);
    const img2 = path.join(work, 'docker25.img');
    expect(mkfs(`docker-archive:${archive2}`, img2).status).toBe(0);
    expect(fsck(img2).status).toBe(0);
    if (canMount) expect(imageView(img2)).toEqual(imageView(img));
    // A layer member whose bytes do not match its blob name is refused.
    const victim = path.join(stage2, blobNames[1]!);
    const vb = fs.readFileSync(victim);
    vb[600]! ^= 1;
    fs.writeFileSync(victim, vb);
    run('tar', ['-c', '-f', archive2, '-C', stage2, '.']);
    const r2 = mkfs(`docker-archive:${archive2}`, path.join(work, 'docker25-bad.img'));
    expect(r2.status).toBe(1);
    expect(r2.stderr).toMatch(/does not match its (digest|diff_id)/);
    expect(fs.existsSync(path.join(work, 'docker25-bad.img'))).toBe(false);
    const bad = mkfs(`docker-archive:${archive}:nope`, path.join(work, 'nope.img'));
    expect(bad.stderr).toMatch(/no image tagged "nope" \(tags: demo:1.0\)/);
  });
});

describe.runIf(haveOracles)('malformed image metadata', () => {
  it('index, manifest and config JSON of any shape: the image or an Ext4Error, nothing else', async () => {
    const dir = path.join(work, 'shapes');
    const tars = layerTars('shapes', LAYERS.slice(0, 1));
    const m = putImage(dir, { tars });
    const manifestPath = path.join(dir, 'blobs/sha256', m.digest.slice(7));
    const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as Manifest;
    const config: unknown = JSON.parse(
      fs.readFileSync(path.join(dir, 'blobs/sha256', manifest.config.digest.slice(7)), 'utf8'),
    );
    const rand = rng(7); // fixed: a failing round replays
    const odd = [null, 0, -1, 'x', [], {}, [null], [{}], true, { digest: 'sha256:zz' }];
    /** A copy of `v` with one value somewhere inside replaced by an odd one. */
    const mutate = (v: unknown): unknown => {
      if (v === null || typeof v !== 'object' || rand() < 0.25) return odd[Math.floor(rand() * odd.length)];
      const c: Record<string, unknown> | unknown[] = Array.isArray(v) ? [...(v as unknown[])] : { ...v };
      const keys = Object.keys(c);
      if (!keys.length) return odd[Math.floor(rand() * odd.length)];
      const k = keys[Math.floor(rand() * keys.length)]!;
      (c as Record<string, unknown>)[k] = mutate((c as Record<string, unknown>)[k]);
      return c;
    };
    let built = 0;
    for (let round = 0; round < 120; round++) {
      const which = round % 3;
      let mdesc = m;
      if (which === 1) mdesc = putBlob(dir, Buffer.from(JSON.stringify(mutate(manifest))), m.mediaType);
      if (which === 2) {
        const cfg = putBlob(dir, Buffer.from(JSON.stringify(mutate(config))), manifest.config.mediaType);
        mdesc = putBlob(dir, Buffer.from(JSON.stringify({ ...manifest, config: cfg })), m.mediaType);
      }
      const index = which === 0 ? mutate([mdesc]) : [mdesc];
      fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: index }));
      fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
      try {
        const c = await containerTreeSource('oci', dir, { spoolDir: work, onWarning: () => {} });
        c.close();
        built++;
      } catch (e) {
        expect(e, `round ${round}: ${(e as Error).stack}`).toBeInstanceOf(Ext4Error);
      }
    }
    expect(built).toBeGreaterThan(0);
  });
});
