// The least a Node program must spend to write a tree: the bench's "Node floor" for extract.
// `node bench/node-copy-floor.mjs SRC DEST THREADS` copies the directory tree SRC into the existing
// directory DEST: directories and symlinks on the main thread, then the regular files by the kernel
// (copyFileSync: copy_file_range/sendfile, no user-space copy), on the main thread (THREADS 0) or on
// THREADS worker threads. It sets no owners, modes, times or xattrs and reads no image: it does less
// than any extract must, so an extract run from the command line cannot take less time on the same
// machine.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker, isMainThread, workerData } from 'node:worker_threads';

if (isMainThread) {
  const [src, dest, threads] = process.argv.slice(2);
  const files = [];
  const walk = (rel) => {
    for (const e of fs.readdirSync(path.join(src, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) {
        fs.mkdirSync(path.join(dest, r));
        walk(r);
      } else if (e.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(path.join(src, r)), path.join(dest, r));
      else if (e.isFile()) files.push(r);
    }
  };
  walk('');
  const n = Math.min(Number(threads), files.length);
  if (n === 0) for (const f of files) fs.copyFileSync(path.join(src, f), path.join(dest, f));
  for (let w = 0; w < n; w++)
    new Worker(new URL(import.meta.url), { workerData: { src, dest, files: files.filter((_, i) => i % n === w) } });
} else {
  const { src, dest, files } = workerData;
  for (const f of files) fs.copyFileSync(path.join(src, f), path.join(dest, f));
}
