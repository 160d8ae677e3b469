/**
 * The bench's before/after comparison (bench/compare.ts): ratio columns matched by row, medians over
 * rounds, speed-ups and lower-is-better columns each judged in their own direction.
 */
import { describe, expect, it } from 'vitest';
import { compareRounds } from '../bench/compare.js';

const ours = (speedup: string, floor: string) => [
  '## Check',
  '',
  '| image | ours (ms) | e2fsck (ms) | speed-up | vs floor |',
  '|---|---|---|---|---|',
  `| empty 8 GiB | 1.0 | 2.0 | ${speedup} | ${floor} |`,
  '',
  'Medians of 9 rounds.',
];
const theirs = (speedup: string, floor: string) => [
  '(section check)',
  `| empty 8 GiB | 1.1 | 2.0 | ${speedup} | ${floor} |`,
];

describe('compareRounds', () => {
  it('takes the median of each ratio over the rounds and flags a cell more than 10% slower', () => {
    const c = compareRounds(
      [theirs('2.00x', '1.00x'), theirs('2.10x', '1.00x'), theirs('1.90x', '1.00x')],
      [ours('1.70x', '1.05x'), ours('1.75x', '1.20x'), ours('2.50x', '1.25x')],
    );
    // speed-up 2.00 -> 1.75: 12.5% slower; floor 1.00 -> 1.20 (lower is better): 17% slower.
    expect(c.worse).toBe(2);
    expect(c.text).toContain('| Check | empty 8 GiB | speed-up | 2.00x | 1.75x | -13% | more than 10% slower |');
    expect(c.text).toContain('| Check | empty 8 GiB | vs floor | 1.00x | 1.20x | -17% | more than 10% slower |');
  });

  it('compares the columns both versions have when the table gained columns at its end', () => {
    const c = compareRounds([['(section check)', '| empty 8 GiB | 1.1 | 2.0 | 2.00x |']], [ours('1.50x', '9.00x')]);
    expect(c.worse).toBe(1);
    expect(c.text).toContain('| Check | empty 8 GiB | speed-up | 2.00x | 1.50x |');
    expect(c.text).not.toContain('vs floor');
  });

  it('passes rows within 10% and skips rows the older version did not have', () => {
    const c = compareRounds([theirs('2.00x', '1.00x')], [ours('1.85x', '1.05x')]);
    expect(c.worse).toBe(0);
    const none = compareRounds([['(section check)']], [ours('1.00x', '1.00x')]);
    expect(none.worse).toBe(0);
    expect(none.text).not.toContain('empty 8 GiB');
  });
});
