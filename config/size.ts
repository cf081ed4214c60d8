/**
 * Byte sizes as people write them in config files: `"256M"`, `"2G"`, `4096`.
 *
 * Every unit is binary (powers of 1024). `"256MB"` and `"256MiB"` both mean
 * 256 × 1024 × 1024 bytes: memory is sized in binary units and a VM config is
 * no place for the SI/IEC distinction to cost someone 5% of their RAM.
 *
 * @example
 * ```ts
 * import { formatSize, parseSize } from "./size.ts";
 * parseSize("256M"); // 268435456
 * parseSize(4096); // 4096
 * formatSize(268435456); // "256M"
 * ```
 * @module
 */

/** Thrown by {@link parseSize} when its input is not a valid size. */
export class SizeError extends Error {
  /** Creates the error; `message` reads like `cannot parse size "512Q": unknown unit "Q"`. */
  constructor(message: string) {
    super(message);
    this.name = "SizeError";
  }
}

/** Unit letters in ascending order; index + 1 is the power of 1024. */
const UNIT_LETTERS = ["K", "M", "G", "T"] as const;

/**
 * Parses a size in bytes.
 *
 * Accepts a non-negative integer number of bytes, or a string of decimal
 * digits followed by an optional unit: `K`, `M`, `G`, `T` (any case),
 * optionally followed by `B` or `iB` (`"64K"`, `"64KB"`, `"64KiB"` are equal),
 * or just `B` for bytes. All units are binary: `"1K"` and `"1KB"` are both
 * 1024 bytes. Surrounding whitespace is ignored; fractions and signs are not
 * accepted.
 *
 * @param text the size, e.g. `"256M"` or `268435456`
 * @returns the size in bytes, a safe integer
 * @throws {SizeError} when the input is not a size or is larger than
 *   `Number.MAX_SAFE_INTEGER` bytes
 *
 * @example
 * ```ts
 * parseSize("2G"); // 2147483648
 * parseSize("512Q"); // throws SizeError: cannot parse size "512Q": unknown unit "Q"
 * ```
 */
export function parseSize(text: string | number): number {
  if (typeof text === "number") {
    const shown = String(text);
    if (!Number.isFinite(text)) throw new SizeError(`cannot parse size ${shown}: not a number`);
    if (!Number.isInteger(text)) {
      throw new SizeError(`cannot parse size ${shown}: not a whole number of bytes`);
    }
    if (text < 0) throw new SizeError(`cannot parse size ${shown}: must not be negative`);
    if (!Number.isSafeInteger(text)) throw new SizeError(`cannot parse size ${shown}: too large`);
    return text;
  }
  const quoted = JSON.stringify(text);
  const trimmed = text.trim();
  if (trimmed === "") throw new SizeError(`cannot parse size ${quoted}: empty`);
  const match = /^([0-9]+)\s*([A-Za-z]*)$/.exec(trimmed);
  if (match === null) {
    if (/^-\s*[0-9]/.test(trimmed)) {
      throw new SizeError(`cannot parse size ${quoted}: must not be negative`);
    }
    if (/^[0-9]*[.,][0-9]/.test(trimmed)) {
      throw new SizeError(
        `cannot parse size ${quoted}: fractions are not supported, use a smaller unit`,
      );
    }
    throw new SizeError(
      `cannot parse size ${quoted}: expected digits followed by an optional unit K, M, G or T`,
    );
  }
  const [, digits, unit] = match;
  const multiplier = unitMultiplier(unit);
  if (multiplier === undefined) {
    throw new SizeError(`cannot parse size ${quoted}: unknown unit ${JSON.stringify(unit)}`);
  }
  // BigInt so that "99999999999T" is reported as too large instead of rounding.
  const bytes = BigInt(digits) * BigInt(multiplier);
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new SizeError(`cannot parse size ${quoted}: too large`);
  }
  return Number(bytes);
}

/** The multiplier for a unit suffix, or undefined when the suffix is not a unit. */
function unitMultiplier(unit: string): number | undefined {
  const upper = unit.toUpperCase();
  if (upper === "" || upper === "B") return 1;
  const power = UNIT_LETTERS.indexOf(upper[0] as typeof UNIT_LETTERS[number]) + 1;
  if (power === 0) return undefined;
  const rest = upper.slice(1);
  if (rest !== "" && rest !== "B" && rest !== "IB") return undefined;
  return 1024 ** power;
}

/**
 * Formats a byte count with the largest unit that divides it exactly, so that
 * {@link parseSize} gives the same number back: `268435456` -> `"256M"`,
 * `1073741824` -> `"1G"`, `4095` -> `"4095"`, `0` -> `"0"`.
 *
 * @param bytes a non-negative safe integer
 * @throws {RangeError} when `bytes` is negative or not a safe integer (a bug in the caller)
 */
export function formatSize(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new RangeError(`formatSize needs a non-negative safe integer, got ${bytes}`);
  }
  if (bytes === 0) return "0";
  for (let power = UNIT_LETTERS.length; power >= 1; power--) {
    const unitBytes = 1024 ** power;
    if (bytes % unitBytes === 0) return `${bytes / unitBytes}${UNIT_LETTERS[power - 1]}`;
  }
  return String(bytes);
}

const SCALED_UNITS = "BKMGTPE";

/**
 * A size as OpenBSD's scan_scaled(3) reads it, for vmctl's and vm.conf's
 * sizes: digits with an optional fraction and an optional unit B, K, M, G, T,
 * P or E (any case, binary multiples); no unit means bytes. Throws
 * {@link SizeError} with scan_scaled's errno text ("Invalid argument",
 * "Result too large").
 */
export function scanScaled(text: string): number {
  const m = /^\s*([+-]?)(\d*)(?:\.(\d*))?([A-Za-z]?)$/.exec(text);
  if (!m || (m[2] === "" && (m[3] ?? "") === "")) throw new SizeError("Invalid argument");
  const unit = m[4].toUpperCase();
  const power = unit === "" ? 0 : SCALED_UNITS.indexOf(unit);
  if (power < 0) throw new SizeError("Invalid argument");
  const scale = 1024n ** BigInt(power);
  const whole = BigInt(m[2] || "0") * scale;
  // The fraction counts in whole bytes of the unit, rounded down, as scan_scaled does.
  const fraction = m[3] ? (BigInt(m[3]) * scale) / 10n ** BigInt(m[3].length) : 0n;
  const bytes = whole + fraction;
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new SizeError("Result too large");
  return m[1] === "-" ? -Number(bytes) : Number(bytes);
}

/** Megabytes of a scan_scaled(3) size, as vmctl's sizes are counted, and whether it was rounded. */
export function scaledMegabytes(text: string): { megabytes: number; rounded: boolean } {
  const bytes = scanScaled(text);
  if (bytes < 1024 * 1024) throw new SizeError("size must be at least one megabyte");
  const megabytes = Math.floor(bytes / (1024 * 1024));
  return { megabytes, rounded: megabytes * 1024 * 1024 !== bytes };
}
