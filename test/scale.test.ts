/**
 * Scale (issue 26): a 200,000-entry tree built on demand through populate with a heap too small to hold
 * a record per entry, then check, tar export and a second image from that tar (in bounded memory),
 * equal to the first; and
 * a host directory listed again past its kept entries giving the same image.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatImage } from '../src/mkfs/image.js';
import { hostDirectorySource } from '../src/tree/sources/host.js';
import { checkImage } from '../src/check/check.js';
import { HAVE_E2FSPROGS, oracleAvailable, run, fsck, scratchDir, cli } from './helpers/oracle.js';
import { makeVariedTree } from './helpers/tree.js';
import { tree } from './helpers/repair-state.js';

const haveOracles = oracleAvailable('scale suite', HAVE_E2FSPROGS);
const work = scratchDir('ext4wd-scale');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const DIST = path.resolve(__dirname, '../dist/index.js');
const GENERATED = path.resolve(__dirname, 'helpers/generated-tree.mjs');
/**
 * The populate's bound: a V8 heap of this many MiB. A record kept per entry (the inode objects, the
 * listings) takes more than this at 200,000 entries; what populate keeps (one group's inode table, the
 * open directories' entries, the data buffers) does not grow with the entry count.
 */
const HEAP_MIB = 24;
/** Peak RSS of importing that tree's tar (Node's baseline included). */
const TAR_PEAK_MIB = 400;

describe.runIf(haveOracles)('200,000 entries', () => {
  const img = path.join(work, 'big.img');
  const DIRS = 1000;
  const PER_DIR = 200;

  it(`populate runs in a ${HEAP_MIB} MiB heap; the image is clean to e2fsck and check`, () => {
    const script = `
      const { formatImage } = await import(${JSON.stringify(DIST)});
      const { generatedTree } = await import(${JSON.stringify(GENERATED)});
      formatImage(${JSON.stringify(img)}, { sizeBytes: 8 * 2 ** 30, source: generatedTree(${DIRS}, ${PER_DIR}), sync: false });`;
    const r = run(process.execPath, [`--max-old-space-size=${HEAP_MIB}`, '--input-type=module', '-e', script]);
    expect(r.status, r.stderr).toBe(0);
    expect(fsck(img).status).toBe(0);
    const res = checkImage(img);
    expect(res.problems).toEqual([]);
    expect(res.inodesInUse).toBe(DIRS * PER_DIR + DIRS + 11);
  }, 300_000);

  it('tar export and an image made from that tar hold the same tree', () => {
    const tar = path.join(work, 'big.tar');
    const again = path.join(work, 'again.img');
    expect(cli(['extract', img, '/', '--tar', tar]).status).toBe(0);
    // The archive's tree is held while the image is written (about 250 bytes an entry): the whole
    // process stays under TAR_PEAK_MIB (it took 860 MiB when every entry's node was kept twice).
    const script = `
      const { formatImage, tarTreeSource } = await import(${JSON.stringify(DIST)});
      const t = await tarTreeSource(${JSON.stringify(tar)});
      formatImage(${JSON.stringify(again)}, { sizeBytes: 8 * 2 ** 30, source: t.source, sync: false });
      t.close();
      console.log(process.resourceUsage().maxRSS);`;
    const r = run(process.execPath, ['--input-type=module', '-e', script]);
    expect(r.status, r.stderr).toBe(0);
    expect(Number(r.stdout.trim()) / 1024).toBeLessThan(TAR_PEAK_MIB);
    expect(fsck(again).status).toBe(0);
    const a = tree(img);
    const b = tree(again);
    expect(a.size).toBe(DIRS * PER_DIR + DIRS + 1);
    expect(b).toEqual(a);
  }, 300_000);
});

describe.runIf(haveOracles)('a host directory past its kept listings', () => {
  it('is listed again by the copy and gives the tree the kept listings give', () => {
    const src = path.join(work, 'varied');
    makeVariedTree(src);
    const opts = {
      sizeBytes: 256 * 2 ** 20,
      blockSize: 4096,
      uuid: '8c0a3b0e-1f7c-4d6e-9a51-6c1f2b3d4e5f',
      hashSeed: '1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9',
      timestamp: 1_700_000_000,
    };
    const kept = path.join(work, 'kept.img');
    const relisted = path.join(work, 'relisted.img');
    formatImage(kept, { ...opts, source: hostDirectorySource(src) });
    formatImage(relisted, { ...opts, source: hostDirectorySource(src, { keptEntries: 3 }) });
    expect(fsck(relisted).status).toBe(0);
    // Not byte for byte: reading the tree moves its atimes between the two runs.
    const want = tree(kept);
    expect(want.size).toBeGreaterThan(3);
    expect(tree(relisted)).toEqual(want);
  });
});
