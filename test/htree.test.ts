import { describe, expect, it } from 'vitest';
import {
  buildHtree,
  newDxRoot,
  decodeDxRootInfo,
  dxRootInfoValid,
  readDxHeader,
  DX_ROOT_COUNT_OFFSET,
} from '../src/ext4/htree.js';
import { halfMd4Hash, dirHash } from '../src/ext4/dirhash.js';
import { parseUuid } from '../src/core/bytes.js';
import { decodeDirBlock, FT_REG_FILE } from '../src/ext4/dirent.js';
import { u16, u32 } from '../src/core/bytes.js';
import { HAVE_E2FSPROGS, oracleAvailable, run, scratchDir } from './helpers/oracle.js';
import { formatImage } from '../src/mkfs/image.js';
import * as path from 'node:path';
import * as fs from 'node:fs';

const SEED = '66666666-7777-8888-9999-aaaaaaaaaaaa';
const enc = new TextEncoder();

describe('directory hashes', () => {
  it('known values (computed by debugfs dx_hash, e2fsprogs 1.47)', () => {
    const seed = parseUuid(SEED)!;
    expect(halfMd4Hash(enc.encode('hello'), seed)).toEqual({ hash: 0xffd0ed2e, minor: 0x1dfcde86 });
    expect(halfMd4Hash(enc.encode('héllo'), seed)).toEqual({ hash: 0x2ff0c63c, minor: 0x9fe6e9f2 });
  });

  describe.runIf(oracleAvailable('dx_hash comparison with debugfs', HAVE_E2FSPROGS))('against debugfs dx_hash', () => {
    it('legacy, half_md4 and tea, signed and unsigned, match for short, long, non-ASCII and seedless names', () => {
      const dir = scratchDir('ext4wd-hash');
      const img = path.join(dir, 'h.img');
      formatImage(img, { sizeBytes: 8 * 2 ** 20, sync: false });
      const names = [
        'a',
        'lost+found',
        'x'.repeat(31),
        'y'.repeat(32),
        'z'.repeat(33),
        'n'.repeat(255),
        'ünïcödé-名前',
        'file-12345.txt',
        '\u00ff\u0080',
      ];
      // By number: debugfs 1.47 reads the name legacy_unsigned as legacy.
      const versions = ['legacy', 'half_md4', 'tea', 'legacy_unsigned', 'half_md4_unsigned', 'tea_unsigned'];
      for (const seedText of [SEED, '00000000-0000-0000-0000-000000000000'])
        versions.forEach((hashName, version) => {
          const cmds = names.map((n) => `dx_hash -s ${seedText} -h ${version} ${n}`).join('\n');
          const out = run('debugfs', ['-f', '-', img], { input: cmds + '\n' }).stdout;
          const got = [...out.matchAll(/Hash of (.*) is 0x([0-9a-f]+) \(minor 0x([0-9a-f]+)\)/g)].map((m) => [
            parseInt(m[2]!, 16),
            parseInt(m[3]!, 16),
          ]);
          expect(got.length).toBe(names.length);
          names.forEach((n, i) => {
            const h = dirHash(enc.encode(n), version, parseUuid(seedText)!);
            expect([h.hash, h.minor], `${hashName} ${n}`).toEqual(got[i]);
            if (hashName === 'half_md4') expect(halfMd4Hash(enc.encode(n), parseUuid(seedText)!)).toEqual(h);
          });
        });
      fs.rmSync(dir, { recursive: true, force: true });
    });
  });
});

describe('htree builder', () => {
  it('indexes leaves in hash order with a checksummed dx_root', () => {
    const entries = Array.from({ length: 2000 }, (_, i) => ({
      inode: 100 + i,
      name: enc.encode(`name-${i}`),
      fileType: FT_REG_FILE,
    }));
    const seed = parseUuid(SEED)!;
    const blocks = buildHtree({
      dirIno: 12,
      parentIno: 2,
      entries,
      blockSize: 4096,
      inodeSeed: 0x1234,
      hashSeed: seed,
    });
    const root = blocks[0]!;
    expect(root[30]).toBe(0); // one level
    const count = u16(root, 34);
    expect(u16(root, 32)).toBe(507);
    expect(count).toBe(blocks.length - 1);
    // Every leaf's entries hash at or above its index entry and below the next.
    const bounds = [0, ...Array.from({ length: count - 1 }, (_, i) => u32(root, 40 + i * 8))];
    let total = 0;
    for (let i = 0; i < count; i++) {
      const leaf = decodeDirBlock(blocks[1 + i]!, 4096);
      total += leaf.length;
      for (const e of leaf) {
        const h = halfMd4Hash(e.name, seed).hash;
        expect(h).toBeGreaterThanOrEqual((bounds[i]! & ~1) >>> 0);
        if (i + 1 < count) expect(h).toBeLessThan((bounds[i + 1]! & ~1) >>> 0);
      }
    }
    expect(total).toBe(2000);
  });
  it('decodes the dx_root info and the count/limit header it wrote', () => {
    const root = newDxRoot(4096, 12, 2, 2, 1, 1);
    const info = decodeDxRootInfo(root);
    expect(info).toEqual({ reserved: 0, hashVersion: 1, infoLength: 8, levels: 1 });
    expect(dxRootInfoValid(info, false)).toBe(true);
    expect(dxRootInfoValid({ ...info, levels: 2 }, false)).toBe(false);
    expect(dxRootInfoValid({ ...info, levels: 2 }, true)).toBe(true);
    expect(dxRootInfoValid({ ...info, levels: 3 }, true)).toBe(false);
    expect(dxRootInfoValid({ ...info, infoLength: 7 }, false)).toBe(false);
    expect(dxRootInfoValid({ ...info, reserved: 1 }, false)).toBe(false);
    expect(dxRootInfoValid({ ...info, hashVersion: 3 }, false)).toBe(false);
    const blocks = buildHtree({
      dirIno: 12,
      parentIno: 2,
      entries: Array.from({ length: 500 }, (_, i) => ({ inode: 100 + i, name: enc.encode(`n${i}`), fileType: 1 })),
      blockSize: 1024,
      inodeSeed: undefined,
      hashSeed: parseUuid(SEED)!,
    });
    const h = readDxHeader(blocks[0]!, DX_ROOT_COUNT_OFFSET);
    expect(h.limit).toBe((1024 - DX_ROOT_COUNT_OFFSET) / 8);
    expect(h.count).toBe(blocks.length - 1);
  });
});
