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
