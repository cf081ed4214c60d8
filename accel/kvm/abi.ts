/**
 * The Linux KVM x86-64 userspace ABI as data: ioctl requests (computed with
 * the Linux `_IO*` encoders from the struct sizes), struct layouts as field
 * tables, and the constants the back-end uses. Names follow
 * `<linux/kvm.h>` / `<asm/kvm.h>` exactly so that `abi_test.ts` can have the
 * C compiler print every offset, size and number and compare: constants and
 * requests under their macro names, layouts under their C struct names
 * (`kvm_run` is `struct kvm_run`).
 *
 * C anonymous unions (the exit union of `struct kvm_run`, ...) are flattened:
 * their members are fields of the enclosing layout, as in C
 * (`kvm_run.offsetOf("io.port")`).
 *
 * @example
 * ```ts
 * import { KVM_EXIT_IO, kvmExitName, kvm_run, KVM_RUN } from "./abi.ts";
 * kvm_run.offsetOf("exit_reason"); // 8
 * kvm_run.offsetOf("io.port"); // 34
 * kvmExitName(KVM_EXIT_IO); // "KVM_EXIT_IO"
 * KVM_RUN.value; // 0xae80
 * ```
 * @module
 */

import { linuxIo, linuxIor, linuxIow, linuxIowr } from "../../ffi/ioctl.ts";
import type { IoctlRequest } from "../../ffi/libc.ts";
import {
  array,
  defineStruct,
  defineUnion,
  fields,
  type FieldType,
  liftAnonymous,
  pad,
  sizeOf,
} from "../../ffi/struct.ts";

const u64s = <const N extends readonly string[]>(names: N) => fields(names, "u64");
const u8s = <const N extends readonly string[]>(names: N) => fields(names, "u8");

// ---------------------------------------------------------------------------
// Struct layouts

/** `struct kvm_userspace_memory_region` (KVM_SET_USER_MEMORY_REGION). */
export const kvm_userspace_memory_region = defineStruct(
  "kvm_userspace_memory_region",
  [
    ["slot", "u32"],
    ["flags", "u32"],
    ["guest_phys_addr", "u64"],
    ["memory_size", "u64"],
    ["userspace_addr", "u64"],
  ],
);

/** `struct kvm_regs`: general-purpose registers, RIP, RFLAGS (KVM_GET_REGS/SET_REGS). */
export const kvm_regs = defineStruct(
  "kvm_regs",
  u64s([
    "rax",
    "rbx",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "rsp",
    "rbp",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
    "rip",
    "rflags",
  ]),
);

/** `struct kvm_segment`: a segment register with its descriptor bits unpacked. */
export const kvm_segment = defineStruct("kvm_segment", [
  ["base", "u64"],
  ["limit", "u32"],
  ["selector", "u16"],
  ["type", "u8"],
  ...u8s(["present", "dpl", "db", "s", "l", "g", "avl", "unusable", "padding"]),
]);

/** `struct kvm_dtable`: GDTR / IDTR. */
export const kvm_dtable = defineStruct("kvm_dtable", [
  ["base", "u64"],
  ["limit", "u16"],
  ["padding", array("u16", 3)],
]);

/** KVM_NR_INTERRUPTS: vectors covered by `kvm_sregs.interrupt_bitmap`. */
export const KVM_NR_INTERRUPTS = 256;

/** `struct kvm_sregs` (KVM_GET_SREGS/SET_SREGS). */
export const kvm_sregs = defineStruct("kvm_sregs", [
  ...fields(["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"], kvm_segment),
  ["gdt", kvm_dtable],
  ["idt", kvm_dtable],
  ...u64s(["cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base"]),
  ["interrupt_bitmap", array("u64", Math.floor((KVM_NR_INTERRUPTS + 63) / 64))],
]);

/** `struct kvm_fpu`: x87/SSE state in FXSAVE form (KVM_GET_FPU/SET_FPU). */
export const kvm_fpu = defineStruct("kvm_fpu", [
  ["fpr", array(array("u8", 16), 8)],
  ["fcw", "u16"],
  ["fsw", "u16"],
  ["ftwx", "u8"],
  ["pad1", "u8"],
  ["last_opcode", "u16"],
  ["last_ip", "u64"],
  ["last_dp", "u64"],
  ["xmm", array(array("u8", 16), 16)],
  ["mxcsr", "u32"],
  ["pad2", "u32"],
]);

/** `struct kvm_msr_entry`: one MSR of a `kvm_msrs` list. */
export const kvm_msr_entry = defineStruct("kvm_msr_entry", [
  ["index", "u32"],
  ["reserved", "u32"],
  ["data", "u64"],
]);

/**
 * `struct kvm_msrs` header; `nmsrs` {@link kvm_msr_entry} entries follow in the
 * flexible array `entries` (at offset `size`).
 */
export const kvm_msrs = defineStruct("kvm_msrs", [
  ["nmsrs", "u32"],
  ["pad", "u32"],
  ["entries", array(kvm_msr_entry, 0)],
]);

/** `struct kvm_msr_list` (KVM_GET_MSR_INDEX_LIST); `nmsrs` u32 follow in `indices`. */
export const kvm_msr_list = defineStruct("kvm_msr_list", [
  ["nmsrs", "u32"],
  ["indices", array("u32", 0)],
]);

/** `struct kvm_cpuid_entry2`: one CPUID leaf/subleaf. */
export const kvm_cpuid_entry2 = defineStruct("kvm_cpuid_entry2", [
  ["function", "u32"],
  ["index", "u32"],
  ["flags", "u32"],
  ["eax", "u32"],
  ["ebx", "u32"],
  ["ecx", "u32"],
  ["edx", "u32"],
  ["padding", array("u32", 3)],
]);

/**
 * `struct kvm_cpuid2` header; `nent` {@link kvm_cpuid_entry2} entries follow in
 * the flexible array `entries` (at offset `size`).
 */
export const kvm_cpuid2 = defineStruct("kvm_cpuid2", [
  ["nent", "u32"],
  ["padding", "u32"],
  ["entries", array(kvm_cpuid_entry2, 0)],
]);

/** `struct kvm_interrupt` (KVM_INTERRUPT: inject a vector without an in-kernel irqchip). */
export const kvm_interrupt = defineStruct("kvm_interrupt", [["irq", "u32"]]);

/** `struct kvm_irq_level` (KVM_IRQ_LINE); `irq` and `status` share their bytes. */
export const kvm_irq_level = liftAnonymous(
  defineStruct("kvm_irq_level", [
    ["", defineUnion("kvm_irq_level.irq_status", [["irq", "u32"], ["status", "i32"]])],
    ["level", "u32"],
  ]),
  "",
);

/** `struct kvm_pic_state`: one in-kernel 8259A (KVM_GET/SET_IRQCHIP, chip 0 and 1). */
export const kvm_pic_state = defineStruct(
  "kvm_pic_state",
  u8s([
    "last_irr",
    "irr",
    "imr",
    "isr",
    "priority_add",
    "irq_base",
    "read_reg_select",
    "poll",
    "special_mask",
    "init_state",
    "auto_eoi",
    "rotate_on_auto_eoi",
    "special_fully_nested_mode",
    "init4",
    "elcr",
    "elcr_mask",
  ]),
);

/** `struct kvm_ioapic_state` (the 24 redirection entries, unions in C, as opaque padding). */
export const kvm_ioapic_state = defineStruct("kvm_ioapic_state", [
  ["base_address", "u64"],
  ["ioregsel", "u32"],
  ["id", "u32"],
  ["irr", "u32"],
  ["pad", "u32"],
  ["redirtbl", pad(24 * 8)],
]);

/** `struct kvm_irqchip`: `chip_id` 0 = master PIC, 1 = slave PIC, 2 = IOAPIC. */
export const kvm_irqchip = defineStruct("kvm_irqchip", [
  ["chip_id", "u32"],
  ["pad", "u32"],
  [
    "chip",
    defineUnion("kvm_irqchip.chip", [
      ["dummy", array("u8", 512)],
      ["pic", kvm_pic_state],
      ["ioapic", kvm_ioapic_state],
    ]),
  ],
]);

/** `struct kvm_pit_config` (KVM_CREATE_PIT2). */
export const kvm_pit_config = defineStruct("kvm_pit_config", [
  ["flags", "u32"],
  ["pad", array("u32", 15)],
]);

/** `struct kvm_vcpu_events`: pending exception/interrupt/NMI/SMI state. */
export const kvm_vcpu_events = defineStruct("kvm_vcpu_events", [
  [
    "exception",
    defineStruct("kvm_vcpu_events.exception", [
      ...u8s(["injected", "nr", "has_error_code", "pending"]),
      ["error_code", "u32"],
    ]),
  ],
  [
    "interrupt",
    defineStruct("kvm_vcpu_events.interrupt", u8s(["injected", "nr", "soft", "shadow"])),
  ],
  ["nmi", defineStruct("kvm_vcpu_events.nmi", u8s(["injected", "pending", "masked", "pad"]))],
  ["sipi_vector", "u32"],
  ["flags", "u32"],
  [
    "smi",
    defineStruct(
      "kvm_vcpu_events.smi",
      u8s(["smm", "pending", "smm_inside_nmi", "latched_init"]),
    ),
  ],
  ["triple_fault", defineStruct("kvm_vcpu_events.triple_fault", u8s(["pending"]))],
  ["reserved", array("u8", 26)],
  ["exception_has_payload", "u8"],
  ["exception_payload", "u64"],
]);

/** `struct kvm_guest_debug_arch`: DR0-DR7. */
export const kvm_guest_debug_arch = defineStruct("kvm_guest_debug_arch", [
  ["debugreg", array("u64", 8)],
]);

/** `struct kvm_guest_debug` (KVM_SET_GUEST_DEBUG). */
export const kvm_guest_debug = defineStruct("kvm_guest_debug", [
  ["control", "u32"],
  ["pad", "u32"],
  ["arch", kvm_guest_debug_arch],
]);

/** `struct kvm_debug_exit_arch`: the `debug` member of the exit union. */
export const kvm_debug_exit_arch = defineStruct("kvm_debug_exit_arch", [
  ["exception", "u32"],
  ["pad", "u32"],
  ["pc", "u64"],
  ["dr6", "u64"],
  ["dr7", "u64"],
]);

/** `struct kvm_clock_data` (KVM_GET_CLOCK/SET_CLOCK). */
export const kvm_clock_data = defineStruct("kvm_clock_data", [
  ["clock", "u64"],
  ["flags", "u32"],
  ["pad0", "u32"],
  ["realtime", "u64"],
  ["host_tsc", "u64"],
  ["pad", array("u32", 4)],
]);

/** KVM_APIC_REG_SIZE: bytes of the local APIC register page image. */
export const KVM_APIC_REG_SIZE = 0x400;

/** `struct kvm_lapic_state` (KVM_GET_LAPIC/SET_LAPIC); `regs` is `char[]` in C. */
export const kvm_lapic_state = defineStruct("kvm_lapic_state", [
  ["regs", array("u8", KVM_APIC_REG_SIZE)],
]);

/** `struct kvm_msi` (KVM_SIGNAL_MSI). */
export const kvm_msi = defineStruct("kvm_msi", [
  ["address_lo", "u32"],
  ["address_hi", "u32"],
  ["data", "u32"],
  ["flags", "u32"],
  ["devid", "u32"],
  ["pad", array("u8", 12)],
]);

/** `struct kvm_irqfd` (KVM_IRQFD). */
export const kvm_irqfd = defineStruct("kvm_irqfd", [
  ["fd", "u32"],
  ["gsi", "u32"],
  ["flags", "u32"],
  ["resamplefd", "u32"],
  ["pad", array("u8", 16)],
]);

/** `struct kvm_ioeventfd` (KVM_IOEVENTFD). */
export const kvm_ioeventfd = defineStruct("kvm_ioeventfd", [
  ["datamatch", "u64"],
  ["addr", "u64"],
  ["len", "u32"],
  ["fd", "i32"],
  ["flags", "u32"],
  ["pad", array("u8", 36)],
]);

/** `struct kvm_irq_routing_irqchip`. */
export const kvm_irq_routing_irqchip = defineStruct("kvm_irq_routing_irqchip", [
  ["irqchip", "u32"],
  ["pin", "u32"],
]);

/** `struct kvm_irq_routing_msi`; `pad` and `devid` share their bytes. */
export const kvm_irq_routing_msi = liftAnonymous(
  defineStruct("kvm_irq_routing_msi", [
    ["address_lo", "u32"],
    ["address_hi", "u32"],
    ["data", "u32"],
    ["", defineUnion("kvm_irq_routing_msi.pad_devid", [["pad", "u32"], ["devid", "u32"]])],
  ]),
  "",
);

/** `struct kvm_irq_routing_entry`: one GSI route (the union `u` holds the route). */
export const kvm_irq_routing_entry = defineStruct("kvm_irq_routing_entry", [
  ["gsi", "u32"],
  ["type", "u32"],
  ["flags", "u32"],
  ["pad", "u32"],
  [
    "u",
    defineUnion("kvm_irq_routing_entry.u", [
      ["irqchip", kvm_irq_routing_irqchip],
      ["msi", kvm_irq_routing_msi],
      // s390 only, but its u64 members give the union (and entry) 8-byte alignment.
      [
        "adapter",
        defineStruct("kvm_irq_routing_s390_adapter", [
          ["ind_addr", "u64"],
          ["summary_addr", "u64"],
          ["ind_offset", "u64"],
          ["summary_offset", "u32"],
          ["adapter_id", "u32"],
        ]),
      ],
      ["pad", array("u32", 8)],
    ]),
  ],
]);

/**
 * `struct kvm_irq_routing` header; `nr` {@link kvm_irq_routing_entry} entries
 * follow in the flexible array `entries` (at offset `size`).
 */
export const kvm_irq_routing = defineStruct("kvm_irq_routing", [
  ["nr", "u32"],
  ["flags", "u32"],
  ["entries", array(kvm_irq_routing_entry, 0)],
]);

/** `struct kvm_enable_cap` (KVM_ENABLE_CAP). */
export const kvm_enable_cap = defineStruct("kvm_enable_cap", [
  ["cap", "u32"],
  ["flags", "u32"],
  ["args", array("u64", 4)],
  ["pad", array("u8", 64)],
]);

/** `struct kvm_mp_state` (KVM_GET_MP_STATE/SET_MP_STATE). */
export const kvm_mp_state = defineStruct("kvm_mp_state", [["mp_state", "u32"]]);

/** `struct kvm_translation` (KVM_TRANSLATE: guest linear -> physical address). */
export const kvm_translation = defineStruct("kvm_translation", [
  ["linear_address", "u64"],
  ["physical_address", "u64"],
  ["valid", "u8"],
  ["writeable", "u8"],
  ["usermode", "u8"],
  ["pad", array("u8", 5)],
]);

/** `struct kvm_sync_regs`: registers shared through `kvm_run.s.regs` (KVM_CAP_SYNC_REGS). */
export const kvm_sync_regs = defineStruct("kvm_sync_regs", [
  ["regs", kvm_regs],
  ["sregs", kvm_sregs],
  ["events", kvm_vcpu_events],
]);

/** SYNC_REGS_SIZE_BYTES: the fixed size of `kvm_run.s`. */
const SYNC_REGS_SIZE_BYTES = 2048;

// The members of kvm_run's anonymous exit union that an x86 VMM reads.
const kvmRunExit = defineUnion("kvm_run.exit", [
  ["hw", defineStruct("kvm_run.hw", [["hardware_exit_reason", "u64"]])],
  [
    "fail_entry",
    defineStruct("kvm_run.fail_entry", [["hardware_entry_failure_reason", "u64"], ["cpu", "u32"]]),
  ],
  ["ex", defineStruct("kvm_run.ex", [["exception", "u32"], ["error_code", "u32"]])],
  [
    "io",
    defineStruct("kvm_run.io", [
      ["direction", "u8"],
      ["size", "u8"],
      ["port", "u16"],
      ["count", "u32"],
      ["data_offset", "u64"],
    ]),
  ],
  ["debug", defineStruct("kvm_run.debug", [["arch", kvm_debug_exit_arch]])],
  [
    "mmio",
    defineStruct("kvm_run.mmio", [
      ["phys_addr", "u64"],
      ["data", array("u8", 8)],
      ["len", "u32"],
      ["is_write", "u8"],
    ]),
  ],
  [
    "hypercall",
    defineStruct("kvm_run.hypercall", [
      ["nr", "u64"],
      ["args", array("u64", 6)],
      ["ret", "u64"],
      ["longmode", "u32"],
      ["pad", "u32"],
    ]),
  ],
  [
    "internal",
    defineStruct("kvm_run.internal", [
      ["suberror", "u32"],
      ["ndata", "u32"],
      ["data", array("u64", 16)],
    ]),
  ],
  [
    "emulation_failure",
    liftAnonymous(
      defineStruct("kvm_run.emulation_failure", [
        ["suberror", "u32"],
        ["ndata", "u32"],
        ["flags", "u64"],
        [
          "",
          defineStruct("kvm_run.emulation_failure.insn", [
            ["insn_size", "u8"],
            ["insn_bytes", array("u8", 15)],
          ]),
        ],
      ]),
      "",
    ),
  ],
  [
    "system_event",
    liftAnonymous(
      defineStruct("kvm_run.system_event", [
        ["type", "u32"],
        ["ndata", "u32"],
        [
          "",
          defineUnion("kvm_run.system_event.data", [["flags", "u64"], ["data", array("u64", 16)]]),
        ],
      ]),
      "",
    ),
  ],
  [
    "msr",
    defineStruct("kvm_run.msr", [
      ["error", "u8"],
      ["pad", array("u8", 7)],
      ["reason", "u32"],
      ["index", "u32"],
      ["data", "u64"],
    ]),
  ],
  ["padding", array("u8", 256)],
]);

/**
 * `struct kvm_run`, the page shared with the kernel through mmap of the vCPU
 * fd (x86-64): the fixed header, the exit union at offset 32 (`io`, `mmio`,
 * `fail_entry`, `internal`, `emulation_failure`, `system_event`,
 * `hypercall`, ... as direct fields), then `kvm_valid_regs`,
 * `kvm_dirty_regs` and `s.regs` (a {@link kvm_sync_regs}).
 */
export const kvm_run = liftAnonymous(
  defineStruct("kvm_run", [
    ["request_interrupt_window", "u8"],
    ["immediate_exit", "u8"],
    ["padding1", array("u8", 6)],
    ["exit_reason", "u32"],
    ["ready_for_interrupt_injection", "u8"],
    ["if_flag", "u8"],
    ["flags", "u16"],
    ["cr8", "u64"],
    ["apic_base", "u64"],
    ["", kvmRunExit],
    ["kvm_valid_regs", "u64"],
    ["kvm_dirty_regs", "u64"],
    [
      "s",
      defineUnion("kvm_run.s", [
        ["regs", kvm_sync_regs],
        ["padding", array("u8", SYNC_REGS_SIZE_BYTES)],
      ]),
    ],
  ]),
  "",
);

/**
 * Where the fields a VMM touches on every exit sit in the kvm_run page: the
 * one offset table for the back-end, the vmm(4)-on-KVM emulation and the
 * benches (computed once from {@link kvm_run}, so reads are plain DataView
 * accesses at constant offsets).
 */
export const KVM_RUN_AT = Object.freeze({
  requestInterruptWindow: kvm_run.offsetOf("request_interrupt_window"),
  immediateExit: kvm_run.offsetOf("immediate_exit"),
  exitReason: kvm_run.offsetOf("exit_reason"),
  readyForInterruptInjection: kvm_run.offsetOf("ready_for_interrupt_injection"),
  ifFlag: kvm_run.offsetOf("if_flag"),
  ioDirection: kvm_run.offsetOf("io.direction"),
  ioSize: kvm_run.offsetOf("io.size"),
  ioPort: kvm_run.offsetOf("io.port"),
  ioCount: kvm_run.offsetOf("io.count"),
  ioDataOffset: kvm_run.offsetOf("io.data_offset"),
  mmioPhysAddr: kvm_run.offsetOf("mmio.phys_addr"),
  mmioData: kvm_run.offsetOf("mmio.data"),
  mmioLen: kvm_run.offsetOf("mmio.len"),
  mmioIsWrite: kvm_run.offsetOf("mmio.is_write"),
  internalSuberror: kvm_run.offsetOf("internal.suberror"),
  failEntryReason: kvm_run.offsetOf("fail_entry.hardware_entry_failure_reason"),
  systemEventType: kvm_run.offsetOf("system_event.type"),
  validRegs: kvm_run.offsetOf("kvm_valid_regs"),
  syncRegs: kvm_run.offsetOf("s.regs.regs"),
  syncSregs: kvm_run.offsetOf("s.regs.sregs"),
});

// ---------------------------------------------------------------------------
// ioctl requests

/** KVMIO: the ioctl type byte of every KVM request. */
export const KVMIO = 0xae;

function request(name: string, value: number): IoctlRequest {
  return Object.freeze({ name, value });
}
const io = (name: string, nr: number) => request(name, linuxIo(KVMIO, nr));
const ior = (name: string, nr: number, t: FieldType) =>
  request(name, linuxIor(KVMIO, nr, sizeOf(t)));
const iow = (name: string, nr: number, t: FieldType) =>
  request(name, linuxIow(KVMIO, nr, sizeOf(t)));
const iowr = (name: string, nr: number, t: FieldType) =>
  request(name, linuxIowr(KVMIO, nr, sizeOf(t)));

// System ioctls (on /dev/kvm).
/** Returns KVM_API_VERSION (12). */
export const KVM_GET_API_VERSION: IoctlRequest = io("KVM_GET_API_VERSION", 0x00);
/** Creates a VM; returns its fd. Argument: machine type (0). */
export const KVM_CREATE_VM: IoctlRequest = io("KVM_CREATE_VM", 0x01);
/** Lists the MSRs KVM saves/restores ({@link kvm_msr_list} + u32 indices). */
export const KVM_GET_MSR_INDEX_LIST: IoctlRequest = iowr(
  "KVM_GET_MSR_INDEX_LIST",
  0x02,
  kvm_msr_list,
);
/** Argument: a KVM_CAP_* number; returns 0 when absent, else a capability-specific value. */
export const KVM_CHECK_EXTENSION: IoctlRequest = io("KVM_CHECK_EXTENSION", 0x03);
/** Returns the byte size to mmap from a vCPU fd (at least sizeof(struct kvm_run)). */
export const KVM_GET_VCPU_MMAP_SIZE: IoctlRequest = io("KVM_GET_VCPU_MMAP_SIZE", 0x04);
/** Fills a {@link kvm_cpuid2} + entries with what the host supports (E2BIG if too small). */
export const KVM_GET_SUPPORTED_CPUID: IoctlRequest = iowr(
  "KVM_GET_SUPPORTED_CPUID",
  0x05,
  kvm_cpuid2,
);

// VM ioctls.
/** Creates a vCPU; argument: its id; returns its fd. */
export const KVM_CREATE_VCPU: IoctlRequest = io("KVM_CREATE_VCPU", 0x41);
/** Maps host memory into guest physical space ({@link kvm_userspace_memory_region}). */
export const KVM_SET_USER_MEMORY_REGION: IoctlRequest = iow(
  "KVM_SET_USER_MEMORY_REGION",
  0x46,
  kvm_userspace_memory_region,
);
/** Argument: guest physical address of a 3-page region Intel VMX needs (real-mode TSS). */
export const KVM_SET_TSS_ADDR: IoctlRequest = io("KVM_SET_TSS_ADDR", 0x47);
/** Argument: pointer to a u64 guest physical address of the identity-map page. */
export const KVM_SET_IDENTITY_MAP_ADDR: IoctlRequest = iow(
  "KVM_SET_IDENTITY_MAP_ADDR",
  0x48,
  "u64",
);
/** Creates the in-kernel PIC pair and IOAPIC (and the per-vCPU local APICs). */
export const KVM_CREATE_IRQCHIP: IoctlRequest = io("KVM_CREATE_IRQCHIP", 0x60);
/** Sets an irqchip input line ({@link kvm_irq_level}). */
export const KVM_IRQ_LINE: IoctlRequest = iow("KVM_IRQ_LINE", 0x61, kvm_irq_level);
/** KVM_GET_IRQCHIP: read the in-kernel PIC or IOAPIC state. */
export const KVM_GET_IRQCHIP: IoctlRequest = iowr("KVM_GET_IRQCHIP", 0x62, kvm_irqchip);
/** KVM_SET_IRQCHIP: write it back. */
export const KVM_SET_IRQCHIP: IoctlRequest = ior("KVM_SET_IRQCHIP", 0x63, kvm_irqchip);
/** Replaces the GSI routing table ({@link kvm_irq_routing} + entries). */
export const KVM_SET_GSI_ROUTING: IoctlRequest = iow("KVM_SET_GSI_ROUTING", 0x6a, kvm_irq_routing);
/** Binds an eventfd to a GSI ({@link kvm_irqfd}). */
export const KVM_IRQFD: IoctlRequest = iow("KVM_IRQFD", 0x76, kvm_irqfd);
/** Creates the in-kernel i8254 PIT ({@link kvm_pit_config}). */
export const KVM_CREATE_PIT2: IoctlRequest = iow("KVM_CREATE_PIT2", 0x77, kvm_pit_config);
/** Binds an eventfd to guest PIO/MMIO writes ({@link kvm_ioeventfd}). */
export const KVM_IOEVENTFD: IoctlRequest = iow("KVM_IOEVENTFD", 0x79, kvm_ioeventfd);
/** Sets the kvmclock base ({@link kvm_clock_data}). */
export const KVM_SET_CLOCK: IoctlRequest = iow("KVM_SET_CLOCK", 0x7b, kvm_clock_data);
/** Reads the kvmclock ({@link kvm_clock_data}). */
export const KVM_GET_CLOCK: IoctlRequest = ior("KVM_GET_CLOCK", 0x7c, kvm_clock_data);
/** Injects an MSI ({@link kvm_msi}). */
export const KVM_SIGNAL_MSI: IoctlRequest = iow("KVM_SIGNAL_MSI", 0xa5, kvm_msi);
/** Enables a capability on a VM or vCPU ({@link kvm_enable_cap}). */
export const KVM_ENABLE_CAP: IoctlRequest = iow("KVM_ENABLE_CAP", 0xa3, kvm_enable_cap);

// vCPU ioctls.
/** Runs the vCPU until an exit; the exit is described in the mmapped {@link kvm_run}. */
export const KVM_RUN: IoctlRequest = io("KVM_RUN", 0x80);
/** Reads {@link kvm_regs}. */
export const KVM_GET_REGS: IoctlRequest = ior("KVM_GET_REGS", 0x81, kvm_regs);
/** Writes {@link kvm_regs}. */
export const KVM_SET_REGS: IoctlRequest = iow("KVM_SET_REGS", 0x82, kvm_regs);
/** Reads {@link kvm_sregs}. */
export const KVM_GET_SREGS: IoctlRequest = ior("KVM_GET_SREGS", 0x83, kvm_sregs);
/** Writes {@link kvm_sregs}. */
export const KVM_SET_SREGS: IoctlRequest = iow("KVM_SET_SREGS", 0x84, kvm_sregs);
/** Translates a guest linear address with the vCPU's current paging ({@link kvm_translation}). */
export const KVM_TRANSLATE: IoctlRequest = iowr("KVM_TRANSLATE", 0x85, kvm_translation);
/** Queues an interrupt vector ({@link kvm_interrupt}); only without an in-kernel irqchip. */
export const KVM_INTERRUPT: IoctlRequest = iow("KVM_INTERRUPT", 0x86, kvm_interrupt);
/** Reads MSRs ({@link kvm_msrs} + entries); returns how many were read. */
export const KVM_GET_MSRS: IoctlRequest = iowr("KVM_GET_MSRS", 0x88, kvm_msrs);
/** Writes MSRs ({@link kvm_msrs} + entries); returns how many were written. */
export const KVM_SET_MSRS: IoctlRequest = iow("KVM_SET_MSRS", 0x89, kvm_msrs);
/** Reads {@link kvm_fpu}. */
export const KVM_GET_FPU: IoctlRequest = ior("KVM_GET_FPU", 0x8c, kvm_fpu);
/** Writes {@link kvm_fpu}. */
export const KVM_SET_FPU: IoctlRequest = iow("KVM_SET_FPU", 0x8d, kvm_fpu);
/** Reads {@link kvm_lapic_state}. */
export const KVM_GET_LAPIC: IoctlRequest = ior("KVM_GET_LAPIC", 0x8e, kvm_lapic_state);
/** Writes {@link kvm_lapic_state}. */
export const KVM_SET_LAPIC: IoctlRequest = iow("KVM_SET_LAPIC", 0x8f, kvm_lapic_state);
/** Sets the guest's CPUID ({@link kvm_cpuid2} + entries). */
export const KVM_SET_CPUID2: IoctlRequest = iow("KVM_SET_CPUID2", 0x90, kvm_cpuid2);
/** Reads {@link kvm_mp_state}. */
export const KVM_GET_MP_STATE: IoctlRequest = ior("KVM_GET_MP_STATE", 0x98, kvm_mp_state);
/** Writes {@link kvm_mp_state}. */
export const KVM_SET_MP_STATE: IoctlRequest = iow("KVM_SET_MP_STATE", 0x99, kvm_mp_state);
/** Injects an NMI. */
export const KVM_NMI: IoctlRequest = io("KVM_NMI", 0x9a);
/** Sets single-step / breakpoints ({@link kvm_guest_debug}). */
export const KVM_SET_GUEST_DEBUG: IoctlRequest = iow("KVM_SET_GUEST_DEBUG", 0x9b, kvm_guest_debug);
/** Reads {@link kvm_vcpu_events}. */
export const KVM_GET_VCPU_EVENTS: IoctlRequest = ior("KVM_GET_VCPU_EVENTS", 0x9f, kvm_vcpu_events);
/** Writes {@link kvm_vcpu_events}. */
export const KVM_SET_VCPU_EVENTS: IoctlRequest = iow("KVM_SET_VCPU_EVENTS", 0xa0, kvm_vcpu_events);

// ---------------------------------------------------------------------------
// Constants

/** The only KVM API version there has ever been in mainline. */
export const KVM_API_VERSION = 12;

/** Exit reasons (`kvm_run.exit_reason`). */
export const KVM_EXIT_UNKNOWN = 0;
/** See {@link KVM_EXIT_UNKNOWN}. */
export const KVM_EXIT_EXCEPTION = 1;
/** Port I/O: `kvm_run.io`, data at `kvm_run + io.data_offset`. */
export const KVM_EXIT_IO = 2;
/** See {@link KVM_EXIT_UNKNOWN}. */
export const KVM_EXIT_HYPERCALL = 3;
/** See {@link KVM_EXIT_UNKNOWN}. */
export const KVM_EXIT_DEBUG = 4;
/** HLT without an in-kernel irqchip. */
export const KVM_EXIT_HLT = 5;
/** MMIO to unmapped guest physical memory: `kvm_run.mmio`. */
export const KVM_EXIT_MMIO = 6;
/** `request_interrupt_window` was set and the guest can now take an interrupt. */
export const KVM_EXIT_IRQ_WINDOW_OPEN = 7;
/** Triple fault (or similar): the machine must reset. */
export const KVM_EXIT_SHUTDOWN = 8;
/** VM entry failed: `kvm_run.fail_entry`. */
export const KVM_EXIT_FAIL_ENTRY = 9;
/** KVM_RUN was interrupted by a signal (or immediate_exit). */
export const KVM_EXIT_INTR = 10;
/** See {@link KVM_EXIT_UNKNOWN}. */
export const KVM_EXIT_SET_TPR = 11;
/** See {@link KVM_EXIT_UNKNOWN}. */
export const KVM_EXIT_TPR_ACCESS = 12;
/** See {@link KVM_EXIT_UNKNOWN}. */
export const KVM_EXIT_NMI = 16;
/** KVM could not handle something: `kvm_run.internal` / `emulation_failure`. */
export const KVM_EXIT_INTERNAL_ERROR = 17;
/** See {@link KVM_EXIT_UNKNOWN}. */
export const KVM_EXIT_WATCHDOG = 21;
/** Shutdown/reset/crash request: `kvm_run.system_event`. */
export const KVM_EXIT_SYSTEM_EVENT = 24;
/** See {@link KVM_EXIT_UNKNOWN}. */
export const KVM_EXIT_IOAPIC_EOI = 26;
/** See {@link KVM_EXIT_UNKNOWN}. */
export const KVM_EXIT_HYPERV = 27;
/** Userspace MSR read (KVM_CAP_X86_USER_SPACE_MSR): `kvm_run.msr`. */
export const KVM_EXIT_X86_RDMSR = 29;
/** Userspace MSR write: `kvm_run.msr`. */
export const KVM_EXIT_X86_WRMSR = 30;
/** See {@link KVM_EXIT_UNKNOWN}. */
export const KVM_EXIT_DIRTY_RING_FULL = 31;
/** See {@link KVM_EXIT_UNKNOWN}. */
export const KVM_EXIT_AP_RESET_HOLD = 32;
/** See {@link KVM_EXIT_UNKNOWN}. */
export const KVM_EXIT_X86_BUS_LOCK = 33;
/** See {@link KVM_EXIT_UNKNOWN}. */
export const KVM_EXIT_XEN = 34;
/** See {@link KVM_EXIT_UNKNOWN}. */
export const KVM_EXIT_NOTIFY = 37;

const EXIT_NAMES: ReadonlyMap<number, string> = new Map([
  [KVM_EXIT_UNKNOWN, "KVM_EXIT_UNKNOWN"],
  [KVM_EXIT_EXCEPTION, "KVM_EXIT_EXCEPTION"],
  [KVM_EXIT_IO, "KVM_EXIT_IO"],
  [KVM_EXIT_HYPERCALL, "KVM_EXIT_HYPERCALL"],
  [KVM_EXIT_DEBUG, "KVM_EXIT_DEBUG"],
  [KVM_EXIT_HLT, "KVM_EXIT_HLT"],
  [KVM_EXIT_MMIO, "KVM_EXIT_MMIO"],
  [KVM_EXIT_IRQ_WINDOW_OPEN, "KVM_EXIT_IRQ_WINDOW_OPEN"],
  [KVM_EXIT_SHUTDOWN, "KVM_EXIT_SHUTDOWN"],
  [KVM_EXIT_FAIL_ENTRY, "KVM_EXIT_FAIL_ENTRY"],
  [KVM_EXIT_INTR, "KVM_EXIT_INTR"],
  [KVM_EXIT_SET_TPR, "KVM_EXIT_SET_TPR"],
  [KVM_EXIT_TPR_ACCESS, "KVM_EXIT_TPR_ACCESS"],
  [KVM_EXIT_NMI, "KVM_EXIT_NMI"],
  [KVM_EXIT_INTERNAL_ERROR, "KVM_EXIT_INTERNAL_ERROR"],
  [KVM_EXIT_WATCHDOG, "KVM_EXIT_WATCHDOG"],
  [KVM_EXIT_SYSTEM_EVENT, "KVM_EXIT_SYSTEM_EVENT"],
  [KVM_EXIT_IOAPIC_EOI, "KVM_EXIT_IOAPIC_EOI"],
  [KVM_EXIT_HYPERV, "KVM_EXIT_HYPERV"],
  [KVM_EXIT_X86_RDMSR, "KVM_EXIT_X86_RDMSR"],
  [KVM_EXIT_X86_WRMSR, "KVM_EXIT_X86_WRMSR"],
  [KVM_EXIT_DIRTY_RING_FULL, "KVM_EXIT_DIRTY_RING_FULL"],
  [KVM_EXIT_AP_RESET_HOLD, "KVM_EXIT_AP_RESET_HOLD"],
  [KVM_EXIT_X86_BUS_LOCK, "KVM_EXIT_X86_BUS_LOCK"],
  [KVM_EXIT_XEN, "KVM_EXIT_XEN"],
  [KVM_EXIT_NOTIFY, "KVM_EXIT_NOTIFY"],
]);

/** The name of exit reason `reason` (`KVM_EXIT_IO`), or `KVM_EXIT_<n>` when unknown. */
export function kvmExitName(reason: number): string {
  return EXIT_NAMES.get(reason) ?? `KVM_EXIT_${reason}`;
}

/** `kvm_run.io.direction`: guest reads the port. */
export const KVM_EXIT_IO_IN = 0;
/** `kvm_run.io.direction`: guest writes the port. */
export const KVM_EXIT_IO_OUT = 1;

/** `kvm_run.internal.suberror`: the instruction emulator failed. */
export const KVM_INTERNAL_ERROR_EMULATION = 1;
/** `kvm_run.internal.suberror`: an exception while delivering another. */
export const KVM_INTERNAL_ERROR_SIMUL_EX = 2;
/** `kvm_run.internal.suberror`: a VM exit while delivering an event. */
export const KVM_INTERNAL_ERROR_DELIVERY_EV = 3;
/** `kvm_run.internal.suberror`: a hardware exit reason KVM does not handle. */
export const KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4;
/** `kvm_run.emulation_failure.flags`: `insn_size`/`insn_bytes` are valid. */
export const KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES = 1;

/** `kvm_run.system_event.type` values. */
export const KVM_SYSTEM_EVENT_SHUTDOWN = 1;
/** See {@link KVM_SYSTEM_EVENT_SHUTDOWN}. */
export const KVM_SYSTEM_EVENT_RESET = 2;
/** See {@link KVM_SYSTEM_EVENT_SHUTDOWN}. */
export const KVM_SYSTEM_EVENT_CRASH = 3;

/** Capabilities (KVM_CHECK_EXTENSION arguments). */
export const KVM_CAP_IRQCHIP = 0;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_HLT = 1;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_USER_MEMORY = 3;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_SET_TSS_ADDR = 4;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_EXT_CPUID = 7;
/** Recommended maximum vCPUs per VM. */
export const KVM_CAP_NR_VCPUS = 9;
/** Maximum memory slots per VM. */
export const KVM_CAP_NR_MEMSLOTS = 10;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_MP_STATE = 14;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_SET_GUEST_DEBUG = 23;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_IRQ_ROUTING = 25;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_IRQFD = 32;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_PIT2 = 33;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_PIT_STATE2 = 35;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_IOEVENTFD = 36;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_SET_IDENTITY_MAP_ADDR = 37;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_ADJUST_CLOCK = 39;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_VCPU_EVENTS = 41;
/** Maximum vCPUs per VM. */
export const KVM_CAP_MAX_VCPUS = 66;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_TSC_DEADLINE_TIMER = 72;
/** `kvm_run.s.regs` is usable; returns the supported KVM_SYNC_X86_* mask. */
export const KVM_CAP_SYNC_REGS = 74;
/** See {@link KVM_CAP_IRQCHIP}. */
export const KVM_CAP_SIGNAL_MSI = 77;
/** `kvm_run.immediate_exit` is honoured. */
export const KVM_CAP_IMMEDIATE_EXIT = 136;

/** `kvm_userspace_memory_region.flags`: track dirty pages. */
export const KVM_MEM_LOG_DIRTY_PAGES = 1;
/** `kvm_userspace_memory_region.flags`: guest writes exit as MMIO. */
export const KVM_MEM_READONLY = 2;

/** KVM_IRQFD flags. */
export const KVM_IRQFD_FLAG_DEASSIGN = 1;
/** See {@link KVM_IRQFD_FLAG_DEASSIGN}. */
export const KVM_IRQFD_FLAG_RESAMPLE = 2;

/** KVM_IOEVENTFD flags. */
export const KVM_IOEVENTFD_FLAG_DATAMATCH = 1;
/** See {@link KVM_IOEVENTFD_FLAG_DATAMATCH}. */
export const KVM_IOEVENTFD_FLAG_PIO = 2;
/** See {@link KVM_IOEVENTFD_FLAG_DATAMATCH}. */
export const KVM_IOEVENTFD_FLAG_DEASSIGN = 4;

/** `kvm_irq_routing_entry.type` values. */
export const KVM_IRQ_ROUTING_IRQCHIP = 1;
/** See {@link KVM_IRQ_ROUTING_IRQCHIP}. */
export const KVM_IRQ_ROUTING_MSI = 2;

/** `kvm_irq_routing_irqchip.irqchip` values. */
export const KVM_IRQCHIP_PIC_MASTER = 0;
/** See {@link KVM_IRQCHIP_PIC_MASTER}. */
export const KVM_IRQCHIP_PIC_SLAVE = 1;
/** See {@link KVM_IRQCHIP_PIC_MASTER}. */
export const KVM_IRQCHIP_IOAPIC = 2;

/** `kvm_msi.flags`: `devid` is valid. */
export const KVM_MSI_VALID_DEVID = 1;

/** `kvm_pit_config.flags`: emulate the PC speaker port 0x61 too. */
export const KVM_PIT_SPEAKER_DUMMY = 1;

/** `kvm_guest_debug.control` bits. */
export const KVM_GUESTDBG_ENABLE = 0x1;
/** See {@link KVM_GUESTDBG_ENABLE}. */
export const KVM_GUESTDBG_SINGLESTEP = 0x2;
/** See {@link KVM_GUESTDBG_ENABLE}. */
export const KVM_GUESTDBG_USE_SW_BP = 0x10000;
/** See {@link KVM_GUESTDBG_ENABLE}. */
export const KVM_GUESTDBG_USE_HW_BP = 0x20000;

/** `kvm_vcpu_events.flags` bits. */
export const KVM_VCPUEVENT_VALID_NMI_PENDING = 0x1;
/** See {@link KVM_VCPUEVENT_VALID_NMI_PENDING}. */
export const KVM_VCPUEVENT_VALID_SIPI_VECTOR = 0x2;
/** See {@link KVM_VCPUEVENT_VALID_NMI_PENDING}. */
export const KVM_VCPUEVENT_VALID_SHADOW = 0x4;

/** `kvm_cpuid_entry2.flags`: `index` selects a subleaf (the header's spelling). */
export const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1;

/** `kvm_run.kvm_valid_regs` / `kvm_dirty_regs` bits. */
export const KVM_SYNC_X86_REGS = 1;
/** See {@link KVM_SYNC_X86_REGS}. */
export const KVM_SYNC_X86_SREGS = 2;
/** See {@link KVM_SYNC_X86_REGS}. */
export const KVM_SYNC_X86_EVENTS = 4;

/** `kvm_mp_state.mp_state` values (x86). */
export const KVM_MP_STATE_RUNNABLE = 0;
/** See {@link KVM_MP_STATE_RUNNABLE}. */
export const KVM_MP_STATE_UNINITIALIZED = 1;
/** See {@link KVM_MP_STATE_RUNNABLE}. */
export const KVM_MP_STATE_INIT_RECEIVED = 2;
/** See {@link KVM_MP_STATE_RUNNABLE}. */
export const KVM_MP_STATE_HALTED = 3;
/** See {@link KVM_MP_STATE_RUNNABLE}. */
export const KVM_MP_STATE_SIPI_RECEIVED = 4;

/** `kvm_clock_data.flags`: the clock is stable across vCPUs. */
export const KVM_CLOCK_TSC_STABLE = 2;

// MSR numbers (Intel SDM vol. 4; AMD APM vol. 2). Not in the uapi headers.
/** Time-stamp counter. */
export const MSR_IA32_TSC = 0x10;
/** Local APIC base address and enable bits. */
export const MSR_IA32_APIC_BASE = 0x1b;
/** SYSENTER target CS. */
export const MSR_IA32_SYSENTER_CS = 0x174;
/** SYSENTER target RSP. */
export const MSR_IA32_SYSENTER_ESP = 0x175;
/** SYSENTER target RIP. */
export const MSR_IA32_SYSENTER_EIP = 0x176;
/** Miscellaneous feature enables (fast strings, ...). */
export const MSR_IA32_MISC_ENABLE = 0x1a0;
/** Page attribute table. */
export const MSR_IA32_CR_PAT = 0x277;
/** Extended feature enables: SCE, LME, LMA, NXE. */
export const MSR_IA32_EFER = 0xc0000080;
/** SYSCALL/SYSRET segment selectors. */
export const MSR_STAR = 0xc0000081;
/** 64-bit SYSCALL target RIP. */
export const MSR_LSTAR = 0xc0000082;
/** Compatibility-mode SYSCALL target RIP. */
export const MSR_CSTAR = 0xc0000083;
/** SYSCALL RFLAGS mask (SFMASK). */
export const MSR_SFMASK = 0xc0000084;
/** FS base. */
export const MSR_FS_BASE = 0xc0000100;
/** GS base. */
export const MSR_GS_BASE = 0xc0000101;
/** The GS base SWAPGS exchanges with. */
export const MSR_KERNEL_GS_BASE = 0xc0000102;
