/**
 * The option sets that families of commands share, so that an option a family gains (say `--wait` for
 * every command that writes an existing image) is declared once, and applied once (`writerSettings` here,
 * `openReader` in read.ts), and every member takes it. Pure: no library code is loaded with it.
 */
import type { OptionValues } from '../core/args.js';

export const jsonOption = { json: { type: 'boolean' } } as const;

/** Reading past damage and through a dirty journal: ls, cat, stat, extract (applied by read.ts' openReader). */
export const readerOptions = { 'no-verify': { type: 'boolean' }, replay: { type: 'boolean' } } as const;

/** What the help of the reading commands says about `readerOptions`. */
export const READ_NOTE = `reading commands take --no-verify to read past checksum mismatches (salvage) and --replay to
replay a dirty journal in memory (the image is not changed; default: read it as it is on disk)`;

/** Every command that writes an image file, new or existing. */
export const syncOption = { 'no-sync': { type: 'boolean' } } as const;

/**
 * Every command that writes an existing image in place: the editing commands, `edit`, `recover` (and
 * `resize`, `tune`, `check --repair` when they come). An option they all need goes here and its effect
 * in `writerSettings`.
 */
export const writerOptions = { ...syncOption } as const;

/** The library options `writerOptions` stand for. */
export function writerSettings(values: OptionValues<typeof writerOptions>): { sync: boolean } {
  return { sync: !values['no-sync'] };
}

/**
 * Every command: how long to wait for another process's lock on an image (src/host/lock.ts). Taken by
 * the dispatcher for all commands, since readers and writers alike lock the images they open.
 */
export const lockOption = { wait: { type: 'string', optionalValue: true } } as const;

/** What every command's help says about `lockOption`. */
export const LOCK_NOTE = `every command takes --wait[=SECONDS]: an image another ext4-workdisk process is changing is refused
(IN_USE, naming that process) unless --wait waits for it (no value: without limit); readers wait for a
writer up to 60 s by default, and writers for readers up to 30 s`;
