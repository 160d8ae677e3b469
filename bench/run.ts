/**
 * Benchmarks, each against e2fsprogs in the same run, reported as ratios. Writes BENCHMARKS.md.
 *   npm run bench            (all)
 *   npm run bench -- --quick (fewer repetitions)
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { formatImage } from '../src/image.js';

const quick = process.argv.includes('--quick');
const REPS = quick ? 3 : 9;
const CLI = path.resolve(import.meta.dirname, '../dist/cli.js');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ext4wd-bench-'));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
function time(fn: () => void, reps = REPS): number {
  fn(); // warm up (page cache, JIT)
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    fn();
    t.push(performance.now() - s);
  }
  return median(t);
}
function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}
function haveMkfs(): boolean {
  return spawnSync('sh', ['-c', 'command -v mkfs.ext4'], { encoding: 'utf8' }).status === 0;
}
const fmt = (ms: number) => (ms < 10 ? ms.toFixed(2) : ms.toFixed(1));
const ratio = (a: number, b: number) => (b / a).toFixed(1) + 'x';
function du(file: string): number {
  return fs.statSync(file).blocks * 512;
}
const MiB = (b: number) => (b / 2 ** 20).toFixed(1);

const rows: string[] = [];
const img = path.join(work, 'bench.img');

if (!haveMkfs()) {
  console.error('mkfs.ext4 not found: install e2fsprogs to benchmark against it');
  process.exit(1);
}
const nodeStart = time(() => sh(process.execPath, ['-e', '0']));

rows.push('## Formatter: `mkfs` vs `mkfs.ext4`', '');
rows.push(
  '| size | ours in-process (ms) | ours CLI (ms) | mkfs.ext4 (ms) | in-process vs mkfs.ext4 | CLI vs mkfs.ext4 | CLI - node start-up (ms) | our allocation (MiB) | mkfs.ext4 allocation (MiB) |',
  '|---|---|---|---|---|---|---|---|---|',
);
for (const [label, size] of [
  ['8 GiB', 8 * 2 ** 30],
  ['64 GiB', 64 * 2 ** 30],
  ['1 TiB', 2 ** 40],
] as [string, number][]) {
  const inproc = time(() => formatImage(img, { sizeBytes: size }));
  const ourAlloc = du(img);
  const viaCli = time(() => sh(process.execPath, [CLI, 'mkfs', img, '--size', String(size)]));
  const theirs = time(() => {
    fs.rmSync(img, { force: true });
    sh('truncate', ['-s', String(size), img]);
    sh('mkfs.ext4', ['-q', '-F', img]);
  });
  const theirAlloc = du(img);
  rows.push(
    `| ${label} | ${fmt(inproc)} | ${fmt(viaCli)} | ${fmt(theirs)} | ${ratio(inproc, theirs)} faster | ${ratio(viaCli, theirs)} ${viaCli < theirs ? 'faster' : 'slower'} | ${fmt(viaCli - nodeStart)} | ${MiB(ourAlloc)} | ${MiB(theirAlloc)} |`,
  );
  console.log(rows[rows.length - 1]);
}
rows.push('', `node start-up alone (\`node -e 0\`): ${fmt(nodeStart)} ms. Times are medians of ${REPS} runs after a warm-up; all runs fsync their image.`);
fs.rmSync(work, { recursive: true, force: true });

const header = [
  '# Benchmarks',
  '',
  `Measured by \`npm run bench\` on ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}.`,
  'Every figure is compared with e2fsprogs measured in the same run, on the same host file system (`os.tmpdir()`).',
  '',
];
fs.writeFileSync(path.resolve(import.meta.dirname, '../BENCHMARKS.md'), [...header, ...rows, ''].join('\n'));
console.log('wrote BENCHMARKS.md');
