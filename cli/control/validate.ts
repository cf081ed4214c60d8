/**
 * Checks a control-socket request as it arrives, before anything acts on it:
 * the socket is reachable by the VM's owner, who must not be able to crash
 * the VM process or slip it values it never expected (a string where a
 * boolean goes, a negative or infinite timeout, unknown fields).
 *
 * | op | fields besides `op` |
 * | --- | --- |
 * | info, pause, unpause, reset, wait, console | none |
 * | stop | `force` boolean; `timeoutMs` finite number, 0 to {@link MAX_STOP_TIMEOUT_MS}; `keys` string of at most {@link MAX_STOP_KEYS_LENGTH} characters (optional) |
 * | log-level | `level` "brief" or "verbose" |
 * | screendump | `format` "png" or "text" |
 *
 * @example
 * ```ts
 * import { validateControlRequest } from "./validate.ts";
 * validateControlRequest({ op: "stop", force: "yes" });
 * // { ok: false, error: 'stop: "force" must be a boolean, got the string "yes"' }
 * ```
 * @module
 */

import type { ControlRequest } from "./protocol.ts";

/** Longest timeout a stop may ask for: what setTimeout can wait (about 24.8 days). */
export const MAX_STOP_TIMEOUT_MS = 2 ** 31 - 1;
/** Longest key sequence a stop may type on the console. */
export const MAX_STOP_KEYS_LENGTH = 4096;

type Field = (value: unknown) => string | undefined;

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") {
    return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + "..." : value)}`;
  }
  if (typeof value === "object") return "an object";
  return `${typeof value} ${String(value)}`;
}

const boolean: Field = (v) => typeof v === "boolean" ? undefined : "must be a boolean";

const timeout: Field = (v) => {
  if (typeof v !== "number") return "must be a number of milliseconds";
  if (!Number.isFinite(v) || v < 0 || v > MAX_STOP_TIMEOUT_MS) {
    return `must be a finite number of milliseconds from 0 to ${MAX_STOP_TIMEOUT_MS}`;
  }
  return undefined;
};

const keys: Field = (v) =>
  typeof v !== "string"
    ? "must be a string"
    : v.length > MAX_STOP_KEYS_LENGTH
    ? `must be at most ${MAX_STOP_KEYS_LENGTH} characters`
    : undefined;

const format: Field = (v) => v === "png" || v === "text" ? undefined : 'must be "png" or "text"';

const level: Field = (v) =>
  v === "brief" || v === "verbose" ? undefined : 'must be "brief" or "verbose"';

/** Each op's fields: [checker, required]. */
const OPS: Record<ControlRequest["op"], Record<string, [Field, boolean]>> = {
  info: {},
  pause: {},
  unpause: {},
  reset: {},
  wait: {},
  console: {},
  stop: { force: [boolean, true], timeoutMs: [timeout, true], keys: [keys, false] },
  "log-level": { level: [level, true] },
  screendump: { format: [format, true] },
};

/** The result of {@link validateControlRequest}. */
export type ValidatedRequest =
  | { ok: true; request: ControlRequest }
  | { ok: false; error: string };

/** Checks a parsed request line; never throws, whatever `value` is. */
export function validateControlRequest(value: unknown): ValidatedRequest {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, error: `a request must be a JSON object, got ${describe(value)}` };
  }
  const fields = value as Record<string, unknown>;
  const op = fields.op;
  if (typeof op !== "string" || !Object.hasOwn(OPS, op)) {
    const known = Object.keys(OPS).join(", ");
    return {
      ok: false,
      error: op === undefined
        ? `a request needs an "op" (one of ${known})`
        : `unknown request op ${describe(op)} (known: ${known})`,
    };
  }
  const spec = OPS[op as ControlRequest["op"]];
  for (const key of Object.keys(fields)) {
    if (key !== "op" && !Object.hasOwn(spec, key)) {
      return { ok: false, error: `${op}: unknown field ${JSON.stringify(key)}` };
    }
  }
  for (const [key, [check, required]] of Object.entries(spec)) {
    if (!Object.hasOwn(fields, key)) {
      if (required) return { ok: false, error: `${op}: "${key}" is required` };
      continue;
    }
    const problem = check(fields[key]);
    if (problem) {
      return { ok: false, error: `${op}: "${key}" ${problem}, got ${describe(fields[key])}` };
    }
  }
  return { ok: true, request: value as ControlRequest };
}
