import type { TreeSource } from '../../src/core/types.js';

/** `dirs` directories of `perDir` files of 0-4 KiB, made on demand: /dNNN/fNNN. */
export function generatedTree(dirs: number, perDir: number): TreeSource;
/** The bytes of file number `k`. */
export function fileBytes(k: number): Uint8Array;
