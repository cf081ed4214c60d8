/**
 * Backing files of qcow2 images: resolving the stored name the way QEMU
 * does, and opening the backing image read-only under a policy, because the
 * name comes from inside an image the VM's owner (or its guest, for a disk
 * whose format was probed) may have written:
 * - with {@linkcode BackingPolicy.access} (vmmctl runs as root for a VM with
 *   an `owner`), a backing file opens only if that user could read it (see
 *   owner_access.ts) or it lies under {@linkcode BackingPolicy.allow};
 * - the format is the one the image records (the backing-format header
 *   extension) and is never probed: with none recorded the file is read as
 *   raw, and refused if it starts with a qcow2 header (it is a qcow2 image
 *   whose format was not recorded, or a raw disk a guest wrote a header
 *   into: either way, `qemu-img rebase -u -F` fixes the image);
 * - only regular files: FIFOs, sockets and devices are refused before they
 *   are opened (a FIFO would block the open);
 * - a file already in the chain (same device and inode) is a loop, refused
 *   at once; chains are at most {@linkcode QCOW2_MAX_BACKING_CHAIN} deep.
 *
 * @module
 */

import { DiskError, DiskFormatError, DiskOpenError } from "./errors.ts";
import { type BlockFile, hasQcow2Magic, ImageFile, openError } from "./file.ts";
import type { DiskImage } from "./image.ts";
import { type Credentials, readDenial, userCredentials } from "./owner_access.ts";
import { RawImage } from "./raw.ts";

/** Longest backing chain we follow. */
export const QCOW2_MAX_BACKING_CHAIN = 16;

/** Who may open which backing files. */
export interface BackingPolicy {
  /** Open a backing file only if this user could read it (unless allowed below). */
  access?: Credentials;
  /** Absolute paths of files or folders backing files may come from regardless of `access`. */
  allow?: readonly string[];
}

/** The chain being opened: the policy and the identities (device:inode) of its files. */
export interface BackingChain {
  policy: BackingPolicy;
  /** `dev:ino` of every image above, top first. */
  identities: string[];
  /** Paths of every image above, top first (for messages). */
  paths: string[];
}

/** Opens a qcow2 image over an open file, as the next level of `chain`. */
export type OpenQcow2 = (file: BlockFile, chain: BackingChain) => DiskImage;

/** The identity of a file for loop detection. */
export function fileIdentity(info: Deno.FileInfo): string {
  return `${info.dev}:${info.ino}`;
}

/** A backing file name resolved the way QEMU does: relative to the image's folder. */
export function resolveBackingPath(imagePath: string, backingFile: string): string {
  // POSIX paths, normalized like path.join, by hand: importing node:path costs the vCPU thread
  // ~15 ms of start-up.
  const joined = backingFile.startsWith("/")
    ? backingFile
    : `${imagePath.slice(0, imagePath.lastIndexOf("/") + 1) || "./"}${backingFile}`;
  const parts: string[] = [];
  for (const part of joined.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === ".." && parts.length && parts[parts.length - 1] !== "..") parts.pop();
    else if (part !== ".." || !joined.startsWith("/")) parts.push(part);
  }
  const path = parts.join("/");
  return joined.startsWith("/") ? `/${path}` : path || ".";
}

function kindOf(info: Deno.FileInfo): string {
  if (info.isFifo) return "a FIFO";
  if (info.isSocket) return "a socket";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  if (info.isDirectory) return "a directory";
  return "not a regular file";
}

function allowed(path: string, allow: readonly string[]): boolean {
  let real: string;
  try {
    real = Deno.realPathSync(path);
  } catch {
    return false;
  }
  return allow.some((a) => real === a || real.startsWith(a.endsWith("/") ? a : `${a}/`));
}

/**
 * Opens the backing file `backingPath` of `imagePath` read-only under the
 * chain's policy (see the module comment).
 *
 * @throws {DiskFormatError} for an unsupported or unrecorded format, a loop
 * or a chain too deep
 * @throws {DiskOpenError} when the file cannot or may not be opened
 */
export function openBacking(
  imagePath: string,
  backingPath: string,
  format: string | undefined,
  chain: BackingChain,
  openQcow2: OpenQcow2,
): DiskImage {
  const context = `Backing file "${backingPath}" of disk image "${imagePath}"`;
  const formatError = (why: string) => new DiskFormatError(imagePath, `${context} ${why}`);
  const refused = (why: string) => new DiskOpenError(imagePath, `${context} ${why}`);
  if (format !== undefined && format !== "raw" && format !== "qcow2") {
    throw formatError(`has format "${format}": only raw and qcow2 backing files are supported`);
  }
  if (chain.paths.length >= QCOW2_MAX_BACKING_CHAIN) {
    throw formatError(`would make the backing chain longer than ${QCOW2_MAX_BACKING_CHAIN}`);
  }
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(backingPath);
  } catch (e) {
    throw rewrap(openError(backingPath, "access", e), imagePath, context);
  }
  if (!info.isFile) throw refused(`is ${kindOf(info)}: backing files must be regular files`);
  const identity = fileIdentity(info);
  const seen = chain.identities.indexOf(identity);
  if (seen >= 0) {
    const loop = [...chain.paths.slice(seen), backingPath].map((p) => `"${p}"`).join(" -> ");
    throw formatError(`is already in the backing chain: the chain loops (${loop})`);
  }
  const { access, allow = [] } = chain.policy;
  if (access !== undefined && !allowed(backingPath, allow)) {
    const denial = readDenial(backingPath, access);
    if (denial !== undefined) {
      throw refused(
        `may not be opened: the VM's owner could not read it (${denial}); backing files open ` +
          `with the owner's permissions unless listed in the disk's backing allow-list`,
      );
    }
  }
  let file: ImageFile;
  try {
    file = ImageFile.open(backingPath, { readonly: true });
  } catch (e) {
    throw rewrap(e, imagePath, context);
  }
  try {
    if (fileIdentity(file.stat()) !== identity) {
      throw refused("changed while it was being opened");
    }
    const next: BackingChain = {
      policy: chain.policy,
      identities: [...chain.identities, identity],
      paths: [...chain.paths, backingPath],
    };
    if (format === "qcow2") return openQcow2(file, next);
    const head = new Uint8Array(4);
    if (format === undefined && file.readUpTo(0, head) === 4 && hasQcow2Magic(head)) {
      throw formatError(
        `starts with a qcow2 header but the image records no backing format. Backing ` +
          `formats are never probed (a guest can write a qcow2 header into a raw disk), so ` +
          `without one it would be read as raw; record its format with ` +
          `"qemu-img rebase -u -F qcow2 -b ${backingPath} ${imagePath}" (or -F raw)`,
      );
    }
    return new RawImage(file);
  } catch (e) {
    file.close();
    throw rewrap(e, imagePath, context);
  }
}

function rewrap(e: unknown, imagePath: string, context: string): unknown {
  if (!(e instanceof DiskError)) return e;
  // Messages of nested backing files already start with their own context.
  const message = e.message.startsWith("Backing file ") ? e.message : `${context}: ${e.message}`;
  if (e instanceof DiskFormatError) return new DiskFormatError(imagePath, message, { cause: e });
  return new DiskOpenError(imagePath, message, { cause: e });
}

/**
 * The backing-file policy of a VM: with an `owner`, backing files open only
 * if that user could read them (or they lie under `allow`). Applied whatever
 * user vmmctl runs as: as root it is what keeps the owner from reading host
 * files; as anyone else it is at most as strict as the kernel for the owner.
 * An owner missing from /etc/passwd gets the permissions of "others" only.
 */
export function backingPolicyFor(
  owner: { user: string } | undefined,
  allow?: readonly string[],
): BackingPolicy {
  if (owner === undefined) return { allow };
  const access = userCredentials(owner.user) ?? { name: owner.user, uid: -1, gids: [] };
  return { access, allow };
}
