// Build step: the CLI loader gets its shebang and the executable bit; the old ESM entry is removed.
import * as fs from 'node:fs';
const loader = new URL('../dist/cli.cjs', import.meta.url);
const text = fs.readFileSync(loader, 'utf8');
if (!text.startsWith('#!')) fs.writeFileSync(loader, '#!/usr/bin/env node\n' + text);
fs.chmodSync(loader, 0o755);
for (const old of ['../dist/cli.js', '../dist/cli.d.ts']) fs.rmSync(new URL(old, import.meta.url), { force: true });
