/**
 * vmctl's global `-v`: how many were given, and the debug messages they turn on.
 *
 * @module
 */

/** The number of `-v` before the command. */
export const verbose = { level: 0 };

/** A message for `-v` runs only, on stderr. */
export function debug(message: string): void {
  if (verbose.level > 0) console.error(`vmmctl: ${message}`);
}
