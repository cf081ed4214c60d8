/**
 * Small statistics for the benchmarks: a sample's median and spread, and the
 * ratio of two medians. Medians, because a 2-core nested VM has outliers.
 *
 * @example
 * ```ts
 * import { ratio, summarize } from "./stats.ts";
 * const ours = summarize([8.1, 8.0, 8.4]);
 * const c = summarize([7.9, 7.8, 8.0]);
 * ratio(ours, c); // 8.1 / 7.9
 * ```
 * @module
 */

/** A sample summarized: median, extremes and size (the samples are kept for the JSON). */
export interface Stat {
  median: number;
  min: number;
  max: number;
  n: number;
  samples: number[];
}

/** The median of `values` (the mean of the middle two for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Summarizes a non-empty sample; throws on an empty one or a non-finite value (our bug). */
export function summarize(values: readonly number[]): Stat {
  if (values.length === 0) throw new Error("Cannot summarize an empty sample");
  for (const v of values) {
    if (!Number.isFinite(v)) throw new Error(`Sample value "${v}" is not a finite number`);
  }
  return {
    median: median(values),
    min: Math.min(...values),
    max: Math.max(...values),
    n: values.length,
    samples: [...values],
  };
}

/** Relative spread: (max - min) / median, 0 for a single value. */
export function spread(s: Stat): number {
  return s.median === 0 ? 0 : (s.max - s.min) / Math.abs(s.median);
}

/** ours.median / reference.median; undefined when the reference is zero. */
export function ratio(ours: Stat, reference: Stat): number | undefined {
  return reference.median === 0 ? undefined : ours.median / reference.median;
}

/** A copy of `s` with every sample mapped through `f` (unit changes, rates from times). */
export function mapStat(s: Stat, f: (v: number) => number): Stat {
  return summarize(s.samples.map(f));
}
