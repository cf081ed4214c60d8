/**
 * Could a given user read a file? The check vmmctl makes, when it runs as
 * root for a VM with an `owner`, before it opens a backing file named inside
 * a disk image (which that owner may have written): without it, a VM owner
 * could point a backing file at /etc/shadow and read it from the guest.
 *
 * Why a check and not an open under the owner's credentials: changing the
 * uid of one thread of a Deno process is not possible (the runtime's threads
 * share it), and a helper process per backing file costs a start-up. The
 * check follows the kernel's rules for the classic mode bits: search
 * permission on every directory of the resolved path and read permission on
 * the file, by owner, then group (primary and supplementary), then others.
 * POSIX ACLs and capabilities beyond root's are not consulted, so the check
 * can only be stricter than the kernel when an ACL grants more. The opened
 * file is then compared with the checked one by device and inode.
 *
 * @example
 * ```ts
 * import { mayRead, userCredentials } from "./owner_access.ts";
 * const alice = userCredentials("alice");
 * if (alice && !mayRead("/etc/shadow", alice)) console.log("alice cannot read it");
 * ```
 * @module
 */

/** Whose permissions count. */
export interface Credentials {
  /** Name for messages. */
  name: string;
  uid: number;
  /** Primary and supplementary group ids. */
  gids: number[];
}

/** Fields of /etc/passwd or /etc/group lines, skipping comments and blanks. */
function records(path: string): string[][] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return [];
  }
  return text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).map((l) => l.split(":"));
}

/**
 * The uid and groups of a user from /etc/passwd and /etc/group (a numeric
 * name is taken as a uid); undefined when the user does not exist.
 */
export function userCredentials(
  user: string,
  files: { passwd?: string; group?: string } = {},
): Credentials | undefined {
  const passwd = records(files.passwd ?? "/etc/passwd");
  const entry = passwd.find((f) => f[0] === user) ??
    (/^\d+$/.test(user) ? passwd.find((f) => f[2] === user) ?? [user, "", user, "-1"] : undefined);
  if (entry === undefined) return undefined;
  const uid = Number(entry[2]);
  const gid = Number(entry[3]);
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) return undefined;
  const gids = new Set([gid]);
  for (const g of records(files.group ?? "/etc/group")) {
    if ((g[3] ?? "").split(",").includes(entry[0]) && /^\d+$/.test(g[2] ?? "")) {
      gids.add(Number(g[2]));
    }
  }
  return { name: entry[0], uid, gids: [...gids] };
}

/** Whether `who` has the `bit` (4 read, 1 search) on a file with this stat. */
function permits(info: Deno.FileInfo, who: Credentials, bit: number): boolean {
  if (who.uid === 0) return true;
  const mode = info.mode ?? 0;
  if (info.uid === who.uid) return (mode & (bit << 6)) !== 0;
  if (info.gid !== null && who.gids.includes(info.gid)) return (mode & (bit << 3)) !== 0;
  return (mode & bit) !== 0;
}

/**
 * Why `who` could not open `path` for reading (the first directory or the
 * file that stops them), or undefined when they could. Symbolic links are
 * resolved first: whoever can reach the target directly could read it.
 */
export function readDenial(path: string, who: Credentials): string | undefined {
  let real: string;
  try {
    real = Deno.realPathSync(path);
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
  const parts = real.split("/").filter((p) => p !== "");
  let dir = "/";
  for (let i = 0; i < parts.length; i++) {
    const info = Deno.statSync(dir);
    if (!permits(info, who, 1)) return `${who.name} (uid ${who.uid}) cannot search ${dir}`;
    dir = `${dir === "/" ? "" : dir}/${parts[i]}`;
  }
  if (!permits(Deno.statSync(real), who, 4)) {
    return `${who.name} (uid ${who.uid}) cannot read ${real}`;
  }
  return undefined;
}

/** Whether `who` could open `path` for reading. */
export function mayRead(path: string, who: Credentials): boolean {
  return readDenial(path, who) === undefined;
}
