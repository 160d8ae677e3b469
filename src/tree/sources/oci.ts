/**
 * Container images as a tree source: an OCI image layout (`oci:DIR[:TAG]`: index.json, manifests,
 * config, layer blobs) or a `docker save` archive (`docker-archive:FILE[:TAG]`). The image's layers are
 * applied in order with their whiteouts, as the OCI image spec's layer document says; every blob's
 * digest and every layer's diff_id is verified while it is read, before any image is written.
 */
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Ext4Error } from '../../core/errors.js';
import type { Timestamp } from '../../ext4/inode.js';
import { Spool, decompressed, openArchive, tap } from '../../archive/input.js';
import { StreamByteSource, readTar, type DataRef } from '../../archive/read.js';
import { TarTree, readStored } from './tar.js';
import type { TreeSource } from '../../core/types.js';

export interface ContainerSourceOptions {
  /** os/arch[/variant] to pick from a multi-platform index; default the host's (linux/amd64 on x64). */
  platform?: string;
  /** Where layer file data is spooled while the layers are read; default the temp dir. */
  spoolDir?: string;
  rootTime?: Timestamp;
  onWarning?: (message: string) => void;
}

export interface ContainerSource {
  source: TreeSource;
  entries: number;
  /** The layers applied, in order. */
  layers: string[];
  close(): void;
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  annotations?: Record<string, string>;
  platform?: { os?: string; architecture?: string; variant?: string };
}

const REF_NAME = 'org.opencontainers.image.ref.name';
const INDEX_TYPES = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);

function bad(msg: string, p?: string): Ext4Error {
  return new Ext4Error('SOURCE_ERROR', msg, p ? { path: p } : {});
}

/** The host's platform in OCI terms. */
export function hostPlatform(): string {
  const arch: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
    loong64: 'loong64',
    mips64el: 'mips64le',
  };
  return `linux/${arch[process.arch] ?? process.arch}`;
}

function platformMatches(p: Descriptor['platform'], want: string): boolean {
  if (!p) return false;
  const [os, arch, variant] = want.split('/');
  if (p.os !== os || p.architecture !== arch) return false;
  if (variant !== undefined) return p.variant === variant || (!p.variant && variant === 'v8' && arch === 'arm64');
  return true;
}

function describePlatform(p: Descriptor['platform']): string {
  return p ? [p.os, p.architecture, p.variant].filter(Boolean).join('/') : 'unknown';
}

function parseDigest(d: unknown, where: string): { alg: string; hex: string } {
  const m = typeof d === 'string' ? /^(sha256|sha512):([0-9a-f]+)$/.exec(d) : null;
  if (!m || m[2]!.length !== (m[1] === 'sha256' ? 64 : 128))
    throw bad(`${where}: unsupported or malformed digest ${JSON.stringify(d)}`);
  return { alg: m[1]!, hex: m[2]! };
}

/** A list of descriptors, each an object with a digest; anything else is refused naming `where`. */
function descriptors(x: unknown, where: string): Descriptor[] {
  if (!Array.isArray(x)) throw bad(`${where}: no list of descriptors`);
  for (const d of x)
    if (d === null || typeof d !== 'object' || typeof (d as Descriptor).digest !== 'string')
      throw bad(`${where}: a descriptor without a digest (${JSON.stringify(d)?.slice(0, 80)})`);
  return x as Descriptor[];
}

/** A JSON object (not null, an array or a scalar), else refused naming `where`. */
function object<T>(x: unknown, where: string): T {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) throw bad(`${where}: not a JSON object`);
  return x as T;
}

function parseJson<T>(b: Buffer, where: string): T {
  try {
    return JSON.parse(b.toString('utf8')) as T;
  } catch (e) {
    throw bad(`${where}: not valid JSON (${(e as Error).message})`);
  }
}

function readFileOrThrow(p: string): Buffer {
  try {
    return fs.readFileSync(p);
  } catch (e) {
    throw bad(`cannot read ${p}: ${(e as Error).message}`, p);
  }
}

/** A stream of bytes from a file (or part of one), hashed as it passes. */
function fileChunks(fd: number, start: number, length: number): AsyncIterable<Buffer> {
  if (length === 0) return (async function* () {})();
  return fs.createReadStream('', { fd, start, end: start + length - 1, autoClose: false, highWaterMark: 1 << 20 });
}

/** Applies one layer stream to the tree, verifying the compressed and the uncompressed digest. */
async function applyLayer(
  tree: TarTree,
  chunks: AsyncIterable<Buffer>,
  spool: Spool,
  layer: number,
  what: string,
  blobDigest: { alg: string; hex: string } | undefined,
  diffId: { alg: string; hex: string } | undefined,
): Promise<void> {
  let outer: Hash | undefined;
  if (blobDigest) outer = createHash(blobDigest.alg);
  const raw = outer ? tap(chunks, (b) => outer.update(b)) : chunks;
  const inner: Hash | undefined = diffId ? createHash(diffId.alg) : undefined;
  const plain = await decompressed(raw, what, (m) => tree.warn(m));
  // File data is copied to the private spool even from a plain layer that could be read in place: the
  // bytes written into the image are then the ones the digests verified, whatever happens to the blob.
  const src = new StreamByteSource(tap(plain, (b) => inner?.update(b))[Symbol.asyncIterator](), spool);
  await tree.read(src, layer);
  if (outer && blobDigest && outer.digest('hex') !== blobDigest.hex)
    throw bad(`${what}: the blob does not match its digest ${blobDigest.alg}:${blobDigest.hex}`);
  if (inner && diffId && inner.digest('hex') !== diffId.hex)
    throw bad(`${what}: the uncompressed layer does not match its diff_id ${diffId.alg}:${diffId.hex}`);
}

interface ImageConfig {
  os?: string;
  architecture?: string;
  variant?: string;
  rootfs?: { type?: string; diff_ids?: string[] };
}

function diffIdsOf(config: ImageConfig, layers: number, where: string): { alg: string; hex: string }[] {
  const ids = typeof config.rootfs === 'object' && config.rootfs !== null ? config.rootfs.diff_ids : undefined;
  if (!Array.isArray(ids) || ids.length !== layers)
    throw bad(`${where}: the config lists ${Array.isArray(ids) ? ids.length : 'no'} diff_ids for ${layers} layers`);
  return ids.map((d, i) => parseDigest(d, `${where} diff_ids[${i}]`));
}

function checkConfigPlatform(config: ImageConfig, platform: string | undefined, where: string): void {
  if (!platform) return;
  const p = { os: config.os, architecture: config.architecture, variant: config.variant };
  if (!platformMatches(p, platform))
    throw new Ext4Error('NOT_FOUND', `${where}: the image is for ${describePlatform(p)}, not ${platform}`);
}

/**
 * `PATH[:TAG]`: the whole spec when it names what `ok` accepts, else the shortest prefix before a ':'
 * that does (a tag may itself hold ':', as in `name:1.0`).
 */
function splitRef(spec: string, ok: (st: fs.Stats) => boolean): { path: string; tag?: string } | undefined {
  const whole = fs.statSync(spec, { throwIfNoEntry: false });
  if (whole && ok(whole)) return { path: spec };
  for (let c = spec.indexOf(':'); c > 0; c = spec.indexOf(':', c + 1)) {
    const st = fs.statSync(spec.slice(0, c), { throwIfNoEntry: false });
    if (st && ok(st)) return { path: spec.slice(0, c), tag: spec.slice(c + 1) };
  }
  return undefined;
}

/** An OCI image layout directory. */
async function ociLayout(spec: string, opts: ContainerSourceOptions, tree: TarTree, spool: Spool): Promise<string[]> {
  // DIR may itself contain ':' — prefer the longest prefix that is a directory.
  const ref = splitRef(spec, (st) => st.isDirectory());
  if (!ref) throw bad(`oci:${spec}: no such OCI image layout directory`, spec);
  const { path: dir, tag } = ref;
  const layoutFile = path.join(dir, 'oci-layout');
  const layout = parseJson<{ imageLayoutVersion?: string }>(readFileOrThrow(layoutFile), layoutFile);
  if (typeof layout.imageLayoutVersion !== 'string') throw bad(`${layoutFile}: no imageLayoutVersion`);
  const blob = (d: Descriptor, where: string): string => {
    const { alg, hex } = parseDigest(d.digest, where);
    return path.join(dir, 'blobs', alg, hex);
  };
  const readBlob = (d: Descriptor, where: string): Buffer => {
    const b = readFileOrThrow(blob(d, where));
    const { alg, hex } = parseDigest(d.digest, where);
    if (d.size !== undefined && b.length !== d.size)
      throw bad(`${where}: blob ${d.digest} is ${b.length} bytes, not ${d.size}`);
    if (createHash(alg).update(b).digest('hex') !== hex)
      throw bad(`${where}: blob ${d.digest} does not match its digest`);
    return b;
  };
  const indexFile = path.join(dir, 'index.json');
  const index = object<{ manifests?: unknown }>(parseJson(readFileOrThrow(indexFile), indexFile), indexFile);
  let cands = descriptors(index.manifests, `${indexFile} manifests`);
  const all = cands;
  if (tag !== undefined) {
    cands = cands.filter(
      (d) => d.annotations?.[REF_NAME] === tag || d.annotations?.['io.containerd.image.name']?.endsWith(`:${tag}`),
    );
    if (!cands.length) {
      const tags = all.map((d) => d.annotations?.[REF_NAME]).filter(Boolean);
      throw new Ext4Error('NOT_FOUND', `oci:${dir}: no image tagged "${tag}" (tags: ${tags.join(', ') || 'none'})`);
    }
  }
  if (tag === undefined) {
    const named = new Set(cands.map((d) => d.annotations?.[REF_NAME] ?? ''));
    if (named.size > 1)
      throw bad(
        `oci:${dir} holds several images (${[...named].map((n) => n || '(untagged)').join(', ')}); name one as oci:${dir}:TAG`,
      );
  }
  // Expand indexes into the manifests they list, keeping each one's platform.
  const manifests: Descriptor[] = [];
  const expand = (list: Descriptor[], depth: number) => {
    for (const d of list) {
      if (d.mediaType && INDEX_TYPES.has(d.mediaType)) {
        if (depth > 4) throw bad(`oci:${dir}: image indexes nested too deep`);
        const sub = object<{ manifests?: unknown }>(parseJson(readBlob(d, `index ${d.digest}`), d.digest), d.digest);
        expand(descriptors(sub.manifests, `index ${d.digest} manifests`), depth + 1);
      } else manifests.push(d);
    }
  };
  expand(cands, 0);
  // Attestations and other non-images (platform unknown/unknown) are not candidates.
  let images = manifests.filter((d) => d.platform?.os !== 'unknown');
  const want = opts.platform ?? (images.length > 1 ? hostPlatform() : undefined);
  if (images.length > 1 || opts.platform) {
    const withPlatform = images.filter((d) => d.platform);
    if (withPlatform.length) images = withPlatform.filter((d) => platformMatches(d.platform, want!));
    if (!images.length)
      throw new Ext4Error(
        'NOT_FOUND',
        `oci:${dir}: no image for platform ${want} (has: ${[...new Set(withPlatform.map((d) => describePlatform(d.platform)))].join(', ')}); choose one with --platform`,
      );
  }
  if (images.length > 1) {
    const tags = images.map((d) => d.annotations?.[REF_NAME] ?? d.digest);
    throw bad(`oci:${dir} holds several images (${tags.join(', ')}); name one as oci:${dir}:TAG`);
  }
  if (!images.length) throw new Ext4Error('NOT_FOUND', `oci:${dir}: the index lists no image`);
  const md = images[0]!;
  const manifest = object<{ config?: unknown; layers?: unknown }>(
    parseJson(readBlob(md, `manifest ${md.digest}`), `manifest ${md.digest}`),
    `manifest ${md.digest}`,
  );
  const [cfgDesc] = descriptors([manifest.config ?? null], `manifest ${md.digest} config`);
  const layerDescs = descriptors(manifest.layers, `manifest ${md.digest} layers`);
  const config = object<ImageConfig>(
    parseJson(readBlob(cfgDesc!, 'config'), `config ${cfgDesc!.digest}`),
    `config ${cfgDesc!.digest}`,
  );
  checkConfigPlatform(config, opts.platform, `oci:${dir}`);
  const diffIds = diffIdsOf(config, layerDescs.length, `config ${cfgDesc!.digest}`);
  const names: string[] = [];
  for (let i = 0; i < layerDescs.length; i++) {
    const d = layerDescs[i]!;
    if (d.mediaType && /zstd/.test(d.mediaType))
      throw new Ext4Error(
        'UNSUPPORTED_FEATURE',
        `layer ${d.digest} is zstd-compressed; only gzip and plain layers are read`,
      );
    const p = blob(d, `layer ${i}`);
    let fd: number;
    try {
      fd = fs.openSync(p, 'r');
    } catch (e) {
      throw bad(`cannot read layer ${d.digest}: ${(e as Error).message}`, p);
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (d.size !== undefined && size !== d.size) throw bad(`layer ${d.digest} is ${size} bytes, not ${d.size}`);
      await applyLayer(
        tree,
        fileChunks(fd, 0, size),
        spool,
        i + 1,
        `layer ${d.digest}`,
        parseDigest(d.digest, 'layer'),
        diffIds[i],
      );
    } finally {
      fs.closeSync(fd);
    }
    names.push(d.digest);
  }
  return names;
}

/** The string tags of a docker manifest.json entry. */
const tagsOf = (e: { RepoTags?: unknown }): string[] =>
  Array.isArray(e.RepoTags) ? e.RepoTags.filter((t): t is string => typeof t === 'string') : [];

/** A `docker save` archive: manifest.json naming the config and layer members. */
async function dockerArchive(
  spec: string,
  opts: ContainerSourceOptions,
  tree: TarTree,
  spool: Spool,
): Promise<string[]> {
  const ref = splitRef(spec, (st) => st.isFile());
  if (!ref) throw bad(`docker-archive:${spec}: no such file`, spec);
  const { path: file, tag } = ref;
  // The outer archive's members, read in place (a gzip archive is decompressed once and spooled).
  const outer = await openArchive(path.resolve(file), opts.spoolDir ?? os.tmpdir(), undefined, opts.onWarning);
  try {
    const memberKey = (name: string) => path.posix.normalize(name).replace(/^(\.\/)+/, '');
    const members = new Map<string, { data?: DataRef; size: number }>();
    for await (const e of readTar(outer.source))
      if (e.kind === 'file') members.set(memberKey(e.name.toString('utf8')), { data: e.data, size: e.size });
    const member = (name: string, where: string): { data?: DataRef; size: number } => {
      const m = members.get(memberKey(name));
      if (!m) throw bad(`docker-archive:${file}: ${where} ${name} is not in the archive`);
      return m;
    };
    const readMember = (name: string, where: string): Buffer => {
      const m = member(name, where);
      if (m.size > 64 << 20) throw bad(`docker-archive:${file}: ${name} is too large for a ${where}`);
      const b = Buffer.alloc(m.size);
      if (m.data) readStored(m.data, m.size, b, m.size, 0);
      return b;
    };
    const entries = parseJson<{ Config?: string; RepoTags?: string[] | null; Layers?: string[] }[]>(
      readMember('manifest.json', 'manifest'),
      `${file}: manifest.json`,
    );
    if (!Array.isArray(entries) || !entries.length || entries.some((e) => e === null || typeof e !== 'object'))
      throw bad(`${file}: manifest.json lists no image`);
    let pick = entries;
    if (tag !== undefined) {
      pick = entries.filter((e) => tagsOf(e).some((t) => t === tag || t.endsWith(`:${tag}`)));
      if (!pick.length)
        throw new Ext4Error(
          'NOT_FOUND',
          `docker-archive:${file}: no image tagged "${tag}" (tags: ${entries.flatMap(tagsOf).join(', ') || 'none'})`,
        );
    }
    if (pick.length > 1)
      throw bad(
        `docker-archive:${file} holds several images (${pick.map((e) => tagsOf(e).join(' ') || e.Config).join(', ')}); name one as docker-archive:${file}:TAG`,
      );
    const img = pick[0]!;
    if (typeof img.Config !== 'string' || !Array.isArray(img.Layers) || img.Layers.some((l) => typeof l !== 'string'))
      throw bad(`${file}: manifest.json entry without Config or Layers`);
    const cfgBytes = readMember(img.Config, 'config');
    // The config's name is its digest (hex.json, or blobs/sha256/hex).
    const m = /(?:^|\/)(?:blobs\/(sha256)\/)?([0-9a-f]{64})(?:\.json)?$/.exec(img.Config);
    if (m && createHash('sha256').update(cfgBytes).digest('hex') !== m[2])
      throw bad(`docker-archive:${file}: the config ${img.Config} does not match its digest`);
    const config = object<ImageConfig>(parseJson(cfgBytes, `${file}: ${img.Config}`), `${file}: ${img.Config}`);
    checkConfigPlatform(config, opts.platform, `docker-archive:${file}`);
    const diffIds = diffIdsOf(config, img.Layers.length, `${file}: ${img.Config}`);
    for (let i = 0; i < img.Layers.length; i++) {
      const name = img.Layers[i]!;
      const mm = member(name, 'layer');
      const blobHex = /(?:^|\/)blobs\/sha256\/([0-9a-f]{64})$/.exec(name)?.[1];
      const chunks = fileChunks(mm.data?.fd ?? -1, mm.data?.offset ?? 0, mm.data ? mm.size : 0);
      await applyLayer(
        tree,
        chunks,
        spool,
        i + 1,
        `layer ${name}`,
        blobHex ? { alg: 'sha256', hex: blobHex } : undefined,
        diffIds[i],
      );
    }
    return img.Layers;
  } finally {
    outer.close();
  }
}

/**
 * Reads a container image (`kind` 'oci': `DIR[:TAG]`; 'docker-archive': `FILE[:TAG]`) into a tree
 * source, its layers applied in order with whiteouts. Everything is read and verified before this
 * returns; call `close()` once the image is written.
 */
export async function containerTreeSource(
  kind: 'oci' | 'docker-archive',
  spec: string,
  opts: ContainerSourceOptions = {},
): Promise<ContainerSource> {
  if (opts.platform !== undefined && !/^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/.test(opts.platform))
    throw new Ext4Error(
      'BAD_OPTION',
      `--platform must be OS/ARCH[/VARIANT] (e.g. linux/arm64), got "${opts.platform}"`,
    );
  const spool = new Spool(opts.spoolDir ?? os.tmpdir());
  try {
    const tree = new TarTree({ onWarning: opts.onWarning, rootTime: opts.rootTime });
    const layers =
      kind === 'oci' ? await ociLayout(spec, opts, tree, spool) : await dockerArchive(spec, opts, tree, spool);
    return { source: tree.source(), entries: tree.entries, layers, close: () => spool.close() };
  } catch (e) {
    spool.close();
    throw e;
  }
}
