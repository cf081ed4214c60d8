/**
 * Helpers of the vmctl-style end-to-end tests: the real CLI as a subprocess
 * with a temporary run directory, as root or as another user.
 *
 * @module
 */

import { join } from "node:path";

/** The uid of `nobody`, the unprivileged user of the owner tests. */
export const NOBODY_UID = 65534;

/** The CLI's entry point. */
export const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** A finished vmmctl run. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** A temporary run directory (0755 so the `nobody` client can reach it) and config folder. */
export async function setUp(): Promise<
  { rundir: string; dir: string; cleanup: () => Promise<void> }
> {
  const dir = await Deno.makeTempDir({ prefix: "vmmctl-vmctl-" });
  await Deno.chmod(dir, 0o755);
  const rundir = join(dir, "run");
  return {
    rundir,
    dir,
    cleanup: async () => {
      // Never leave a VM behind, even when an assertion failed half-way.
      await vmmctl(rundir, ["stop", "-f", "-w", "-a"]).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Runs `vmmctl ARGS` with `rundir` as its run directory. */
export async function vmmctl(rundir: string, args: string[], asUser?: number): Promise<Run> {
  const base = ["run", "--allow-all", "--quiet", MAIN, ...args];
  const env: Record<string, string> = { VMMCTL_RUNDIR: rundir, NO_COLOR: "1" };
  let cmd: Deno.Command;
  if (asUser === undefined) {
    cmd = new Deno.Command(Deno.execPath(), { args: base, env, stdin: "null" });
  } else {
    const denoDir = await nobodyDenoDir();
    const nobodyBase = ["run", "--allow-all", "--quiet", join(denoDir, "src", "main.ts"), ...args];
    cmd = new Deno.Command("setpriv", {
      args: [
        `--reuid=${asUser}`,
        `--regid=${asUser}`,
        "--clear-groups",
        "env",
        `DENO_DIR=${denoDir}`,
        `HOME=${denoDir}`,
        join(denoDir, "deno"),
        ...nobodyBase.slice(0, 1),
        "--cached-only",
        ...nobodyBase.slice(1),
      ],
      env,
      stdin: "null",
      cwd: "/",
    });
  }
  const out = await cmd.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

let nobodyDir: string | undefined;
/**
 * A DENO_DIR `nobody` may use: copies of our npm cache, the deno binary and
 * the sources (root's cache, an npx-installed deno and a checkout under
 * /root are not readable by other users).
 */
async function nobodyDenoDir(): Promise<string> {
  if (nobodyDir) return nobodyDir;
  const dir = await Deno.makeTempDir({ prefix: "vmmctl-nobody-deno-" });
  const info = new TextDecoder().decode(
    (await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output()).stdout,
  );
  const npmCache = (JSON.parse(info) as { npmCache: string }).npmCache;
  await new Deno.Command("cp", { args: ["-r", npmCache, join(dir, "npm")] }).output();
  await Deno.copyFile(Deno.execPath(), join(dir, "deno"));
  const root = new URL("..", import.meta.url).pathname;
  await Deno.mkdir(join(dir, "src"));
  await new Deno.Command("sh", {
    args: [
      "-c",
      `tar -C "$1" --exclude=.git -cf - . | tar -C "$2" -xf -`,
      "sh",
      root,
      join(dir, "src"),
    ],
  }).output();
  await new Deno.Command("chmod", { args: ["-R", "a+rwX", dir] }).output();
  nobodyDir = dir;
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  return dir;
}

/** Waits `ms` milliseconds. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The state file of VM `id`. */
export function stateOf(rundir: string, id: number): { pid: number; tty: string } {
  return JSON.parse(Deno.readTextFileSync(join(rundir, `${id}.json`)));
}
