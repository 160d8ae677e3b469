/**
 * A set of used block ranges, kept sorted and merged. The formatter plans file systems of any size with
 * it instead of a full bitmap (a 16 TiB file system would need a 512 MiB bitmap; its metadata is a few
 * thousand ranges).
 */
export class IntervalSet {
  /** Flat [start0, end0, start1, end1, ...], end exclusive, sorted, non-overlapping, non-adjacent. */
  private r: number[] = [];

  get ranges(): readonly number[] {
    return this.r;
  }

  /** Index of the first range whose end is > b. */
  private lowerBound(b: number): number {
    let lo = 0;
    let hi = this.r.length >> 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.r[mid * 2 + 1]! > b) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Marks [start, start+len) used. */
  add(start: number, len: number): void {
    if (len <= 0) return;
    let s = start;
    let e = start + len;
    const i = this.lowerBound(s - 1); // first range with end >= s (so adjacent ranges merge)
    let j = i;
    while (j * 2 < this.r.length && this.r[j * 2]! <= e) {
      s = Math.min(s, this.r[j * 2]!);
      e = Math.max(e, this.r[j * 2 + 1]!);
      j++;
    }
    this.r.splice(i * 2, (j - i) * 2, s, e);
  }

  /** The first used range that overlaps [start, start+len), or undefined when all of it is free. */
  firstOverlap(start: number, len: number): [number, number] | undefined {
    const i = this.lowerBound(start);
    if (i * 2 >= this.r.length) return undefined;
    const s = this.r[i * 2]!;
    if (s >= start + len) return undefined;
    return [s, this.r[i * 2 + 1]!];
  }

  isFree(start: number, len: number): boolean {
    return this.firstOverlap(start, len) === undefined;
  }

  /** Number of used blocks inside [start, end). */
  countIn(start: number, end: number): number {
    let n = 0;
    for (let i = this.lowerBound(start); i * 2 < this.r.length; i++) {
      const s = this.r[i * 2]!;
      if (s >= end) break;
      n += Math.min(end, this.r[i * 2 + 1]!) - Math.max(start, s);
    }
    return n;
  }

  /** Calls fn for each used sub-range of [start, end), clipped. */
  forEachIn(start: number, end: number, fn: (s: number, e: number) => void): void {
    for (let i = this.lowerBound(start); i * 2 < this.r.length; i++) {
      const s = this.r[i * 2]!;
      if (s >= end) break;
      fn(Math.max(start, s), Math.min(end, this.r[i * 2 + 1]!));
    }
  }

  total(): number {
    let n = 0;
    for (let i = 0; i < this.r.length; i += 2) n += this.r[i + 1]! - this.r[i]!;
    return n;
  }
}
