/**
 * Runs the vmmctl CLI as a subprocess, the way a user does.
 *
 * @module
 */

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** The result of one CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `vmmctl ARGS` with `deno run --allow-all main.ts`. */
export async function vmmctl(
  args: string[],
  options: { cwd?: string; stdin?: "null" | "piped"; env?: Record<string, string> } = {},
): Promise<CliResult> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    cwd: options.cwd,
    stdin: options.stdin ?? "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...options.env },
  });
  const out = await cmd.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
