/**
 * Fuzz targets for the files and messages vmmctl reads: kernel images
 * through format detection and every loader ("kernels"), TOML configs and
 * vm.conf files through their parsers ("configs"), control-socket messages
 * through the validator ("control").
 *
 * Each input is a mutation of a valid seed: bytes flipped, fields set to
 * edge values, cut short or extended, lines dropped or repeated. The only
 * acceptable failures are the module's own error types; anything else (a
 * RangeError, a TypeError, an exception in the validator) is a finding. The
 * kernels target also checks guest RAM's canaries and the heap after each
 * image.
 *
 * @module
 */

import { gzipSync } from "node:zlib";
import { memoryLayout } from "../../core/layout.ts";
import { LoaderError, loadKernel } from "../../loaders/detect.ts";
import { le32, writeElf } from "../../loaders/test_helpers.ts";
import { inspectUnikernel } from "../../solo5/loader.ts";
import { parseConfig } from "../../config/parse.ts";
import { importVmConf } from "../../config/vmconf/convert.ts";
import { ParseError } from "../../config/vmconf/lexer.ts";
import { validateControlRequest } from "../../cli/control/validate.ts";
import { GuardedMemory } from "../harness/null_accel.ts";
import { Rng } from "./rng.ts";
import { describeError, type FuzzTarget, Recorder } from "./target.ts";

// ---- mutation ----

/** One to four mutations of `seed` (a copy). */
export function mutateBytes(
  rng: Rng,
  seed: Uint8Array,
  headerBytes = 1024,
  maxGrowth = 65536,
): Uint8Array {
  let data = seed.slice();
  const rounds = rng.range(1, 4);
  for (let r = 0; r < rounds; r++) {
    const at = () =>
      data.length === 0
        ? 0
        : rng.chance(0.7)
        ? rng.below(Math.min(headerBytes, data.length))
        : rng.below(data.length);
    switch (rng.below(7)) {
      case 0: // flip bits
        if (data.length) data[at()] ^= 1 << rng.below(8);
        break;
      case 1: // a random byte
        if (data.length) data[at()] = rng.u32() & 0xff;
        break;
      case 2:
      case 3: { // an edge value in a 16/32/64-bit field
        const width = rng.pick([2, 4, 8]);
        const o = at();
        if (o + width > data.length) break;
        const v = new DataView(data.buffer, data.byteOffset);
        if (width === 2) v.setUint16(o, rng.interesting(16), true);
        else if (width === 4) v.setUint32(o, rng.interesting(32), true);
        else v.setBigUint64(o, BigInt(rng.interesting(32)) << BigInt(rng.pick([0, 16, 32])), true);
        break;
      }
      case 4: // cut short
        data = data.slice(0, rng.below(data.length + 1));
        break;
      case 5: { // extend with junk or zeros
        const n = rng.below(maxGrowth);
        const more = rng.chance(0.5) ? rng.bytes(Math.min(n, 4096)) : new Uint8Array(n);
        const grown = new Uint8Array(data.length + more.length);
        grown.set(data);
        grown.set(more, data.length);
        data = grown;
        break;
      }
      default: { // copy a chunk elsewhere
        if (data.length < 8) break;
        const from = rng.below(data.length - 4);
        const n = rng.range(1, Math.min(64, data.length - from));
        data.copyWithin(at(), from, from + n);
      }
    }
  }
  return data;
}

// ---- kernels ----

const KERNEL_RAM = 64 * 2 ** 20;

function bzImageSeed(): Uint8Array {
  const sects = 4;
  const f = new Uint8Array((sects + 1) * 512 + 0x2000);
  const v = new DataView(f.buffer);
  f[0x1f1] = sects;
  v.setUint16(0x1fe, 0xaa55, true);
  f[0x201] = 0x6a;
  v.setUint32(0x202, 0x53726448, true); // "HdrS"
  v.setUint16(0x206, 0x020f, true);
  f[0x211] = 0x01; // LOADED_HIGH
  v.setUint32(0x214, 0x100000, true);
  v.setUint32(0x22c, 0x7fffffff, true);
  v.setUint32(0x230, 0x200000, true);
  f[0x234] = 1;
  v.setUint16(0x236, 0x7f, true);
  v.setUint32(0x238, 255, true);
  v.setBigUint64(0x258, 0x1000000n, true);
  v.setUint32(0x260, 0x400000, true);
  return f;
}

function multibootSeed(): Uint8Array {
  const elf = writeElf({
    elfClass: 32,
    entry: 0x100000n,
    segments: [{ vaddr: 0x100000n, paddr: 0x100000n, data: new Uint8Array(0x100).fill(0xf4) }],
  });
  const out = new Uint8Array(Math.max(elf.length, 0x200));
  out.set(elf);
  const v = new DataView(out.buffer);
  v.setUint32(0x100, 0x1badb002, true);
  v.setUint32(0x104, 3, true);
  v.setUint32(0x108, -(0x1badb002 + 3) >>> 0, true);
  return out;
}

function kernelSeeds(): Uint8Array[] {
  const seg = (paddr: bigint) => [{ vaddr: paddr, paddr, data: new Uint8Array(0x200).fill(0xf4) }];
  const openbsd = writeElf({
    elfClass: 64,
    entry: 0x1001000n,
    segments: seg(0x1001000n),
    notes: [{ name: "OpenBSD", type: 1, desc: le32(0) }],
  });
  return [
    writeElf({ elfClass: 64, entry: 0x1000000n, segments: seg(0x1000000n) }),
    writeElf({
      elfClass: 32,
      entry: 0x200000n,
      segments: seg(0x200000n),
      notes: [{ name: "Xen", type: 18, desc: le32(0x200000) }],
    }),
    multibootSeed(),
    bzImageSeed(),
    openbsd,
    new Uint8Array(gzipSync(openbsd)),
    // The test guests: real images as the project builds them.
    ...["hello", "demo", "virtio_blk"].flatMap((n) => {
      try {
        return [Deno.readFileSync(new URL(`../../guests/bin/${n}.bin`, import.meta.url))];
      } catch {
        return [];
      }
    }),
  ];
}

/** Kernel images through detection and every loader. */
export const kernelsTarget: FuzzTarget = {
  name: "kernels",
  unit: "kernel images",
  short: 600,
  long: 200_000,
  run(seed, inputs) {
    const rec = new Recorder("kernels", seed);
    const rng = new Rng(seed);
    const seeds = kernelSeeds();
    const { ram, e820 } = memoryLayout(KERNEL_RAM);
    const memory = new GuardedMemory(ram);
    const heapBase = Deno.memoryUsage().heapUsed;
    for (let step = 0; step < inputs; step++) {
      const base = rng.pick(seeds);
      const gz = base[0] === 0x1f && base[1] === 0x8b;
      const image = mutateBytes(rng, base, gz ? 64 : 1024);
      const initrd = rng.chance(0.2) ? rng.bytes(rng.below(8192)) : undefined;
      try {
        const result = loadKernel(image, {
          memory,
          e820,
          cmdline: rng.chance(0.9) ? "console=ttyS0" : "x".repeat(rng.below(70000)),
          initrd,
          name: "fuzz",
        });
        rec.count(`loaded ${result.format}`);
        if (!memory.contains(result.entry, 1) && result.format !== "openbsd") {
          rec.find(step, `${result.format}: entry 0x${result.entry.toString(16)} outside RAM`);
        }
      } catch (e) {
        if (e instanceof LoaderError) rec.count("refused");
        else rec.find(step, describeError(e));
      }
      try {
        inspectUnikernel(image, "fuzz"); // the Solo5 loader's parser
        rec.count("solo5 images accepted");
      } catch (e) {
        if (!(e instanceof LoaderError)) rec.find(step, `solo5: ${describeError(e)}`);
      }
      const guard = memory.brokenGuard();
      if (guard) rec.find(step, `write outside guest RAM: ${guard}`);
      if (step % 200 === 199 && Deno.memoryUsage().heapUsed - heapBase > 512 * 2 ** 20) {
        rec.find(step, "heap grew past 512 MiB");
        break;
      }
      rec.report.inputs++;
    }
    return rec.report;
  },
};

// ---- configs ----

const TESTDATA = new URL("../../config/testdata/", import.meta.url);
const VMCONF = new URL("../vmconf/", import.meta.url);

function textSeeds(dir: URL, suffix: string): string[] {
  try {
    return [...Deno.readDirSync(dir)]
      .filter((e) => e.isFile && e.name.endsWith(suffix))
      .map((e) => e.name)
      .sort()
      .map((n) => Deno.readTextFileSync(new URL(n, dir)));
  } catch {
    return [];
  }
}

/** Edge values a config line may be given. */
const TOML_VALUES = [
  "0",
  "-1",
  "1e400",
  "nan",
  "inf",
  "9223372036854775807",
  "-9223372036854775808",
  "0xffffffffffffffff",
  '""',
  '"\\u0000"',
  '"' + "a".repeat(300) + '"',
  "[]",
  "{}",
  "true",
  "1979-05-27T07:32:00Z",
  '"64Z"',
  '"-5M"',
  '"9999999999G"',
  '"file:"',
  '"/proc/self/pagemap"',
  '"../../../../etc/shadow"',
];

function mutateText(rng: Rng, text: string, values: readonly string[]): string {
  const lines = text.split("\n");
  const rounds = rng.range(1, 3);
  for (let r = 0; r < rounds; r++) {
    if (lines.length === 0) lines.push("");
    const i = rng.below(lines.length);
    switch (rng.below(6)) {
      case 0:
        lines.splice(i, 1);
        break;
      case 1:
        lines.splice(i, 0, lines[rng.below(lines.length)] ?? "");
        break;
      case 2: {
        const eq = lines[i].indexOf("=");
        if (eq > 0) lines[i] = lines[i].slice(0, eq + 1) + " " + rng.pick(values);
        break;
      }
      case 3: {
        const b = new TextEncoder().encode(lines[i]);
        lines[i] = new TextDecoder().decode(mutateBytes(rng, b, b.length || 1, 16));
        break;
      }
      case 4:
        lines.splice(
          i,
          0,
          rng.pick(["[vm]", "[[disk]]", "[[interface]]", "[debug]", "[", "]]", "{"]),
        );
        break;
      default:
        lines[i] = lines[i].toUpperCase();
    }
  }
  return lines.join("\n");
}

/** One small config file taking longer than this is a finding (a denial of service). */
const SLOW_INPUT_MS = 1000;

/** TOML configs through parseConfig, and vm.conf files through importVmConf. */
export const configsTarget: FuzzTarget = {
  name: "configs",
  unit: "config files",
  short: 800,
  long: 300_000,
  run(seed, inputs) {
    const rec = new Recorder("configs", seed);
    const rng = new Rng(seed);
    const toml = textSeeds(TESTDATA, ".toml");
    const vmconf = textSeeds(VMCONF, ".conf");
    if (!toml.length) rec.find(-1, "no TOML seeds found in config/testdata");
    for (let step = 0; step < inputs && toml.length; step++) {
      const useVmConf = vmconf.length > 0 && rng.chance(0.3);
      const text = mutateText(rng, rng.pick(useVmConf ? vmconf : toml), TOML_VALUES);
      const t0 = performance.now();
      try {
        if (useVmConf) {
          const r = importVmConf(text, { path: "fuzz.conf", readFile: () => "" });
          rec.count(r.errors?.length ? "vm.conf refused" : "vm.conf accepted");
        } else {
          const r = parseConfig(text, { baseDir: "/nonexistent", checkFiles: false });
          rec.count(r.config ? "toml accepted" : "toml refused");
          if (!r.config && r.errors.length === 0) rec.find(step, "refused without an error");
        }
      } catch (e) {
        // importVmConf reports syntax errors by throwing its ParseError.
        if (useVmConf && e instanceof ParseError) {
          rec.count("vm.conf refused");
        } else rec.find(step, `${useVmConf ? "vm.conf" : "toml"}: ${describeError(e)}`, text);
      }
      const ms = performance.now() - t0;
      if (ms > SLOW_INPUT_MS) {
        rec.find(step, `${Math.round(ms)} ms for one ${text.length}-character file`, text);
      }
      rec.report.inputs++;
    }
    return rec.report;
  },
};

// ---- control messages ----

const CONTROL_SEEDS: unknown[] = [
  { op: "info" },
  { op: "pause" },
  { op: "unpause" },
  { op: "reset" },
  { op: "wait" },
  { op: "console" },
  { op: "stop", force: false, timeoutMs: 30000 },
  { op: "stop", force: true, timeoutMs: 0, keys: "q" },
  { op: "log-level", level: "verbose" },
  { op: "screendump", format: "png" },
];

const JSON_VALUES: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1e308,
  -0,
  0.5,
  "",
  "yes",
  "stop",
  [],
  {},
  [1, 2],
  { a: 1 },
  "x".repeat(5000),
];

function randomJson(rng: Rng, depth = 0): unknown {
  if (depth > 3 || rng.chance(0.6)) return rng.pick(JSON_VALUES);
  if (rng.chance(0.5)) {
    return Array.from({ length: rng.below(4) }, () => randomJson(rng, depth + 1));
  }
  const o: Record<string, unknown> = {};
  for (let i = rng.below(4); i > 0; i--) {
    o[rng.pick(["op", "force", "timeoutMs", "keys", "level", "format", "__proto__", "x"])] =
      randomJson(rng, depth + 1);
  }
  return o;
}

/** Checks an accepted request the long way: exactly what the VM process relies on. */
function acceptedIsSound(r: Record<string, unknown>): string | undefined {
  if (r.op === "stop") {
    if (typeof r.force !== "boolean") return "stop accepted without a boolean force";
    const t = r.timeoutMs;
    if (typeof t !== "number" || !Number.isFinite(t) || t < 0) return `stop accepted timeout ${t}`;
    if (r.keys !== undefined && typeof r.keys !== "string") return "stop accepted non-string keys";
  }
  if (r.op === "log-level" && r.level !== "brief" && r.level !== "verbose") {
    return `log-level accepted ${String(r.level)}`;
  }
  if (r.op === "screendump" && r.format !== "png" && r.format !== "text") {
    return `screendump accepted format ${String(r.format)}`;
  }
  return undefined;
}

/** Control-socket messages (as parsed JSON and as mutated lines) through the validator. */
export const controlTarget: FuzzTarget = {
  name: "control",
  unit: "control messages",
  short: 3000,
  long: 2_000_000,
  run(seed, inputs) {
    const rec = new Recorder("control", seed);
    const rng = new Rng(seed);
    for (let step = 0; step < inputs; step++) {
      let value: unknown;
      if (rng.chance(0.4)) {
        value = randomJson(rng);
      } else {
        const line = new TextEncoder().encode(JSON.stringify(rng.pick(CONTROL_SEEDS)));
        const text = new TextDecoder().decode(mutateBytes(rng, line, line.length, 64));
        try {
          value = JSON.parse(text);
        } catch {
          rec.count("not JSON (answered as malformed)");
          rec.report.inputs++;
          continue;
        }
      }
      try {
        const r = validateControlRequest(value);
        if (r.ok) {
          rec.count("accepted");
          const problem = acceptedIsSound(r.request as unknown as Record<string, unknown>);
          if (problem) rec.find(step, `${problem}: ${JSON.stringify(value)}`);
        } else {
          rec.count("refused");
          if (typeof r.error !== "string" || r.error === "") {
            rec.find(step, "refused without a reason");
          }
        }
      } catch (e) {
        rec.find(step, `validator threw on ${JSON.stringify(value)}: ${describeError(e)}`);
      }
      rec.report.inputs++;
    }
    return rec.report;
  },
};
