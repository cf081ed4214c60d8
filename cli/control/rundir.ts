/**
 * The run directory of managed VMs: where each running VM keeps its control
 * socket (`ID.sock`), its state file (`ID.json`) and its log (`NAME.log`), and
 * where `load` remembers the VM definitions (`defs.json`).
 *
 * - root: `/var/run/vmmctl` (mode 0755, so owners named in configs reach their sockets);
 * - others: `$XDG_RUNTIME_DIR/vmmctl`, else `/tmp/vmmctl-$UID` (mode 0700, must be ours);
 * - `--rundir DIR` or `VMMCTL_RUNDIR` overrides both.
 *
 * @example
 * ```ts
 * import { listStates, resolveRunDir } from "./rundir.ts";
 * for (const s of listStates(resolveRunDir())) console.log(s.id, s.name, s.state);
 * ```
 * @module
 */

import { join } from "node:path";
import { openProcessLibc } from "../../ffi/libc.ts";

/** What a managed VM is doing, as its state file says. */
export type VmRunState = "starting" | "running" | "paused" | "stopping" | "died";

/** Verbosity of the VM processes' logs (`vmmctl log brief|verbose`). */
export type LogLevel = "brief" | "verbose";

/** The state file of one managed VM (`ID.json`). */
export interface VmState {
  id: number;
  name: string;
  /** The VM process. */
  pid: number;
  /** The config file it came from, when there was one. */
  configPath?: string;
  vcpus: number;
  memoryBytes: number;
  /** The console pty's slave path, "" until it exists. */
  tty: string;
  /** Who may control it besides root: the config's owner, else the user who started it. */
  owner: { user: string; group?: string };
  /** The uid of the user who started it. */
  uid: number;
  /** ISO 8601 start time. */
  startedAt: string;
  state: VmRunState;
  logLevel: LogLevel;
  /** Set when `state` is "died": the VM process's exit status. */
  exitStatus?: number;
  /** Set when `state` is "died": how the VM ended. */
  outcome?: string;
  /** Where its graphical console listens, when it has one. */
  display?: { vnc?: string; web?: string };
}

/** The `--rundir` flag every managed-VM verb takes. */
export const RUNDIR_FLAG = {
  type: "string",
  value: "DIR",
  description: "run directory (default: /var/run/vmmctl as root, else $XDG_RUNTIME_DIR/vmmctl)",
} as const;

/** The largest VM id handed out (vmd's ids are small integers too). */
export const MAX_VM_ID = 4096;

/** The run directory: `flag`, else $VMMCTL_RUNDIR, else the per-user default. */
export function resolveRunDir(flag?: string): string {
  if (flag) return flag;
  const env = Deno.env.get("VMMCTL_RUNDIR");
  if (env) return env;
  const uid = Deno.uid() ?? 0;
  if (uid === 0) return "/var/run/vmmctl";
  const xdg = Deno.env.get("XDG_RUNTIME_DIR");
  if (xdg) return join(xdg, "vmmctl");
  return `/tmp/vmmctl-${uid}`;
}

/**
 * Creates the run directory if needed (0755 for root, 0700 for others) and
 * refuses one that belongs to another user (a planted /tmp directory).
 */
export function ensureRunDir(dir: string): void {
  const uid = Deno.uid() ?? 0;
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: uid === 0 ? 0o755 : 0o700 });
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) {
      throw new Error(`cannot create run directory "${dir}": ${errorText(e)}`);
    }
  }
  const st = Deno.statSync(dir);
  if (!st.isDirectory) throw new Error(`run directory "${dir}" is not a directory`);
  if (uid !== 0 && st.uid !== uid) {
    throw new Error(`run directory "${dir}" belongs to uid ${st.uid}, not to you (uid ${uid})`);
  }
}

/** Path of VM `id`'s control socket. */
export function socketPath(dir: string, id: number): string {
  return join(dir, `${id}.sock`);
}

/** Path of VM `id`'s state file. */
export function statePath(dir: string, id: number): string {
  return join(dir, `${id}.json`);
}

/** Path of the log of the VM named `name`. */
export function logPath(dir: string, name: string): string {
  return join(dir, `${name}.log`);
}

/** Path of the file where `load` remembers definitions. */
export function defsPath(dir: string): string {
  return join(dir, "defs.json");
}

/** Where `vmmctl log brief|verbose` keeps the level new VMs start with. */
export function logLevelPath(dir: string): string {
  return join(dir, "loglevel");
}

/** The log level new VMs start with. */
export function defaultLogLevel(dir: string): LogLevel {
  try {
    return Deno.readTextFileSync(logLevelPath(dir)).trim() === "verbose" ? "verbose" : "brief";
  } catch {
    return "brief";
  }
}

/** Reads one state file; undefined when it is missing or not a state. */
export function readState(dir: string, id: number): VmState | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(statePath(dir, id));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  try {
    const s = JSON.parse(text) as VmState;
    return typeof s.id === "number" && typeof s.name === "string" ? s : undefined;
  } catch {
    return undefined; // being written (we write by rename, so only a foreign file)
  }
}

/** Every state file in `dir`, by id; empty when the directory does not exist. */
export function listStates(dir: string): VmState[] {
  const out: VmState[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return out;
    throw new Error(`cannot read run directory "${dir}": ${errorText(e)}`);
  }
  for (const entry of entries) {
    const m = /^(\d+)\.json$/.exec(entry.name);
    if (!m) continue;
    const s = readState(dir, Number(m[1]));
    if (s) out.push(s);
  }
  return out.sort((a, b) => a.id - b.id);
}

/** Replaces a state file atomically (write then rename), mode 0644 so anyone may read it. */
export function writeState(dir: string, state: VmState): void {
  const path = statePath(dir, state.id);
  const tmp = `${path}.${Deno.pid}.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify(state, null, 2) + "\n", { mode: 0o644 });
  Deno.chmodSync(tmp, 0o644);
  Deno.renameSync(tmp, path);
}

/**
 * The ids `load` gave the defined VMs (as vmd numbers its configured VMs), by
 * name: a defined VM runs with its id, and others do not take it.
 */
export function reservedIds(dir: string): Map<string, number> {
  try {
    const ids = (JSON.parse(Deno.readTextFileSync(defsPath(dir))) as { ids?: unknown }).ids;
    if (typeof ids !== "object" || ids === null) return new Map();
    return new Map(
      Object.entries(ids).filter(([, v]) => Number.isInteger(v) && v >= 1 && v <= MAX_VM_ID),
    );
  } catch {
    return new Map();
  }
}

/**
 * Claims an id by creating its state file exclusively (so two starts at once
 * never get the same id) and writes `state` there: the id `load` reserved for
 * the name when it is free, else the lowest free id nobody else reserved.
 */
export function claimId(dir: string, state: Omit<VmState, "id">): VmState {
  const reserved = reservedIds(dir);
  const mine = reserved.get(state.name);
  const others = new Set([...reserved].filter(([n]) => n !== state.name).map(([, id]) => id));
  const order = [...(mine ? [mine] : [])];
  for (let id = 1; id <= MAX_VM_ID; id++) if (id !== mine && !others.has(id)) order.push(id);
  for (const id of order) {
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(statePath(dir, id), { write: true, createNew: true, mode: 0o644 });
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) continue;
      throw new Error(`cannot create a state file in "${dir}": ${errorText(e)}`);
    }
    file.close();
    const claimed: VmState = { ...state, id };
    writeState(dir, claimed);
    return claimed;
  }
  throw new Error(`no free VM id in "${dir}" (all ${MAX_VM_ID} are taken)`);
}

/** Removes VM `id`'s state file and socket (missing ones are fine). */
export function removeVmFiles(dir: string, id: number): void {
  for (const path of [statePath(dir, id), socketPath(dir, id)]) {
    try {
      Deno.removeSync(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}

/** How a state file's VM is doing, checked against the process table and its socket. */
export type Liveness = "alive" | "dead";

/**
 * Whether the VM of `state` is really there: its process exists and its
 * socket accepts connections (a refused or missing socket means a killed VM
 * whose pid may already belong to someone else). A socket we may not open
 * (another user's VM) still proves a listener.
 */
export async function checkLiveness(dir: string, state: VmState): Promise<Liveness> {
  if (state.state === "died") return "dead";
  if (!openProcessLibc().processExists(state.pid)) return "dead";
  try {
    const conn = await Deno.connect({ transport: "unix", path: socketPath(dir, state.id) });
    conn.close();
    return "alive";
  } catch (e) {
    if (e instanceof Deno.errors.PermissionDenied) return "alive";
    // A VM that is still starting has its state file before its socket.
    if (state.state === "starting" && e instanceof Deno.errors.NotFound) return "alive";
    return "dead";
  }
}

/** An error's message, for wrapping. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
