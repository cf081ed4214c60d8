/**
 * `vmmctl create [-s size] [-b base | -i disk] [raw:|qcow2:]file`: make a
 * disk image with vmctl's rules. The format is the `raw:`/`qcow2:` prefix,
 * else what an existing file holds, else the name's extension (`.qcow2`,
 * `.raw`), else raw (`-f` may also say it). Sizes are scan_scaled(3)'s,
 * counted in whole megabytes (at least one, fractions rounded down). `-b`
 * puts a qcow2 image on top of a qcow2 base of the same size; `-i` copies an
 * image into the new one.
 *
 * @module
 */

import { createDiskImage } from "../../disk/create.ts";
import { DiskError } from "../../disk/errors.ts";
import { type DiskImage, type DiskImageFormat, openDiskImage } from "../../disk/image.ts";
import { scaledMegabytes, SizeError } from "../../config/size.ts";
import { type Command, type FlagValues, UsageError } from "../command.ts";
import { ManagedError, reportErrors } from "../errors.ts";

const MIB = 1024 * 1024;
/** Chunk size of a conversion; chunks of zeros are not written (sparse files, qcow2). */
const COPY_BYTES = 64 * 1024;

/** What `create` was asked for, before touching the file system. */
export interface CreateRequest {
  path: string;
  format: DiskImageFormat;
  /** -s in whole megabytes. */
  sizeMegabytes?: number;
  backing?: string;
  input?: string;
  /** vmctl's warnings ("size rounded to 4 megabytes"). */
  warnings: string[];
}

/** The `raw:`/`qcow2:` prefix of a disk argument, and the path after it. */
export function splitDiskPrefix(arg: string): { path: string; format?: DiskImageFormat } {
  const m = /^(raw|qcow2):(.*)$/s.exec(arg);
  return m ? { path: m[2], format: m[1] as DiskImageFormat } : { path: arg };
}

/** vmctl's parse_disktype: the prefix, else an existing file's signature, else the extension. */
export function diskFormatOf(arg: string): { path: string; format: DiskImageFormat } {
  const { path, format } = splitDiskPrefix(arg);
  if (format) return { path, format };
  try {
    const f = Deno.openSync(path, { read: true });
    try {
      const head = new Uint8Array(4);
      if (f.readSync(head) === 4 && new TextDecoder("latin1").decode(head) === "QFI\xfb") {
        return { path, format: "qcow2" };
      }
    } finally {
      f.close();
    }
  } catch {
    // not there yet: the name decides
  }
  const ext = /\.([^./]+)$/.exec(path)?.[1].toLowerCase();
  return { path, format: ext === "qcow2" ? "qcow2" : "raw" };
}

/** Turns the arguments into a {@link CreateRequest}; throws vmctl's errors. */
export function parseCreateArgs(positionals: string[], flags: FlagValues): CreateRequest {
  if (positionals.length !== 1) throw new UsageError("create needs exactly one disk");
  let { path, format } = diskFormatOf(positionals[0]);
  if (typeof flags.format === "string") {
    if (flags.format !== "raw" && flags.format !== "qcow2") {
      throw new UsageError(`unknown disk format "${flags.format}": use raw or qcow2`);
    }
    format = flags.format;
  }
  const req: CreateRequest = { path, format, warnings: [] };
  if (typeof flags.size === "string") {
    try {
      const { megabytes, rounded } = scaledMegabytes(flags.size);
      if (rounded) req.warnings.push(`size rounded to ${megabytes} megabytes`);
      req.sizeMegabytes = megabytes;
    } catch (e) {
      if (!(e instanceof SizeError)) throw e;
      const why = e.message.startsWith("size must")
        ? e.message
        : `invalid size: ${flags.size}: ${e.message}`;
      throw new ManagedError(`${why}\ninvalid size: ${flags.size}`);
    }
  }
  if (typeof flags.base === "string") req.backing = flags.base;
  if (typeof flags.input === "string") req.input = flags.input;
  if (req.input !== undefined) {
    if (req.backing !== undefined) throw new ManagedError("conflicting -b and -i arguments");
    return req;
  }
  if (req.backing !== undefined && format !== "qcow2") {
    throw new ManagedError("base images require qcow2 disk format");
  }
  if (req.sizeMegabytes === undefined && req.backing === undefined) {
    throw new UsageError(`could not create ${path}: missing size argument`);
  }
  return req;
}

function open(path: string, format: "auto" | DiskImageFormat, readonly: boolean): DiskImage {
  return openDiskImage(path, { format, readonly });
}

/** A base must be a qcow2 image, and the new image has its size. */
function checkBase(req: CreateRequest): void {
  const basePath = req.backing!.startsWith("/")
    ? req.backing!
    : `${req.path.replace(/[^/]*$/, "") || "./"}${req.backing}`;
  const base = open(basePath, "auto", true);
  try {
    if (base.format !== "qcow2") {
      throw new ManagedError(`base image ${req.backing} is not a qcow2 image`);
    }
    if (req.sizeMegabytes !== undefined && req.sizeMegabytes * MIB !== base.sizeBytes) {
      throw new ManagedError(
        `size ${req.sizeMegabytes}M does not match the base image's ` +
          `${Math.ceil(base.sizeBytes / MIB)}M`,
      );
    }
  } finally {
    base.close();
  }
}

/** `-i`: copies `input` into a new image at least as large, in whole megabytes. */
function convert(req: CreateRequest): void {
  const src = diskFormatOf(req.input!);
  const input = open(src.path, src.format, true);
  try {
    const wanted = req.sizeMegabytes === undefined ? input.sizeBytes : req.sizeMegabytes * MIB;
    if (wanted < input.sizeBytes) {
      throw new ManagedError("size cannot be smaller than input disk size");
    }
    const size = Math.ceil(wanted / MIB) * MIB;
    createDiskImage(req.path, { format: req.format, sizeBytes: size });
    const out = open(req.path, req.format, false);
    try {
      const buf = new Uint8Array(COPY_BYTES);
      for (let off = 0; off < input.sizeBytes; off += COPY_BYTES) {
        const chunk = buf.subarray(0, Math.min(COPY_BYTES, input.sizeBytes - off));
        input.read(off, chunk);
        if (chunk.some((b) => b !== 0)) out.write(off, chunk);
      }
      out.flush();
    } finally {
      out.close();
    }
    if (size > wanted) req.warnings.push(`destination size rounded to ${size / MIB} megabytes`);
  } finally {
    input.close();
  }
}

/** The `create` subcommand. */
export const createCommand: Command = {
  name: "create",
  summary: "create a raw or qcow2 disk image (vmctl's create)",
  args: "[raw:|qcow2:]DISK",
  description: [
    "The format is the raw:/qcow2: prefix, else what an existing file holds, else the",
    "extension (.qcow2, .raw), else raw. Sizes are scan_scaled(3)'s (4.5G), in whole",
    "megabytes. -b puts a qcow2 image on a qcow2 base of the same size (its size when -s",
    "is left out); -i copies an image. An existing file is never overwritten.",
  ].join("\n"),
  flags: {
    size: { type: "string", short: "s", value: "SIZE", description: "virtual size, e.g. 10G" },
    base: {
      type: "string",
      short: "b",
      value: "BASE",
      description: "qcow2 base image; relative to DISK's folder",
    },
    input: {
      type: "string",
      short: "i",
      value: "DISK",
      description: "copy this image ([raw:|qcow2:]path) into the new one",
    },
    format: { type: "string", short: "f", value: "FORMAT", description: "raw or qcow2" },
  },
  run(positionals, flags) {
    return reportErrors(() => {
      const req = parseCreateArgs(positionals, flags);
      try {
        if (req.input !== undefined) {
          convert(req);
        } else {
          if (req.backing !== undefined) checkBase(req);
          createDiskImage(req.path, {
            format: req.format,
            sizeBytes: req.sizeMegabytes === undefined ? undefined : req.sizeMegabytes * MIB,
            backing: req.backing,
          });
        }
      } catch (e) {
        if (e instanceof DiskError) throw new ManagedError(e.message);
        throw e;
      }
      for (const w of req.warnings) console.error(`vmmctl: ${w}`);
      console.error(`vmmctl: ${req.format} imagefile created`);
      return Promise.resolve(0);
    });
  },
};
