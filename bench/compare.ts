/**
 * Issue 20's rule, judged by the bench itself: no row more than 10% slower than before a change. Both
 * versions report every figure as a ratio against e2fsprogs measured in the same run, so a row is
 * compared through its ratio columns (the host's speed of the minute cancels out), each the median
 * over several rounds run in alternating order (old then new, new then old).
 */

/** Table cells of a `| a | b |` line. */
function cells(line: string): string[] {
  return line
    .trim()
    .replace(/^\||\|$/g, '')
    .split('|')
    .map((c) => c.trim());
}

/**
 * A row's name: its leading cells up to the first figure. Columns are matched by position, so a table
 * that gained columns at its end (as the editor's did) still compares the ones both versions have.
 */
function rowKey(cs: string[]): string {
  const key: string[] = [];
  for (const c of cs) {
    if (/^[\d.,]+x?$/.test(c) || c === 'n/a') break;
    key.push(c);
  }
  return key.join(' / ');
}

/** Columns where a smaller ratio is better (ours over theirs or over a floor); the rest are speed-ups. */
const lowerIsBetter = (header: string) => /floor|journaling cost|under eatmydata/.test(header);

interface Row {
  section: string;
  header: string[];
  cells: string[];
}

/** Our rows (as a full run emits them: section titles, table headers, separators, notes). */
function tableRows(lines: string[]): Row[] {
  const out: Row[] = [];
  let section = '';
  let header: string[] | undefined;
  for (const line of lines) {
    if (line.startsWith('## ')) {
      section = line.slice(3).trim();
      header = undefined;
    } else if (!line.startsWith('|')) header = undefined;
    else if (!header) header = cells(line);
    else if (!/^[|\s-]+$/.test(line)) out.push({ section, header, cells: cells(line) });
  }
  return out;
}

const ratioOf = (c: string | undefined) => (c && /^[\d.]+x$/.test(c) ? Number(c.slice(0, -1)) : undefined);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/**
 * The comparison table: for each of our rows and ratio columns, the median before and after over the
 * rounds (`before[k]`: the older version's `|` lines of round k; `ours[k]`: our emitted lines), and
 * whether it is more than 10% worse. Returns the markdown and the count of worse cells.
 */
export function compareRounds(before: string[][], ours: string[][]): { text: string; worse: number } {
  const old = before.map((lines) => {
    const m = new Map<string, string[]>();
    for (const l of lines) if (l.startsWith('|') && !/^[|\s-]+$/.test(l)) m.set(rowKey(cells(l)), cells(l));
    return m;
  });
  const rounds = ours.map(tableRows);
  const out = [
    '| section | row | column | before (median) | after (median) | change | |',
    '|---|---|---|---|---|---|---|',
  ];
  let worse = 0;
  for (const [i, row] of (rounds[0] ?? []).entries()) {
    const key = rowKey(row.cells);
    row.header.forEach((h, col) => {
      const a = rounds.map((r) => ratioOf(r[i]?.cells[col])).filter((x) => x !== undefined);
      const b = old.map((m) => ratioOf(m.get(key)?.[col])).filter((x) => x !== undefined);
      if (!a.length || !b.length) return;
      const [x, y] = [median(b), median(a)];
      // As a speed: a lower-is-better ratio grows when we slow down, a speed-up shrinks.
      const change = lowerIsBetter(h) ? x / y : y / x;
      const bad = change < 1 / 1.1;
      if (bad) worse++;
      out.push(
        `| ${row.section.slice(0, 40)} | ${key} | ${h} | ${x.toFixed(2)}x | ${y.toFixed(2)}x | ${((change - 1) * 100).toFixed(0)}% | ${bad ? 'more than 10% slower' : ''} |`,
      );
    });
  }
  out.push('', `${worse} of the cells more than 10% slower than before (medians of ${ours.length} rounds).`);
  return { text: out.join('\n') + '\n', worse };
}
