/**
 * The project's import graph read from the sources: every `import`/`export
 * ... from`, `import()` and `new URL("....ts", import.meta.url)` (Worker
 * entries) of each TypeScript file, with comments and the text of other
 * strings ignored. Relative specifiers only: bare ones (npm:, node:) are
 * outside the project.
 *
 * @example
 * ```ts
 * import { importGraph } from "./import_graph.ts";
 * const edges = importGraph(new URL("../", import.meta.url));
 * edges.get("machine/host.ts"); // [{ to: "accel/select.ts", dynamic: false, line: 15 }, ...]
 * ```
 * @module
 */

/** One import of a file. */
export interface ImportEdge {
  /** Repository-relative path of the imported file. */
  to: string;
  /** `import()` or a Worker URL (loaded when reached, not at start). */
  dynamic: boolean;
  line: number;
}

/** `source` with comments blanked (strings kept; newlines kept so lines still count). */
export function stripComments(source: string): string {
  let out = "";
  let i = 0;
  const n = source.length;
  while (i < n) {
    const c = source[i];
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      while (i < n && source[i] !== "\n") i++;
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end < 0 ? n : end + 2;
      out += source.slice(i, stop).replace(/[^\n]/g, " ");
      i = stop;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < n && source[j] !== c) {
        if (source[j] === "\\") j++;
        j++;
      }
      out += source.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

const PATTERNS: { re: RegExp; dynamic: boolean }[] = [
  { re: /(?:^|[\s;}])(?:import|export)\s[^"'`;]*?\sfrom\s*["']([^"']+)["']/g, dynamic: false },
  { re: /(?:^|[\s;}])import\s*["']([^"']+)["']/g, dynamic: false },
  { re: /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g, dynamic: true },
  { re: /\bnew\s+URL\(\s*["']([^"']+\.ts)["']\s*,\s*import\.meta\.url\s*\)/g, dynamic: true },
];

/** Resolves `specifier` (relative) against the repository-relative `from`. */
function resolve(from: string, specifier: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const p of specifier.split("/")) {
    if (p === "..") parts.pop();
    else if (p !== ".") parts.push(p);
  }
  return parts.join("/");
}

/** The relative imports of one file's `source`. */
export function importsOf(path: string, source: string): ImportEdge[] {
  const text = stripComments(source);
  const edges: ImportEdge[] = [];
  for (const { re, dynamic } of PATTERNS) {
    for (const m of text.matchAll(re)) {
      const spec = m[1];
      if (!spec.startsWith("./") && !spec.startsWith("../")) continue;
      const line = text.slice(0, m.index).split("\n").length;
      edges.push({ to: resolve(path, spec), dynamic, line });
    }
  }
  return edges;
}

/** Every .ts file under `root` (repository-relative, sorted), skipping dot folders and node_modules. */
export function tsFiles(root: URL, dir = ""): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(new URL(dir || ".", root))) {
    if (e.name.startsWith(".") || e.name === "node_modules") continue;
    const path = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...tsFiles(root, path + "/").map((p) => p));
    else if (e.isFile && e.name.endsWith(".ts")) out.push(path);
  }
  return out.map((p) => p.replace(/\/\//g, "/")).sort();
}

/** The import graph of every .ts file under `root`. */
export function importGraph(root: URL): Map<string, ImportEdge[]> {
  const graph = new Map<string, ImportEdge[]>();
  for (const path of tsFiles(root)) {
    graph.set(path, importsOf(path, Deno.readTextFileSync(new URL(path, root))));
  }
  return graph;
}
