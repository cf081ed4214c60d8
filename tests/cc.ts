/**
 * Test helper: compile and run a small C program with the system C compiler,
 * and probe struct layouts so tests can compare our field tables against
 * what the compiler itself computes.
 *
 * When no `cc` is on PATH, {@link CC_PATH} is undefined and
 * {@link compileAndRun} returns undefined, so a test can skip itself with
 * `ignore: CC_PATH === undefined`. CI has a compiler, so there these tests run.
 *
 * @example
 * ```ts
 * import { cProgram, CC_PATH, compileAndRun, parseProbeOutput, probeLayout } from "./cc.ts";
 * import { defineStruct } from "../ffi/struct.ts";
 * const pair = defineStruct("pair", [["a", "u8"], ["b", "u32"]]);
 * const probe = probeLayout(pair);
 * const src = cProgram(["struct pair { unsigned char a; unsigned int b; };"], probe.lines);
 * if (CC_PATH) {
 *   const out = await compileAndRun(src);
 *   parseProbeOutput(out!); // deep-equals probe.expected when the table is right
 * }
 * ```
 * @module
 */

import { type FieldType, sizeOf, StructLayout } from "../ffi/struct.ts";

function findOnPath(program: string): string | undefined {
  try {
    for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
      if (!dir) continue;
      const candidate = `${dir}/${program}`;
      try {
        if (Deno.statSync(candidate).isFile) return candidate;
      } catch {
        // not in this directory
      }
    }
  } catch {
    // no --allow-env / --allow-read: behave as if there were no compiler
  }
  return undefined;
}

/** Absolute path of `cc` on PATH, or undefined when there is none. */
export const CC_PATH: string | undefined = findOnPath("cc");

/** The message a skipped compiler test prints. */
export const NO_CC_MESSAGE = "no C compiler (cc) on PATH: C cross-checks skipped";

/**
 * Compiles `source` (C, gnu11, warnings are errors) and runs it; resolves to
 * its stdout, or undefined when there is no compiler. Throws with the
 * compiler's or program's stderr when either fails.
 */
export async function compileAndRun(
  source: string,
  flags: readonly string[] = [],
): Promise<string | undefined> {
  if (CC_PATH === undefined) return undefined;
  const dir = await Deno.makeTempDir({ prefix: "vmmctl_cc_" });
  try {
    const src = `${dir}/probe.c`;
    const exe = `${dir}/probe`;
    await Deno.writeTextFile(src, source);
    const build = await new Deno.Command(CC_PATH, {
      args: ["-std=gnu11", "-Wall", "-Werror", ...flags, "-o", exe, src],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!build.success) {
      throw new Error(`C compilation failed:\n${new TextDecoder().decode(build.stderr)}`);
    }
    const run = await new Deno.Command(exe, { stdout: "piped", stderr: "piped" }).output();
    if (!run.success) {
      throw new Error(
        `C program exited with code ${run.code}:\n${new TextDecoder().decode(run.stderr)}`,
      );
    }
    return new TextDecoder().decode(run.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * A whole C program: `prelude` lines (includes, declarations) and a `main`
 * whose body is `body`. The macro `P(key, value)` prints `key value` with the
 * value as an unsigned 64-bit decimal.
 */
export function cProgram(prelude: readonly string[], body: readonly string[]): string {
  return [
    "#include <stdio.h>",
    "#include <stddef.h>",
    ...prelude,
    '#define P(key, value) printf("%s %llu\\n", key, (unsigned long long)(value))',
    "int main(void) {",
    ...body.map((l) => "  " + l),
    "  return 0;",
    "}",
    "",
  ].join("\n");
}

/** C statements that print a layout's facts, and the values our table predicts. */
export interface Probe {
  /** `P(...)` statements for {@link cProgram}'s body. */
  readonly lines: string[];
  /** key -> value as our table computes it. */
  readonly expected: Record<string, number>;
}

function isStruct(t: FieldType): t is StructLayout {
  return t instanceof StructLayout;
}

/**
 * Probes every named field of `layout`, recursively: offset and size of each
 * field path (nested structs and unions, and element 1 of arrays to check the
 * stride), whether multi-byte scalars are signed, and the layout's sizeof and
 * alignof. Keys look like `kvm_run.io.port@offset`. Padding fields are skipped
 * (they have no name in C).
 */
export function probeLayout(layout: StructLayout<object>, cType = `struct ${layout.name}`): Probe {
  const lines: string[] = [];
  const expected: Record<string, number> = {};
  const emit = (key: string, cExpr: string, value: number) => {
    lines.push(`P(${JSON.stringify(key)}, ${cExpr});`);
    expected[key] = value;
  };
  const member = (path: string) => `((${cType} *)0)->${path}`;
  emit(`${layout.name}@sizeof`, `sizeof(${cType})`, layout.size);
  emit(`${layout.name}@alignof`, `_Alignof(${cType})`, layout.align);

  const walk = (type: FieldType, path: string, offset: number): void => {
    if (typeof type === "string") {
      if (path && sizeOf(type) > 1) {
        const signed = type.startsWith("i") ? 1 : 0;
        emit(`${layout.name}.${path}@signed`, `(__typeof__(${member(path)}))-1 < 0`, signed);
      }
      return;
    }
    if (isStruct(type)) {
      for (const f of type.fields) {
        if (typeof f.type !== "string" && !isStruct(f.type) && f.type.kind === "pad") continue;
        const p = path ? `${path}.${f.name}` : f.name;
        emit(`${layout.name}.${p}@offset`, `offsetof(${cType}, ${p})`, offset + f.offset);
        // A zero-length array stands for a C flexible array member: no sizeof.
        const flexible = typeof f.type !== "string" && !isStruct(f.type) &&
          f.type.kind === "array" && f.type.length === 0;
        if (!flexible) emit(`${layout.name}.${p}@size`, `sizeof(${member(p)})`, f.size);
        walk(f.type, p, offset + f.offset);
      }
      return;
    }
    if (type.kind === "array" && type.length > 0) {
      const i = type.length > 1 ? 1 : 0;
      const step = sizeOf(type.element);
      const p = `${path}[${i}]`;
      emit(`${layout.name}.${p}@offset`, `offsetof(${cType}, ${p})`, offset + i * step);
      emit(`${layout.name}.${p}@size`, `sizeof(${member(p)})`, step);
      walk(type.element, p, offset + i * step);
    }
  };
  walk(layout, "", 0);
  return { lines, expected };
}

/**
 * Probes named integer values (macros, ioctl request numbers): `name` must be
 * a C expression that evaluates to the value.
 */
export function probeValues(values: Record<string, number>): Probe {
  const lines: string[] = [];
  const expected: Record<string, number> = {};
  for (const [name, value] of Object.entries(values)) {
    lines.push(`P(${JSON.stringify(name)}, ${name});`);
    expected[name] = value;
  }
  return { lines, expected };
}

/** Parses `key value` lines printed by a probe program (the value is the last word). */
export function parseProbeOutput(stdout: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of stdout.split("\n")) {
    if (!line) continue;
    const m = /^(.+) (\d+)$/.exec(line);
    if (!m) throw new Error(`Cannot parse probe output line "${line}"`);
    const n = Number(m[2]);
    if (!Number.isSafeInteger(n)) throw new Error(`Probe value "${m[2]}" is not a safe integer`);
    out[m[1]] = n;
  }
  return out;
}
