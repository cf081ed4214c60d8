/**
 * "Did you mean" for unknown section and key names.
 *
 * @module
 */

/**
 * The known name closest to `name`: a case-insensitive match, else an alias
 * (`mac` -> `lladdr`), else the nearest by edit distance (adjacent swaps
 * count 1) within 2, and within half the name's length so that short names
 * like `mac` do not suggest unrelated ones like `tap`; undefined when
 * nothing is close.
 *
 * @example
 * ```ts
 * suggestName("memroy", ["name", "memory"]); // "memory"
 * suggestName("colour", ["name", "memory"]); // undefined
 * ```
 */
export function suggestName(
  name: string,
  candidates: readonly string[],
  aliases: Readonly<Record<string, string>> = {},
): string | undefined {
  const lower = name.toLowerCase();
  const sameCase = candidates.find((c) => c.toLowerCase() === lower);
  if (sameCase !== undefined) return sameCase;
  if (Object.hasOwn(aliases, lower)) return aliases[lower];
  const maxDistance = Math.min(2, Math.floor(name.length / 2));
  let best: string | undefined;
  let bestDistance = maxDistance + 1;
  for (const candidate of candidates) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** Levenshtein distance where swapping two adjacent characters also costs 1. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    rows.push([i]);
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        rows[i].push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, rows[i - 2][j - 2] + 1);
      }
      rows[i].push(d);
    }
  }
  return rows[a.length][b.length];
}
