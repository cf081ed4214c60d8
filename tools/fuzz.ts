/**
 * `deno task fuzz`: runs every fuzz target (files named `*_fuzz_test.ts`)
 * for a long, reproducible run. The targets read VMMCTL_FUZZ_ITERATIONS
 * (cases; default here 5000, in the normal test suite a short run) and
 * VMMCTL_FUZZ_SEED (first seed). Extra arguments go to `deno test` (e.g.
 * `deno task fuzz disk/` to run only the targets under disk/).
 *
 * @module
 */

const root = new URL("..", import.meta.url).pathname;
const args = Deno.args.filter((a) => a.startsWith("-"));
const under = Deno.args.filter((a) => !a.startsWith("-"));

function targets(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    if (e.name === "node_modules" || e.name.startsWith(".")) continue;
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...targets(path));
    else if (e.name.endsWith("_fuzz_test.ts")) out.push(path);
  }
  return out;
}

const files = (under.length > 0 ? under.map((u) => `${root}${u}`) : [root.replace(/\/$/, "")])
  .flatMap((d) => Deno.statSync(d).isFile ? [d] : targets(d.replace(/\/$/, "")))
  .sort();
if (files.length === 0) {
  console.error("fuzz: no *_fuzz_test.ts files found");
  Deno.exit(1);
}
const env = {
  VMMCTL_FUZZ_ITERATIONS: Deno.env.get("VMMCTL_FUZZ_ITERATIONS") ?? "5000",
  VMMCTL_FUZZ_SEED: Deno.env.get("VMMCTL_FUZZ_SEED") ?? String(Date.now() % 1_000_000),
};
console.log(
  `fuzz: ${files.length} targets, VMMCTL_FUZZ_ITERATIONS=${env.VMMCTL_FUZZ_ITERATIONS} ` +
    `VMMCTL_FUZZ_SEED=${env.VMMCTL_FUZZ_SEED} (set both to replay)`,
);
const status = await new Deno.Command(Deno.execPath(), {
  args: ["test", "--allow-all", "--parallel", ...args, ...files],
  env,
  cwd: root,
}).spawn().status;
Deno.exit(status.code);
