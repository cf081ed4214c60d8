/**
 * The layer table: which top-level folder (or file) sits on which floor.
 * The one definition of the layering: `tests/layering_test.ts` enforces it
 * on the import graph and checks that docs/ARCHITECTURE.md shows the same
 * table.
 *
 * A file may import files of its own folder and of lower layers; folders of
 * one layer may use one another as long as no two import each other. The
 * ground floor imports nothing of the project.
 *
 * @module
 */

/** One floor of the building, bottom first. */
export interface Layer {
  rank: number;
  /** Top-level folders (or files, like main.ts) of this layer. */
  members: readonly string[];
  /** What it is, in a few words (the docs show this). */
  role: string;
}

/** Bottom to top. */
export const LAYERS: readonly Layer[] = [
  {
    rank: 0,
    members: ["core", "ffi"],
    role: "guest memory, buses, memory layout, device interfaces, CPU state; libc, structs, ioctls",
  },
  {
    rank: 1,
    members: ["devices", "disk", "net", "display", "loaders", "config", "guests"],
    role:
      "devices, block and net back ends, console servers, boot loaders, the VM config, guest images",
  },
  { rank: 2, members: ["accel"], role: "hypervisor back-ends behind the accelerator contract" },
  {
    rank: 3,
    members: ["machine"],
    role: "the vmm: wires a machine, runs the exit loop, vCPU threads",
  },
  { rank: 4, members: ["solo5"], role: "the Solo5 tender machine, built from the machine's parts" },
  { rank: 5, members: ["cli"], role: "verbs, the VM process, the control protocol" },
  { rank: 6, members: ["main.ts"], role: "the program" },
  { rank: 7, members: ["bench", "tests", "tools"], role: "benches and test machinery" },
];

/**
 * The one edge from the product into the test machinery: `--accel
 * openbsd-on-kvm` loads the vmm(4) emulation, a testing aid, and only when
 * chosen (a dynamic import).
 */
export const SANCTIONED_EDGES: readonly { from: string; to: string }[] = [
  { from: "accel/select.ts", to: "tests/vmm_emulation/vmm_on_kvm.ts" },
];

/** Program entry points: other code may name them by URL to spawn them (not an import). */
export const ENTRY_POINTS: readonly string[] = ["main.ts", "bench/main.ts"];

/** Test machinery inside product folders: unit tests, their helpers and fakes, test data. */
export function isTestMachinery(path: string): boolean {
  return /_test\.ts$|(^|\/)(test_helpers|testing|fakes)\.ts$|_test_kernel\.ts$|(^|\/)testdata\//
    .test(path);
}

/** The top-level folder (or file) of a repository-relative path. */
export function topOf(path: string): string {
  const slash = path.indexOf("/");
  return slash < 0 ? path : path.slice(0, slash);
}

/** The layer of a repository-relative path, or undefined when its folder is in no layer. */
export function layerOf(path: string): Layer | undefined {
  const top = topOf(path);
  return LAYERS.find((l) => l.members.includes(top));
}
