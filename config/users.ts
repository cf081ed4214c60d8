/**
 * User and group names <-> ids from /etc/passwd and /etc/group (no NSS: the
 * files vmd's hosts and ours have), for VM owners.
 *
 * @module
 */

/** A user or group name for an id, from /etc/passwd or /etc/group; the number if unknown. */
export function nameForId(file: "/etc/passwd" | "/etc/group", id: number): string {
  for (const line of readLines(file)) {
    const f = line.split(":");
    if (f.length > 2 && Number(f[2]) === id && f[2] !== "") return f[0];
  }
  return String(id);
}

/** The numeric id of a user or group name (or a number given as a string); undefined if unknown. */
export function idForName(file: "/etc/passwd" | "/etc/group", name: string): number | undefined {
  if (/^\d+$/.test(name)) return Number(name);
  for (const line of readLines(file)) {
    const f = line.split(":");
    if (f.length > 2 && f[0] === name) return Number(f[2]);
  }
  return undefined;
}

function readLines(file: string): string[] {
  try {
    return Deno.readTextFileSync(file).split("\n");
  } catch {
    return [];
  }
}
