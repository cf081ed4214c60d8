import assert from "node:assert/strict";
import { mapStat, median, ratio, spread, summarize } from "./stats.ts";

Deno.test("median: odd and even counts, unsorted input left alone", () => {
  const input = [5, 1, 3];
  assert.equal(median(input), 3);
  assert.deepEqual(input, [5, 1, 3]);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
});

Deno.test("summarize: median, extremes, size and samples", () => {
  const s = summarize([10, 30, 20, 1000]);
  assert.deepEqual(
    { median: s.median, min: s.min, max: s.max, n: s.n },
    { median: 25, min: 10, max: 1000, n: 4 },
  );
  assert.deepEqual(s.samples, [10, 30, 20, 1000]);
});

Deno.test("summarize: refuses empty samples and non-finite values", () => {
  assert.throws(() => summarize([]), /empty sample/);
  assert.throws(() => summarize([1, NaN]), /"NaN" is not a finite number/);
  assert.throws(() => summarize([Infinity]), /not a finite/);
});

Deno.test("spread and ratio", () => {
  const a = summarize([9, 10, 11]);
  assert.equal(spread(a), 0.2);
  assert.equal(spread(summarize([0])), 0);
  const b = summarize([4, 5, 6]);
  assert.equal(ratio(a, b), 2);
  assert.equal(ratio(a, summarize([0])), undefined);
});

Deno.test("mapStat converts every sample (time per exit -> exits per second)", () => {
  const perExitUs = summarize([8, 10, 5]);
  const rate = mapStat(perExitUs, (us) => 1e6 / us);
  assert.equal(rate.median, 125_000);
  assert.equal(rate.min, 100_000);
  assert.equal(rate.max, 200_000);
});
