/**
 * `vmmctl create [-s size] [-b base] [-f raw|qcow2] DISK`: make a disk image,
 * like vmctl's `create`.
 *
 * The format is `-f`, else what the name says (`.qcow2`, `.raw`, `.img`),
 * else qcow2 when there is a base image (only qcow2 can have one), else raw.
 * Without `-s`, a qcow2 image with a base takes the base's size.
 *
 * @module
 */

import { createDiskImage, formatFromName } from "../../disk/create.ts";
import { DiskError } from "../../disk/errors.ts";
import type { DiskImageFormat } from "../../disk/image.ts";
import { formatSize, parseSize, SizeError } from "../../config/size.ts";
import { type Command, EXIT_FAILURE, type FlagValues, UsageError } from "../command.ts";

/** What `create` was asked for, before touching the file system. */
export interface CreateRequest {
  path: string;
  format: DiskImageFormat;
  sizeBytes?: number;
  backing?: string;
}

/** Turns the arguments into a {@link CreateRequest}; throws UsageError on bad input. */
export function parseCreateArgs(positionals: string[], flags: FlagValues): CreateRequest {
  if (positionals.length !== 1) throw new UsageError("create needs exactly one DISK");
  const path = positionals[0];
  const backing = typeof flags.base === "string" ? flags.base : undefined;
  let format: DiskImageFormat;
  if (typeof flags.format === "string") {
    if (flags.format !== "raw" && flags.format !== "qcow2") {
      throw new UsageError(`unknown disk format "${flags.format}": use raw or qcow2`);
    }
    format = flags.format;
  } else {
    format = formatFromName(path) ?? (backing !== undefined ? "qcow2" : "raw");
  }
  if (backing !== undefined && format !== "qcow2") {
    throw new UsageError(`a base image needs the qcow2 format, not "${format}"`);
  }
  let sizeBytes: number | undefined;
  if (typeof flags.size === "string") {
    try {
      sizeBytes = parseSize(flags.size);
    } catch (e) {
      if (e instanceof SizeError) throw new UsageError(e.message);
      throw e;
    }
    if (sizeBytes <= 0) throw new UsageError(`disk size "${flags.size}" must be above zero`);
  } else if (backing === undefined) {
    throw new UsageError("create needs a size (-s) unless it has a base image (-b)");
  }
  return { path, format, sizeBytes, backing };
}

/** The `create` subcommand. */
export const createCommand: Command = {
  name: "create",
  summary: "create a raw or qcow2 disk image",
  args: "DISK",
  description:
    "The format comes from -f, else the file name (.qcow2, .raw, .img), else qcow2 with a base " +
    "image and raw without. Sizes take K/M/G/T suffixes. An existing file is never overwritten.",
  flags: {
    size: { type: "string", short: "s", value: "SIZE", description: "virtual size, e.g. 10G" },
    base: {
      type: "string",
      short: "b",
      value: "BASE",
      description: "base (backing) image of a qcow2 image; relative to DISK's folder",
    },
    format: { type: "string", short: "f", value: "FORMAT", description: "raw or qcow2" },
  },
  run(positionals, flags) {
    const request = parseCreateArgs(positionals, flags);
    try {
      const made = createDiskImage(request.path, {
        format: request.format,
        sizeBytes: request.sizeBytes,
        backing: request.backing,
      });
      const base = made.backing ? `, base "${made.backing}" (${made.backingFormat})` : "";
      console.log(
        `vmmctl: created ${made.format} disk "${made.path}" of ${
          formatSize(made.sizeBytes)
        }${base}`,
      );
      return Promise.resolve(0);
    } catch (e) {
      if (!(e instanceof DiskError)) throw e;
      console.error(`vmmctl: ${e.message}`);
      return Promise.resolve(EXIT_FAILURE);
    }
  },
};
