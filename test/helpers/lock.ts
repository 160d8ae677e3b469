/** What the lock tests share: a CLI run that does not block the test (for processes side by side), lock files. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import {} from 'vitest';
import { Ext4Reader } from '../../src/fs/reader.js';
import { FileDevice } from '../../src/io/device.js';
import { CLI } from './oracle.js';

export interface Ran {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs the CLI without blocking: several of these run at the same time. */
export function cliAsync(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (status, signal) => resolve({ status, signal, stdout: Buffer.concat(out), stderr: err }));
  });
}

/** The lock files beside an image (none once every process is done with it). */
export const lockFiles = (img: string): string[] =>
  fs.readdirSync(path.dirname(img)).filter((f) => f.startsWith(path.basename(img) + '.lock'));

export const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export function reader(img: string): Ext4Reader {
  return Ext4Reader.open(FileDevice.open(img));
}

export const text = (r: Ext4Reader, p: string): string => Buffer.from(r.readFileBytes(r.lookup(p))).toString();

export { expectClean } from './oracle.js';
