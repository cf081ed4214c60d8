/**
 * `vmmctl status [-r] [--json] [ID|NAME]` (alias `show`): the managed VMs in
 * vmctl's table, with its header and column widths (right-aligned ID 5,
 * PID 5, VCPUS 5, MAXMEM 7, CURMEM 7, TTY 7, OWNER 12, STATE 8, then NAME),
 * memory scaled like fmt_scaled(3). Defined-but-stopped VMs (from `load`)
 * are listed as "stopped". A VM that died is shown once as "died" with its
 * exit status (on stderr), then its record is removed.
 *
 * @module
 */

import { type Command, EXIT_FAILURE, UsageError } from "../command.ts";
import { loadDefinitions } from "./load.ts";
import { ManagedError, reportErrors } from "../errors.ts";
import { ownerText } from "../control/client.ts";
import {
  checkLiveness,
  listStates,
  removeVmFiles,
  reservedIds,
  resolveRunDir,
  RUNDIR_FLAG,
  type VmState,
} from "../control/rundir.ts";

/** vmctl's status header, exactly. */
export const STATUS_HEADER = "   ID   PID VCPUS  MAXMEM  CURMEM     TTY        OWNER    STATE NAME";

/** One row of `status`. */
export interface StatusRow {
  id: number | null;
  pid: number | null;
  vcpus: number;
  maxmemBytes: number;
  curmemBytes: number | null;
  /** The console pty's path, or null. */
  tty: string | null;
  owner: string;
  state: "running" | "paused" | "stopping" | "stopped" | "died" | "starting" | "invalid";
  name: string;
  /** For an invalid definition: what is wrong with it. */
  errors?: string[];
  exitStatus?: number | null;
  outcome?: string;
}

const SCALE_UNITS = "BKMGTPE";

/**
 * A byte count the way fmt_scaled(3) shows it: bytes below 1024 as "512B";
 * else in the largest unit that keeps the number under 1024, with one decimal
 * below 100 ("1.0G", "88.1M") and none from 100 ("512M").
 */
export function formatScaled(bytes: number): string {
  if (bytes < 1024) return `${bytes}B`;
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < SCALE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const u = SCALE_UNITS[unit];
  if (value >= 100) return `${Math.round(value)}${u}`;
  return `${(Math.round(value * 10) / 10).toFixed(1)}${u}`;
}

/**
 * The guest RAM of VM process `pid` that is resident (vmd's CURMEM), from
 * Linux's /proc/PID/smaps: guest RAM is the private anonymous read-write
 * MAP_NORESERVE mappings ("nr"), not executable, at most the guest's size,
 * and not the used part of a malloc arena (those run on into a reserved
 * "---p" rest). Null when it cannot be read (another user's process, not Linux).
 */
export function guestResidentBytes(pid: number, memoryBytes: number): number | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/smaps`);
  } catch {
    return null;
  }
  const maps = text.split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/).map((block) => {
    const [range, perms, , , , path] = block.split("\n")[0].split(/\s+/);
    const [start, end] = range.split("-").map((h) => parseInt(h, 16));
    const field = (name: string) =>
      Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(block)?.[1] ?? 0);
    const flags = /^VmFlags:(.*)$/m.exec(block)?.[1].trim().split(/\s+/) ?? [];
    return { start, end, perms, path: path ?? "", rss: field("Rss") * 1024, flags };
  });
  let total = 0;
  maps.forEach((m, i) => {
    const next = maps[i + 1];
    const arena = next !== undefined && next.start === m.end && next.perms === "---p";
    if (
      m.path === "" && m.perms === "rw-p" && m.flags.includes("nr") && !m.flags.includes("ex") &&
      !m.flags.includes("dc") && m.end - m.start <= memoryBytes && !arena
    ) {
      total += m.rss;
    }
  });
  return Math.min(total, memoryBytes);
}

/** Formats rows as vmctl's table (header included). */
export function formatStatusTable(rows: readonly StatusRow[]): string {
  const lines = [STATUS_HEADER];
  for (const r of rows) {
    const tty = r.tty === null ? "-" : r.tty.replace(/^\/dev\//, "");
    lines.push(
      [
        String(r.id ?? "-").padStart(5),
        String(r.pid ?? "-").padStart(5),
        String(r.state === "invalid" ? "-" : r.vcpus).padStart(5),
        (r.state === "invalid" ? "-" : formatScaled(r.maxmemBytes)).padStart(7),
        (r.curmemBytes === null ? "-" : formatScaled(r.curmemBytes)).padStart(7),
        tty.padStart(7),
        r.owner.padStart(12),
        r.state.padStart(8),
        r.name,
      ].join(" "),
    );
  }
  return lines.join("\n");
}

/**
 * Collects the rows: every state file (checked for liveness: a VM whose
 * process or socket is gone shows as "died"), then defined VMs not running.
 */
export async function collectStatus(
  rundir: string,
): Promise<{ rows: StatusRow[]; dead: VmState[] }> {
  const rows: StatusRow[] = [];
  const dead: VmState[] = [];
  const states = listStates(rundir);
  for (const s of states) {
    const alive = await checkLiveness(rundir, s) === "alive";
    if (!alive) dead.push(s);
    rows.push({
      id: s.id,
      pid: alive ? s.pid : null,
      vcpus: s.vcpus,
      maxmemBytes: s.memoryBytes,
      curmemBytes: alive ? guestResidentBytes(s.pid, s.memoryBytes) : null,
      tty: alive && s.tty ? s.tty : null,
      owner: ownerText(s),
      state: alive ? s.state as StatusRow["state"] : "died",
      name: s.name,
      exitStatus: alive ? undefined : s.exitStatus ?? null,
      outcome: alive ? undefined : s.outcome ?? "its process is gone (killed?)",
    });
  }
  const live = new Set(states.map((s) => s.name));
  const defined = loadDefinitions(rundir).definitions
    .filter((d) => !live.has(d.name))
    .sort((a, b) => a.name.localeCompare(b.name));
  const ids = reservedIds(rundir);
  for (const d of defined) {
    const c = d.config;
    rows.push({
      id: ids.get(d.name) ?? null,
      pid: null,
      vcpus: c?.vm.vcpus ?? 0,
      maxmemBytes: c?.vm.memoryBytes ?? 0,
      curmemBytes: null,
      tty: null,
      // vmd shows root for a VM without an owner: root is who may start it.
      owner: c?.vm.owner ? ownerText({ owner: c.vm.owner } as VmState) : (c ? "root" : "-"),
      state: c ? "stopped" : "invalid",
      name: d.name,
      ...(c ? {} : { errors: d.errors }),
    });
  }
  return { rows, dead };
}

function statusRun(positionals: string[], flags: Record<string, unknown>): Promise<number> {
  if (positionals.length > 1) throw new UsageError("status takes at most one ID or NAME");
  const rundir = resolveRunDir(flags.rundir as string | undefined);
  return reportErrors(async () => {
    const { rows, dead } = await collectStatus(rundir);
    const target = positionals[0];
    let shown = rows;
    if (target !== undefined) {
      shown = rows.filter((r) =>
        /^\d+$/.test(target) ? r.id === Number(target) : r.name === target
      );
      if (shown.length === 0) {
        throw new ManagedError(
          /^\d+$/.test(target) ? `no VM with id ${Number(target)}` : `no VM named "${target}"`,
        );
      }
    }
    if (flags["running-only"]) shown = shown.filter((r) => r.pid !== null);
    if (flags.json) console.log(JSON.stringify(shown, null, 2));
    else {
      console.log(formatStatusTable(shown));
      for (const r of shown) for (const e of r.errors ?? []) console.error(`vmmctl: ${e}`);
    }
    // A died VM is reported once, then its record goes.
    for (const s of dead) {
      if (!shown.some((r) => r.id === s.id)) continue;
      if (!flags.json) {
        const status = s.exitStatus === undefined
          ? "unknown exit status"
          : `exit status ${s.exitStatus}`;
        console.error(
          `vmmctl: VM "${s.name}" (id ${s.id}) died: ${status}` +
            `${
              s.outcome ? ` (${s.outcome})` : " (its process is gone)"
            }; see \`vmmctl log ${s.name}\``,
        );
      }
      removeVmFiles(rundir, s.id);
    }
    // vmctl exits 1 when it had nothing to show.
    return shown.length ? 0 : EXIT_FAILURE;
  });
}

const STATUS_FLAGS = {
  "running-only": {
    type: "boolean",
    short: "r",
    description: "list running VMs only",
  },
  json: { type: "boolean", description: "print the rows as JSON" },
  rundir: RUNDIR_FLAG,
} as const;

export const statusCommand: Command = {
  name: "status",
  summary: "list VMs: running, paused, stopping, died, and defined but stopped",
  args: "[ID|NAME]",
  description: `The table is vmctl's:\n${STATUS_HEADER}`,
  flags: STATUS_FLAGS,
  run: statusRun,
};

export const showCommand: Command = {
  name: "show",
  summary: "the same as status",
  args: "[ID|NAME]",
  flags: STATUS_FLAGS,
  run: statusRun,
};
