/**
 * The option sets that families of commands share, each with the one function that turns its values into
 * the library's options, so that an option a family gains (say `--wait` for every command that writes an
 * existing image) is declared, parsed and applied in one place and every member takes it.
 */
import { Ext4Reader } from '../ext4/reader.js';
import { FileDevice } from '../io/device.js';
import type { OptionValues } from '../core/args.js';
import { warn } from './command.js';

export const jsonOption = { json: { type: 'boolean' } } as const;

/** Reading past damage and through a dirty journal: ls, cat, stat, extract. */
export const readerOptions = { 'no-verify': { type: 'boolean' }, replay: { type: 'boolean' } } as const;

/** What the help of the reading commands says about `readerOptions`. */
export const READ_NOTE = `reading commands take --no-verify to read past checksum mismatches (salvage) and --replay to
replay a dirty journal in memory (the image is not changed; default: read it as it is on disk)`;

/** Opens an image for reading as `readerOptions` ask. */
export function openReader(image: string, values: OptionValues<typeof readerOptions>): Ext4Reader {
  return Ext4Reader.open(FileDevice.open(image), {
    verifyChecksums: !values['no-verify'],
    replayJournal: values.replay,
    onWarning: warn,
  });
}

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
