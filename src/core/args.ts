/**
 * The argument grammar every command speaks, on the command line and in edit scripts alike (one parser,
 * so a script line accepts exactly what the command line does), and `UsageError`, the mistake it reports.
 *
 * The grammar is node:util parseArgs' in strict mode, which the CLI used before: `--name`, `--name=value`
 * and `--name value`; `-n`, `-n value`, `-nvalue` and groups of flags (`-rf`, `-rs 8G`); `--` ends the
 * options; a repeated option keeps its last value; a value that looks like an option (`--size -5`) must
 * be joined with `=`. Added: an option may take an optional value (`--wait`, `--wait=5`; only the `=`
 * form gives one, so a following word stays a positional). Pure: imports nothing.
 */

/** A usage mistake (exit code 2 in the CLI), not a problem with the image. */
export class UsageError extends Error {}

export interface OptionSpec {
  type: 'string' | 'boolean';
  /** One letter for `-x`. */
  short?: string;
  /** A string option that may stand alone (`--wait`: the value `true`) or take one with `=` (`--wait=5`). */
  optionalValue?: boolean;
}

export type OptionSet = Record<string, OptionSpec>;

type ValueOf<S extends OptionSpec> = S['type'] extends 'boolean'
  ? boolean
  : S['type'] extends 'string'
    ? S['optionalValue'] extends true
      ? string | true
      : string
    : string | boolean;

/** The parsed values, typed by the option set: absent options are undefined. */
export type OptionValues<O extends OptionSet> = { [K in keyof O]?: ValueOf<O[K]> };

export interface ParsedArgs<O extends OptionSet> {
  values: OptionValues<O>;
  positionals: string[];
}

/** Parses `args` against `options`; `command` names the command in the messages. Throws UsageError. */
export function parseArgv<O extends OptionSet>(args: readonly string[], options: O, command: string): ParsedArgs<O> {
  const values: Record<string, string | boolean> = {};
  const positionals: string[] = [];
  const fail = (m: string): never => {
    throw new UsageError(`${command}: ${m}`);
  };
  const byShort = (c: string): string | undefined => {
    for (const name in options) if (options[name]!.short === c) return name;
    return undefined;
  };
  /** Sets option `name` as written `raw`: its value inline, else (a string option) the next argument. */
  const take = (name: string, raw: string, inline: string | undefined, i: number): number => {
    const spec = Object.hasOwn(options, name) ? options[name]! : fail(`unknown option '${raw}'`);
    if (spec.type === 'boolean') {
      if (inline !== undefined) fail(`option ${raw} takes no value`);
      values[name] = true;
      return i;
    }
    if (inline !== undefined) {
      values[name] = inline;
      return i;
    }
    if (spec.optionalValue) {
      values[name] = true;
      return i;
    }
    const next = args[i + 1];
    if (next === undefined) fail(`option ${raw} needs a value`);
    // As parseArgs: `--size -5` is more likely a forgotten value than a value, so it must be joined.
    if (next!.length > 1 && next![0] === '-')
      fail(
        `option ${raw} needs a value; for one that starts with '-', write ${raw}${raw.startsWith('--') ? '=' : ''}${next}`,
      );
    values[name] = next!;
    return i + 1;
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg.length < 2 || arg[0] !== '-') positionals.push(arg);
    else if (arg[1] === '-') {
      const eq = arg.indexOf('=', 3);
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      i = take(name, `--${name}`, eq < 0 ? undefined : arg.slice(eq + 1), i);
    } else
      for (let k = 1; k < arg.length; k++) {
        const c = arg[k]!;
        const name = byShort(c) ?? fail(`unknown option '-${c}'`);
        const spec = options[name]!;
        // A string option inside a group takes the rest of the group as its value (-rs8G), else the next word.
        if (spec.type === 'string' && !spec.optionalValue && k + 1 < arg.length) {
          values[name] = arg.slice(k + 1);
          break;
        }
        i = take(name, `-${c}`, undefined, i);
      }
  }
  return { values: values as OptionValues<O>, positionals };
}
