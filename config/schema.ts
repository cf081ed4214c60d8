/**
 * The VM config format: the normalized {@link VmConfig} every other part of
 * vmmctl consumes, the limits the validator enforces, and the table of known
 * sections and keys (with defaults) that drives unknown-key suggestions and
 * the documentation of the format.
 *
 * @example
 * ```ts
 * import { SECTIONS } from "./schema.ts";
 * SECTIONS.vm.keys.vcpus.default; // 1
 * ```
 * @module
 */

import type { DisplaySettings } from "../display/listen.ts";

/** Which hypervisor back-end runs the VM; `openbsd-on-kvm` is the vmm(4) fixture for tests. */
export type AccelName = "auto" | "kvm" | "openbsd" | "openbsd-on-kvm";

/** Where the interrupt controllers live: emulated by us, or in the hypervisor. */
export type IrqchipName = "user" | "kernel";

/** Disk image formats; `auto` means detect from the image's header later. */
export type DiskFormat = "auto" | "raw" | "qcow2";

/** What a BIOS boot tries first. */
export type BootDevice = "disk" | "cdrom";

/** What a BIOS VM does when nothing boots. */
export type BootOnFail = "wait" | "end";

/** `boot.on_fail` values. */
export const BOOT_ON_FAIL: readonly BootOnFail[] = ["wait", "end"];

/** Boot device names in the order error messages list them. */
export const BOOT_DEVICES: readonly BootDevice[] = ["disk", "cdrom"];

/** Serial console back-ends; `file` writes to `console.path`. */
export type SerialKind = "stdio" | "pty" | "none" | "file";

/** One virtual disk. */
export interface DiskConfig {
  /** Absolute path of the image. */
  path: string;
  format: DiskFormat;
  readonly: boolean;
  /** Device name for binding unikernel manifest devices. */
  name?: string;
}

/** One virtual network interface. */
export interface InterfaceConfig {
  /** An existing tap device name, or `"auto"` to create/pick one. */
  tap: string;
  /** MAC address, lower-case `xx:xx:xx:xx:xx:xx`, unicast. */
  lladdr?: string;
  /** Device name for binding unikernel manifest devices. */
  name?: string;
}

/** A validated, normalized VM configuration; every path is absolute. */
export interface VmConfig {
  vm: {
    name: string;
    memoryBytes: number;
    vcpus: number;
    accel: AccelName;
    irqchip: IrqchipName;
    /** Who may control the VM besides root. */
    owner?: { user: string; group?: string };
    /** The unprivileged user the VM process becomes after set-up (default `_vmmctl`). */
    user?: string;
  };
  /**
   * `kernel` set: it is loaded directly. Unset: the VM boots through the BIOS
   * (`bios`, or SeaBIOS found at run time) from its first disk.
   */
  boot: {
    kernel?: string;
    initrd?: string;
    cmdline: string;
    bios?: string;
    /** What the BIOS boots first (bootorder); unset: the first disk. */
    device?: BootDevice;
    /** When the BIOS finds nothing to boot: wait (like vmd; default) or end the VM. */
    onFail?: BootOnFail;
  };
  /** A read-only CD-ROM (ISO 9660 image) on virtio-scsi. */
  cdrom?: { path: string };
  disks: DiskConfig[];
  interfaces: InterfaceConfig[];
  /** `path` is set exactly when `serial` is `"file"`. */
  console: { serial: SerialKind; path?: string };
  /** `lockdown: false` keeps the VM process privileged (debugging only). */
  debug: { exitPort?: number; lockdown?: false };
  /** The graphical console; absent for a serial-only VM. */
  display?: DisplaySettings;
  /** Absolute path of the config file, when it came from one. */
  source?: string;
}

/** Accelerator names in the order error messages list them. */
export const ACCEL_NAMES: readonly AccelName[] = ["auto", "kvm", "openbsd", "openbsd-on-kvm"];
/** Interrupt controller placements. */
export const IRQCHIP_NAMES: readonly IrqchipName[] = ["user", "kernel"];
/** Disk formats. */
export const DISK_FORMATS: readonly DiskFormat[] = ["auto", "raw", "qcow2"];
/** Serial console values as the user writes them. */
export const SERIAL_VALUES: readonly string[] = ["stdio", "pty", "none", "file:PATH"];

/** Longest VM name. */
export const MAX_VM_NAME_LENGTH = 64;
/** Longest disk or interface name. */
export const MAX_DEVICE_NAME_LENGTH = 64;
/** Longest tap device name (Linux IFNAMSIZ - 1; OpenBSD's limit is the same). */
export const MAX_TAP_NAME_LENGTH = 15;
/** vCPU count range (vmm(4)'s VMM_MAX_VCPUS_PER_VM is 64). */
export const MIN_VCPUS = 1;
/** vCPU count range (vmm(4)'s VMM_MAX_VCPUS_PER_VM is 64). */
export const MAX_VCPUS = 64;
/** Smallest guest RAM. */
export const MIN_MEMORY_BYTES = 1024 ** 2;
/** Largest guest RAM under KVM (a sanity limit). */
export const MAX_MEMORY_BYTES = 1024 ** 4;
/** Largest guest RAM under vmm(4): VMM_MAX_VM_MEM_SIZE. */
export const MAX_MEMORY_BYTES_OPENBSD = 128 * 1024 ** 3;
/** Guest RAM is mapped in whole pages. */
export const MEMORY_ALIGN_BYTES = 4096;
/** Most `[[disk]]` entries. */
export const MAX_DISKS = 16;
/** Most `[[interface]]` entries. */
export const MAX_INTERFACES = 16;
/** Highest I/O port number. */
export const MAX_IO_PORT = 0xffff;

/** What a key holds, for documentation and `vmmctl check` output. */
export type KeyType = "string" | "integer" | "boolean" | "size" | "path";

/** One known key of a section. */
export interface KeySpec {
  type: KeyType;
  /** The key must be present. */
  required?: boolean;
  /** The value used when the key is absent, as the user would write it. */
  default?: string | number | boolean;
  /** One-line description. */
  doc: string;
}

/** One known top-level section. */
export interface SectionSpec {
  /** `table` for `[vm]`, `array` for `[[disk]]`. */
  kind: "table" | "array";
  /** Most entries, for `array` sections. */
  maxEntries?: number;
  doc: string;
  /** Known keys in the order they are documented, validated and printed. */
  keys: Record<string, KeySpec>;
}

/** Known sections and keys, in schema order (the order of normalized output). */
export const SECTIONS = {
  vm: {
    kind: "table",
    doc: "The machine itself.",
    keys: {
      name: {
        type: "string",
        required: true,
        doc: 'Letters, digits, "-", "_", "."; starts with a letter or digit; at most 64.',
      },
      memory: {
        type: "size",
        default: "256M",
        doc: "Guest RAM: bytes, or a string with a K/M/G/T suffix (binary units).",
      },
      vcpus: { type: "integer", default: 1, doc: "Number of vCPUs, 1..64." },
      accel: { type: "string", default: "auto", doc: "auto | kvm | openbsd | openbsd-on-kvm." },
      irqchip: { type: "string", default: "user", doc: "user | kernel." },
      owner: { type: "string", doc: 'Optional "user" or "user:group" allowed to control the VM.' },
      user: {
        type: "string",
        doc: 'User the VM process runs as once set up (root only; default "_vmmctl").',
      },
    },
  },
  boot: {
    kind: "table",
    doc: "What to boot.",
    keys: {
      kernel: {
        type: "path",
        doc:
          "Kernel image (bzImage, ELF or Multiboot v1); without it the VM boots through the BIOS.",
      },
      initrd: { type: "path", doc: "Optional initial ramdisk." },
      cmdline: { type: "string", default: "", doc: "Kernel command line." },
      bios: {
        type: "path",
        doc: "BIOS firmware for a VM without a kernel (default: SeaBIOS, found at run time).",
      },
      device: {
        type: "string",
        doc: 'What the BIOS boots first: "disk" (the first [[disk]], default) or "cdrom".',
      },
      on_fail: {
        type: "string",
        doc: 'When the BIOS finds nothing to boot: "wait" (stay up, like vmd; default) or "end".',
      },
    },
  },
  disk: {
    kind: "array",
    maxEntries: MAX_DISKS,
    doc: "Zero or more disks, [[disk]] each.",
    keys: {
      path: { type: "path", required: true, doc: "Disk image." },
      format: { type: "string", default: "auto", doc: "auto | raw | qcow2." },
      readonly: { type: "boolean", default: false, doc: "Attach read-only." },
      name: { type: "string", doc: 'Optional device name: letters, digits, "_", "-".' },
    },
  },
  cdrom: {
    kind: "table",
    doc: 'A read-only CD-ROM image on virtio-scsi (a BIOS boots it with boot.device = "cdrom").',
    keys: {
      path: { type: "path", required: true, doc: "ISO 9660 image." },
    },
  },
  interface: {
    kind: "array",
    maxEntries: MAX_INTERFACES,
    doc: "Zero or more network interfaces, [[interface]] each.",
    keys: {
      tap: { type: "string", default: "auto", doc: 'Existing tap device name, or "auto".' },
      lladdr: { type: "string", doc: "Optional unicast MAC address, six hex pairs." },
      name: { type: "string", doc: 'Optional device name: letters, digits, "_", "-".' },
    },
  },
  console: {
    kind: "table",
    doc: "The serial console.",
    keys: {
      serial: { type: "string", default: "stdio", doc: "stdio | pty | none | file:PATH." },
    },
  },
  display: {
    kind: "table",
    doc: "The graphical console (off unless type is set).",
    keys: {
      type: { type: "string", default: "none", doc: "none | vga (a standard VGA with VBE)." },
      vnc: { type: "string", doc: 'VNC server address: "127.0.0.1:5900" or a socket path.' },
      web: { type: "string", doc: 'Web console address: "127.0.0.1:8080" or a socket path.' },
      password: { type: "string", doc: "Password for VNC and the web page (needed off loopback)." },
      serial: {
        type: "boolean",
        default: false,
        doc: "The BIOS writes to the serial console too (it uses only the screen otherwise).",
      },
    },
  },
  debug: {
    kind: "table",
    doc: "Testing aids.",
    keys: {
      exit_port: {
        type: "integer",
        doc: "I/O port; writing v ends the VM with exit status (v << 1) | 1.",
      },
      lockdown: {
        type: "boolean",
        default: true,
        doc: "false: the VM process keeps its privileges (no uid drop, no seccomp; debugging).",
      },
    },
  },
} as const satisfies Record<string, SectionSpec>;

/** Names of the known sections. */
export type SectionName = keyof typeof SECTIONS;

/** Known section names in schema order. */
export const SECTION_NAMES: readonly SectionName[] = Object.keys(SECTIONS) as SectionName[];

/**
 * Names people commonly write for a known section, mapped to it, so that an
 * unknown section gets a useful suggestion even when it is not a near-miss.
 */
export const SECTION_ALIASES: Readonly<Record<string, SectionName>> = {
  disks: "disk",
  drive: "disk",
  interfaces: "interface",
  net: "interface",
  network: "interface",
  nic: "interface",
  serial: "console",
};

/** Like {@link SECTION_ALIASES}, for keys: section -> common other name -> known key. */
export const KEY_ALIASES: Readonly<Record<SectionName, Readonly<Record<string, string>>>> = {
  vm: { mem: "memory", ram: "memory", cpus: "vcpus", ncpus: "vcpus", smp: "vcpus", uid: "user" },
  boot: {
    append: "cmdline",
    command_line: "cmdline",
    ramdisk: "initrd",
    bzimage: "kernel",
    firmware: "bios",
  },
  disk: { file: "path", image: "path", ro: "readonly", read_only: "readonly" },
  cdrom: { file: "path", iso: "path", image: "path" },
  interface: { mac: "lladdr", macaddr: "lladdr", hwaddr: "lladdr", ifname: "tap" },
  console: { console: "serial", output: "serial" },
  display: { vga: "type", vnc_listen: "vnc", http: "web" },
  debug: { exit: "exit_port", isa_debug_exit: "exit_port" },
};
