/**
 * The module graph of an entry point as Deno itself sees it (`deno info
 * --json`), reduced to what runs: type-only imports are dropped, and dynamic
 * `import()` edges are kept apart from static ones, so a test can ask which
 * modules a thread loads before any back-end is chosen, and which a chosen
 * back-end adds.
 *
 * @example
 * ```ts
 * import { moduleGraph } from "./module_graph.ts";
 * const g = await moduleGraph(new URL("../machine/vcpu_worker.ts", import.meta.url));
 * g.loadedFrom([g.root]).size; // modules loaded at start, before any import()
 * ```
 * @module
 */

/** One module and its runtime edges. */
export interface GraphModule {
  specifier: string;
  size: number;
  /** Specifiers imported with `import ... from` (values, not types). */
  staticDeps: string[];
  /** Specifiers loaded with `import()`. */
  dynamicDeps: string[];
}

/** A module graph rooted at one entry point. */
export class ModuleGraph {
  constructor(readonly root: string, readonly modules: Map<string, GraphModule>) {}

  /** Every module loaded by evaluating `roots`, following static edges only. */
  loadedFrom(roots: readonly string[]): Set<string> {
    const seen = new Set<string>();
    const stack = [...roots];
    while (stack.length) {
      const s = stack.pop()!;
      if (seen.has(s)) continue;
      const m = this.modules.get(s);
      if (!m) throw new Error(`module ${s} is not in the graph of ${this.root}`);
      seen.add(s);
      stack.push(...m.staticDeps);
    }
    return seen;
  }

  /** Total source bytes of `specifiers`. */
  bytes(specifiers: Iterable<string>): number {
    let n = 0;
    for (const s of specifiers) n += this.modules.get(s)?.size ?? 0;
    return n;
  }
}

interface InfoDependency {
  code?: { specifier: string };
  isDynamic?: boolean;
}

interface InfoJson {
  roots: string[];
  modules: { specifier: string; size?: number; dependencies?: InfoDependency[] }[];
}

/** Runs `deno info --json` on `entry` and returns its runtime graph. */
export async function moduleGraph(entry: URL): Promise<ModuleGraph> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry.href],
    env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`deno info ${entry.href}: ${new TextDecoder().decode(out.stderr)}`);
  }
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as InfoJson;
  const modules = new Map<string, GraphModule>();
  for (const m of info.modules) {
    const staticDeps: string[] = [];
    const dynamicDeps: string[] = [];
    for (const d of m.dependencies ?? []) {
      if (!d.code) continue; // a type-only import: erased before it runs
      (d.isDynamic ? dynamicDeps : staticDeps).push(d.code.specifier);
    }
    modules.set(m.specifier, {
      specifier: m.specifier,
      size: m.size ?? 0,
      staticDeps,
      dynamicDeps,
    });
  }
  return new ModuleGraph(info.roots[0], modules);
}
