/**
 * What each test guest must print on COM1 and how it must end, shared by the
 * QEMU oracle tests (guests_qemu_test.ts) and vmmctl's own machine tests.
 *
 * Serial output is compared line by line: the output split at CR LF (or LF)
 * must have exactly as many lines as `lines`, each equal to the string or
 * matching the RegExp.
 *
 * @example
 * ```ts
 * import { compareSerial, GUEST_EXPECTATIONS } from "./expectations.ts";
 * const hello = GUEST_EXPECTATIONS.find((e) => e.name === "hello")!;
 * const mismatch = compareSerial(hello.lines, "Hello from vmmctl guest\r\n");
 * // mismatch describes the first difference, or is undefined when all match
 * ```
 *
 * @module
 */

/** How a guest stops. */
export type GuestEnd =
  /** Wrote `value` to the debug-exit port 0xF4 (QEMU status `(value << 1) | 1`). */
  | { kind: "debug-exit"; value: number }
  /** Wrote SLP_EN (0x2000) to the PM1a control port 0x604 (QEMU status 0). */
  | { kind: "poweroff" }
  /** Made an exception undeliverable (QEMU with -no-reboot: status 0). */
  | { kind: "triple-fault" };

/** One run of one guest and what it must produce. */
export interface GuestExpectation {
  /** The image guests/bin/NAME.bin (see `guestPath` in images.ts). */
  name: string;
  /** Multiboot command line to pass, if any. */
  cmdline?: string;
  /** QEMU's exit status with `-machine pc` (see `GuestEnd`). */
  status: number;
  /** How the guest ends on a correct machine. */
  end: GuestEnd;
  /** The serial output, line by line, in full. */
  lines: readonly (string | RegExp)[];
}

/** QEMU's exit status after the guest wrote `value` to isa-debug-exit. */
export function debugExitStatus(value: number): number {
  return ((value << 1) | 1) & 0xff;
}

const LCG_MUL = 6364136223846793005n;
const LCG_INC = 1442695040888963407n;
const LCG_SEED = 1n;
const MASK_64 = (1n << 64n) - 1n;

/**
 * The cpl3 guest's LCG after `iterations` steps, x = x * 6364136223846793005
 * + 1442695040888963407 (mod 2^64) from x = 1, computed by composing the
 * affine step with itself (square and multiply) rather than looping.
 */
export function lcgAfter(iterations: bigint): bigint {
  if (iterations < 0n) throw new RangeError(`Cannot run the LCG "${iterations}" times`);
  // (mul, inc) describes x -> mul * x + inc; `power` is the step to the 2^k.
  let mul = 1n;
  let inc = 0n;
  let powerMul = LCG_MUL;
  let powerInc = LCG_INC;
  for (let n = iterations; n > 0n; n >>= 1n) {
    if (n & 1n) {
      mul = (powerMul * mul) & MASK_64;
      inc = (powerMul * inc + powerInc) & MASK_64;
    }
    powerInc = (powerMul * powerInc + powerInc) & MASK_64;
    powerMul = (powerMul * powerMul) & MASK_64;
  }
  return (mul * LCG_SEED + inc) & MASK_64;
}

function cpl3Lines(iterations: number): string[] {
  return [
    "cpl3 guest",
    "cpl=3",
    `iters=${iterations}`,
    `lcg=${lcgAfter(BigInt(iterations)).toString(16).padStart(16, "0")}`,
    "exit from ring 3",
  ];
}

function pioloopLines(count: number): string[] {
  return ["pioloop guest", `n=${count}`, "back in ring 0", "done"];
}

/**
 * What the smp guest prints with `cpus` processors: each AP comes up and
 * answers its ping in order, then the BSP's APIC timer and the I/O APIC.
 */
export function smpLines(cpus: number): string[] {
  const aps = Array.from({ length: cpus - 1 }, (_, i) => i + 1);
  return [
    "smp guest",
    `madt cpus=${cpus}`,
    "bsp apic id=0",
    ...aps.map((n) => `cpu ${n} up, apic id ${n}`),
    ...aps.map((n) => `cpu ${n} got ping`),
    `bsp got pongs=${cpus - 1}`,
    ...aps.map((n) => `cpu ${n} got nmi`),
    `bsp got nmi answers=${cpus - 1}`,
    `broadcast seen by=${cpus - 1}`,
    "lapic periodic ticks=10",
    "lapic one-shot fired, count=0",
    "ioapic pit ticks=10",
  ];
}

/** A date and time as the demo guest prints it: `RTC: YYYY-MM-DD HH:MM:SS`. */
export const RTC_LINE =
  /^RTC: (\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]) ([01]\d|2[0-3]):([0-5]\d):([0-5]\d)$/;

/** The debug-exit value the guests use for "unexpected CPU exception". */
export const EXIT_EXCEPTION = 0x7e;
/** The debug-exit value the guests use after printing "FAIL: ...". */
export const EXIT_CHECK_FAILED = 0x7b;

/**
 * Every guest run the oracle tests make. QEMU puts the kernel's path before
 * the command line in the multiboot info, so hello's cmdline line allows one
 * leading word.
 */
export const GUEST_EXPECTATIONS: readonly GuestExpectation[] = [
  {
    name: "hello",
    cmdline: "greeting=hi answer=42",
    status: debugExitStatus(0x10),
    end: { kind: "debug-exit", value: 0x10 },
    lines: ["Hello from vmmctl guest", /^cmdline: (\S+ )?greeting=hi answer=42$/, "bye"],
  },
  {
    name: "demo",
    status: 0,
    end: { kind: "poweroff" },
    lines: [
      "vmmctl demo guest: 10 timer ticks, the RTC, then power-off",
      "..........",
      RTC_LINE,
      "powering off",
    ],
  },
  {
    name: "timer",
    status: debugExitStatus(0x11),
    end: { kind: "debug-exit", value: 0x11 },
    lines: ["timer guest", "pit latch ok", "pit status=34", "pit ch2 ok", "ticks=50"],
  },
  {
    name: "rtc",
    status: debugExitStatus(0x12),
    end: { kind: "debug-exit", value: 0x12 },
    lines: [
      "rtc guest",
      "regA=26",
      "regB=02",
      "regD=80",
      "base=640",
      "time valid",
      "rtc-periodic=8",
      "regC=c0",
    ],
  },
  {
    name: "pci",
    status: debugExitStatus(0x13),
    end: { kind: "debug-exit", value: 0x13 },
    lines: [
      "pci guest",
      "00:00.0 8086:1237",
      "class=0600",
      "header-type=00",
      "absent=ffffffff",
      "pci ok",
    ],
  },
  {
    name: "serial",
    status: debugExitStatus(0x14),
    end: { kind: "debug-exit", value: 0x14 },
    lines: ["serial guest", "uart ok", "rep outsb ok"],
  },
  {
    name: "cpl3",
    status: debugExitStatus(0x15),
    end: { kind: "debug-exit", value: 0x15 },
    lines: cpl3Lines(10_000_000),
  },
  {
    name: "cpl3",
    cmdline: "iters=12345",
    status: debugExitStatus(0x15),
    end: { kind: "debug-exit", value: 0x15 },
    lines: cpl3Lines(12345),
  },
  {
    name: "triple",
    status: 0,
    end: { kind: "triple-fault" },
    lines: ["about to triple fault"],
  },
  {
    name: "pioloop",
    status: debugExitStatus(0x16),
    end: { kind: "debug-exit", value: 0x16 },
    lines: pioloopLines(100_000),
  },
  {
    name: "pioloop",
    cmdline: "n=1000",
    status: debugExitStatus(0x16),
    end: { kind: "debug-exit", value: 0x16 },
    lines: pioloopLines(1000),
  },
  {
    // One CPU here; tests/smp_guests_test.ts runs it with 2 and 4 (QEMU -smp N beside).
    name: "smp",
    status: debugExitStatus(0x31),
    end: { kind: "debug-exit", value: 0x31 },
    lines: smpLines(1),
  },
];

/** Splits serial output into lines at LF, dropping CRs before it and a final empty line. */
export function serialLines(serial: string): string[] {
  const lines = serial.split("\n").map((line) => line.replace(/\r$/, ""));
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/**
 * Compares serial output with expected lines. Returns undefined when every
 * line matches and the counts agree, else a sentence naming the first
 * difference.
 */
export function compareSerial(
  expected: readonly (string | RegExp)[],
  serial: string,
): string | undefined {
  const actual = serialLines(serial);
  const show = (want: string | RegExp) => typeof want === "string" ? `"${want}"` : String(want);
  for (let i = 0; i < Math.max(expected.length, actual.length); i++) {
    const want = expected[i];
    const got = actual[i];
    if (want === undefined) return `Line ${i + 1} "${got}" is extra`;
    if (got === undefined) return `Line ${i + 1} is missing: expected ${show(want)}`;
    const ok = typeof want === "string" ? got === want : want.test(got);
    if (!ok) return `Line ${i + 1} is "${got}": expected ${show(want)}`;
  }
  return undefined;
}

/** A readable name for one expectation: "hello" or "cpl3 iters=12345". */
export function expectationLabel(expectation: GuestExpectation): string {
  return expectation.cmdline === undefined
    ? expectation.name
    : `${expectation.name} ${expectation.cmdline}`;
}

/** A virtio guest run: like {@link GuestExpectation}, with a label (one guest runs in several modes). */
export interface VirtioGuestExpectation extends GuestExpectation {
  label: string;
}

function virtioBlkLines(mode: "legacy" | "modern"): string[] {
  return [
    "virtio-blk guest",
    `interface=${mode}`,
    "capacity=128",
    "sector0=host sector zero",
    "write status=00",
    "flush status=00",
    "readback ok",
    "past-end status=01",
    "unknown status=02",
    "id=vmmctl-0",
    "isr=01 then 00",
    "virtio-blk ok",
  ];
}

/**
 * The virtio guests (tests/virtio_guests_test.ts runs them with a 128-sector
 * raw disk whose sector 0 starts with "host sector zero"). They need
 * vmmctl's virtio devices, so they are not in GUEST_EXPECTATIONS (QEMU's pc
 * machine and the plain KVM runs have no such disk).
 */
export const VIRTIO_GUEST_EXPECTATIONS: readonly VirtioGuestExpectation[] = [
  {
    label: "virtio_blk legacy",
    name: "virtio_blk",
    status: debugExitStatus(0x20),
    end: { kind: "debug-exit", value: 0x20 },
    lines: virtioBlkLines("legacy"),
  },
  {
    label: "virtio_blk modern",
    name: "virtio_blk",
    cmdline: "modern=1",
    status: debugExitStatus(0x20),
    end: { kind: "debug-exit", value: 0x20 },
    lines: virtioBlkLines("modern"),
  },
];

/** What the msix guest prints (tests/msix_guest_test.ts; a disk with "host sector zero"). */
export const MSIX_LINES: readonly string[] = [
  "msix guest",
  "msix table size=2",
  "queue 0 vector=1",
  "vector 9 reads ffff",
  "host sector zero",
  "msix interrupts=1",
  "masked: interrupts=1 pba=2",
  "unmasked: interrupts=2 pba=0",
];

/** What virtio_hostile prints (tests/virtio_guests_test.ts, same disk as virtio_blk). */
export const VIRTIO_HOSTILE_EXPECTATION: VirtioGuestExpectation = {
  label: "virtio_hostile",
  name: "virtio_hostile",
  status: debugExitStatus(0x21),
  end: { kind: "debug-exit", value: 0x21 },
  lines: [
    "virtio hostile guest",
    "loop: needs-reset",
    "head out of range: needs-reset",
    "next out of range: needs-reset",
    "buffer outside RAM: needs-reset",
    "avail index jump: needs-reset",
    "nested indirect: needs-reset",
    "indirect length 24: needs-reset",
    "pfn after DRIVER_OK: ignored",
    "read after pfn write: status=00",
    "short header: used=0 status=07",
    "no status byte: used=0 status=07",
    "unknown type: status=02",
    "notify queue 9 status=07",
    "final read: host sector zero",
    "hostile ok",
  ],
};

/** What virtio_net prints with lladdr fe:e1:ba:d0:00:02 and a namespace answering at 10.77.0.1. */
export const VIRTIO_NET_EXPECTATION: VirtioGuestExpectation = {
  label: "virtio_net",
  name: "virtio_net",
  status: debugExitStatus(0x22),
  end: { kind: "debug-exit", value: 0x22 },
  lines: ["virtio-net guest", "mac=fe:e1:ba:d0:00:02", "arp reply from 10.77.0.1", "virtio-net ok"],
};
