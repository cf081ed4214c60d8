/**
 * Backing files of qcow2 images: resolving the stored name the way QEMU
 * does, and opening the backing image read-only.
 *
 * @module
 */

import { DiskError, DiskFormatError, DiskOpenError } from "./errors.ts";
import { type BlockFile, ImageFile, probeFormat } from "./file.ts";
import type { DiskImage } from "./image.ts";
import { RawImage } from "./raw.ts";

/** Longest backing chain we follow (guards against loops). */
export const QCOW2_MAX_BACKING_CHAIN = 32;

/** Opens a qcow2 image over an open file, `depth` levels down a backing chain. */
export type OpenQcow2 = (file: BlockFile, depth: number) => DiskImage;

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

/**
 * Opens the backing file `backingPath` of `imagePath` read-only, as `format`
 * (probed when the image records none), `depth` levels down the chain.
 *
 * @throws {DiskFormatError} for an unsupported format or a chain too deep
 * @throws {DiskOpenError} when the file cannot be opened
 */
export function openBacking(
  imagePath: string,
  backingPath: string,
  format: string | undefined,
  depth: number,
  openQcow2: OpenQcow2,
): DiskImage {
  const context = `Backing file "${backingPath}" of disk image "${imagePath}"`;
  if (format !== undefined && format !== "raw" && format !== "qcow2") {
    throw new DiskFormatError(
      imagePath,
      `${context} has format "${format}": only raw and qcow2 backing files are supported`,
    );
  }
  if (depth > QCOW2_MAX_BACKING_CHAIN) {
    throw new DiskFormatError(
      imagePath,
      `${context} is more than ${QCOW2_MAX_BACKING_CHAIN} levels deep (a backing loop?)`,
    );
  }
  let file: ImageFile;
  try {
    file = ImageFile.open(backingPath, { readonly: true });
  } catch (e) {
    throw rewrap(e, imagePath, context);
  }
  try {
    const kind = format ?? probeFormat(file);
    return kind === "qcow2" ? openQcow2(file, depth) : new RawImage(file);
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
