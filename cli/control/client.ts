/**
 * The client side of the control socket: finding a VM by name or id in the
 * run directory and talking to its process, with the errors an administrator
 * expects (whose VM it is, a process that is gone).
 *
 * @module
 */

import { openProcessLibc } from "../../ffi/libc.ts";
import { ManagedError } from "../errors.ts";
import { debug } from "../verbose.ts";
import {
  connectControl,
  type ControlReply,
  type ControlRequest,
  controlRequest,
  readLine,
  sendLine,
} from "./protocol.ts";
import {
  checkLiveness,
  errorText,
  listStates,
  removeVmFiles,
  socketPath,
  type VmState,
} from "./rundir.ts";

const GONE_POLL_MS = 10;
const GONE_POLLS = 500;

/** The user-facing owner string of a state: `user` or `user:group`. */
export function ownerText(s: VmState): string {
  return s.owner.group === undefined ? s.owner.user : `${s.owner.user}:${s.owner.group}`;
}

/**
 * Finds the VM named or numbered `target` among the state files. Died VMs are
 * found too (callers decide); throws "no VM named ..." / "no VM with id ...".
 */
export function findVm(rundir: string, target: string): VmState {
  const states = listStates(rundir);
  if (/^\d+$/.test(target)) {
    const s = states.find((x) => x.id === Number(target));
    if (!s) throw new ManagedError(`no VM with id ${Number(target)}`);
    return s;
  }
  const s = states.find((x) => x.name === target);
  if (!s) throw new ManagedError(`no VM named "${target}"`);
  return s;
}

/** Like {@link findVm}, but the VM must be alive (a dead record is reported and cleaned). */
export async function findRunningVm(rundir: string, target: string): Promise<VmState> {
  const s = findVm(rundir, target);
  if (await checkLiveness(rundir, s) === "alive") return s;
  throw new ManagedError(notRunning(rundir, s));
}

function notRunning(rundir: string, s: VmState): string {
  if (s.state === "died") {
    return `VM "${s.name}" is not running: it died (exit status ${s.exitStatus}` +
      `${s.outcome ? `, ${s.outcome}` : ""}); see \`vmmctl log ${s.name}\``;
  }
  removeVmFiles(rundir, s.id);
  return `VM "${s.name}" is not running: its process (pid ${s.pid}) is gone`;
}

/**
 * Sends `request` to VM `s`, turning socket errors into messages that say
 * what is wrong: permission (whose VM it is) or a VM process that is gone.
 */
export async function vmRequest(
  rundir: string,
  s: VmState,
  request: ControlRequest,
): Promise<ControlReply & { ok: true }> {
  let reply: ControlReply;
  debug(`vm ${s.id} (${s.name}): request ${JSON.stringify(request)}`);
  try {
    reply = await controlRequest(socketPath(rundir, s.id), request);
  } catch (e) {
    throw socketError(rundir, s, e);
  }
  if (!reply.ok) throw new ManagedError(reply.error);
  return reply;
}

/** The user-facing error for a failed connection to VM `s`'s socket. */
export function socketError(rundir: string, s: VmState, e: unknown): ManagedError {
  const path = socketPath(rundir, s.id);
  if (e instanceof Deno.errors.PermissionDenied) {
    return new ManagedError(
      `permission denied on ${path}: VM "${s.name}" belongs to ${ownerText(s)}`,
    );
  }
  if (e instanceof Deno.errors.ConnectionRefused || e instanceof Deno.errors.NotFound) {
    return new ManagedError(notRunning(rundir, s));
  }
  return new ManagedError(`cannot reach VM "${s.name}" on ${path}: ${errorText(e)}`);
}

/** Connects to VM `s`'s control socket, with {@link socketError}'s messages. */
export async function connectVm(rundir: string, s: VmState): Promise<Deno.UnixConn> {
  try {
    return await connectControl(socketPath(rundir, s.id));
  } catch (e) {
    throw socketError(rundir, s, e);
  }
}

/** How a waited-for VM ended; no exitStatus when its process was killed. */
export interface WaitEnd {
  exitStatus?: number;
  outcome?: string;
}

/**
 * Opens a `wait` request on VM `s`; `ended` resolves when the VM is gone
 * (wrapped in an object: an async function cannot return a pending promise).
 */
export async function openWait(rundir: string, s: VmState): Promise<{ ended: Promise<WaitEnd> }> {
  const conn = await connectVm(rundir, s);
  await sendLine(conn, { op: "wait" });
  const ended = (async (): Promise<WaitEnd> => {
    try {
      const line = await readLine(conn);
      return (line?.value as WaitEnd | undefined) ?? {};
    } catch {
      return {};
    } finally {
      try {
        conn.close();
      } catch {
        // already closed
      }
      // The reply comes just before the VM process exits: "gone" means gone.
      const libc = openProcessLibc();
      for (let i = 0; i < GONE_POLLS && libc.processExists(s.pid); i++) {
        await new Promise((r) => setTimeout(r, GONE_POLL_MS));
      }
    }
  })();
  return { ended };
}
