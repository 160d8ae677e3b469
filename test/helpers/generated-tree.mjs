// A large tree made on demand (nothing of it kept): `dirs` directories of `perDir` files of 0-4 KiB,
// each file's bytes a function of its number. Plain JS so a child process with a small heap can load it.
import { stubNode } from './source.mjs';

const enc = new TextEncoder();

export function fileBytes(k) {
  const n = (Math.imul(k, 2654435761) >>> 0) % 4097;
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + k) & 0xff;
  return b;
}

function node(name, kind, extra) {
  return stubNode({ name: enc.encode(name), displayPath: name, kind, perm: kind === 'dir' ? 0o755 : 0o644, ...extra });
}

function fileNode(k, name) {
  const size = (Math.imul(k, 2654435761) >>> 0) % 4097;
  return node(name, 'file', {
    size,
    openData() {
      const data = fileBytes(k);
      return {
        read(buf, length, position) {
          const n = Math.max(0, Math.min(length, data.length - position));
          buf.set(data.subarray(position, position + n));
          return n;
        },
        verifyUnchanged() {},
        close() {},
      };
    },
  });
}

/** The tree as a tree source: /dNNN/fNNN. */
export function generatedTree(dirs, perDir) {
  const dir = (d) =>
    node(`d${d}`, 'dir', {
      children: () => Array.from({ length: perDir }, (_, f) => fileNode(d * perDir + f, `f${f}`)),
    });
  const root = node('', 'dir', { children: () => Array.from({ length: dirs }, (_, d) => dir(d)) });
  return { root: () => root };
}
