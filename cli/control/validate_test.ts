import assert from "node:assert/strict";
import { MAX_STOP_TIMEOUT_MS, validateControlRequest } from "./validate.ts";

const refused = (value: unknown, re: RegExp) => {
  const r = validateControlRequest(value);
  assert.equal(r.ok, false, JSON.stringify(value));
  assert.match((r as { error: string }).error, re, JSON.stringify(value));
};

Deno.test("control requests: what the client sends is accepted as it is", () => {
  for (
    const req of [
      { op: "info" },
      { op: "pause" },
      { op: "unpause" },
      { op: "reset" },
      { op: "wait" },
      { op: "console" },
      { op: "stop", force: false, timeoutMs: 30_000 },
      { op: "stop", force: true, timeoutMs: 0, keys: "q" },
      { op: "stop", force: false, timeoutMs: MAX_STOP_TIMEOUT_MS },
      { op: "log-level", level: "verbose" },
      { op: "log-level", level: "brief" },
      { op: "screendump", format: "png" },
      { op: "screendump", format: "text" },
    ]
  ) {
    assert.deepEqual(validateControlRequest(req), { ok: true, request: req });
  }
});

Deno.test("control requests: wrong types, ranges, unknown ops and fields are refused clearly", () => {
  refused(
    { op: "stop", force: "yes", timeoutMs: "x" },
    /^stop: "force" must be a boolean, got the string "yes"$/,
  );
  refused({ op: "stop", force: true, timeoutMs: "x" }, /"timeoutMs" must be a number/);
  refused({ op: "stop", force: true, timeoutMs: -1 }, /finite number of milliseconds from 0/);
  refused({ op: "stop", force: true, timeoutMs: 1e400 }, /finite/); // JSON's 1e400 is Infinity
  refused({ op: "stop", force: true, timeoutMs: MAX_STOP_TIMEOUT_MS + 1 }, /from 0 to/);
  refused({ op: "stop", force: true, timeoutMs: null }, /got null/);
  refused({ op: "stop", force: true }, /^stop: "timeoutMs" is required$/);
  refused({ op: "stop", timeoutMs: 5 }, /"force" is required/);
  refused({ op: "stop", force: 1, timeoutMs: 5 }, /"force" must be a boolean, got number 1/);
  refused({ op: "stop", force: true, timeoutMs: 5, keys: 7 }, /"keys" must be a string/);
  refused({ op: "stop", force: true, timeoutMs: 5, keys: "x".repeat(5000) }, /at most 4096/);
  refused({ op: "stop", force: true, timeoutMs: 5, extra: 1 }, /^stop: unknown field "extra"$/);
  refused({ op: "pause", force: true }, /^pause: unknown field "force"$/);
  refused({ op: "log-level", level: "loud" }, /"level" must be "brief" or "verbose"/);
  refused({ op: "screendump", format: "../../etc/x" }, /"format" must be "png" or "text"/);
  refused({ op: "screendump" }, /"format" is required/);
  refused({ op: "shutdown" }, /^unknown request op the string "shutdown" \(known: info, /);
  refused({ op: "__proto__" }, /unknown request op/);
  refused({ op: "toString" }, /unknown request op/);
  refused({ op: 3 }, /unknown request op number 3/);
  refused({}, /needs an "op"/);
  refused([], /must be a JSON object, got an array/);
  refused(null, /got null/);
  refused("stop", /got the string "stop"/);
  refused(42, /got number 42/);
});

Deno.test("control requests: never throw whatever the value", () => {
  const samples: unknown[] = [undefined, true, 0, "", [], {}, { op: {} }, { op: [] }];
  const nested = JSON.parse('{"op":"stop","force":true,"timeoutMs":5,"__proto__":{"x":1}}');
  samples.push(nested, Object.create(null), { op: "stop", force: true, timeoutMs: 5, keys: null });
  for (const s of samples) assert.equal(typeof validateControlRequest(s).ok, "boolean");
});
