/**
 * The Linux KVM back-end: /dev/kvm through the libc FFI.
 *
 * KVM does in the kernel what vmm(4) leaves to userspace (RIP advance, IN
 * write-back, MMIO decoding), so this back-end is mostly struct plumbing.
 * `kvm_run` is decoded in place: exit data views point into the shared page.
 *
 * @module
 */

import type { Libc, Mapping } from "../../ffi/libc.ts";
import type { EncodeValue } from "../../ffi/struct.ts";
import { SyscallError } from "../../ffi/errno.ts";
import { gpaFromHalves, GuestMemory, type MemoryRegion } from "../../core/guest_memory.ts";
import type {
  Accel,
  CpuState,
  DeviceMapping,
  KickToken,
  Registers,
  Segment,
  SpecialRegisters,
  Vcpu,
  VcpuExit,
  Vm,
  VmOptions,
  VmShare,
} from "../types.ts";
import { VcpuBase } from "../vcpu_base.ts";
import { kickVcpu } from "../kick.ts";
import * as abi from "./abi.ts";

/**
 * Where KVM wants its private pages on Intel (below 4 GiB, in the PCI hole, above the LAPIC):
 * QEMU's addresses, below the 16 MiB a BIOS flash image may take under 4 GiB.
 */
const KVM_TSS_ADDR = 0xfeff_d000;
const KVM_IDENTITY_MAP_ADDR = 0xfeff_c000;
const PAGE_BYTES = 4096;
/** Memory slots from here on hold device memory (RAM uses the first few). */
const FIRST_DEVICE_SLOT = 32;

// kvm_run offsets used on the hot path (module constants: the cheapest loads).
const {
  requestInterruptWindow: RUN_REQUEST_INTERRUPT_WINDOW,
  immediateExit: RUN_IMMEDIATE_EXIT,
  exitReason: RUN_EXIT_REASON,
  readyForInterruptInjection: RUN_READY_FOR_INJECTION,
  ifFlag: RUN_IF_FLAG,
  ioDirection: RUN_IO_DIRECTION,
  ioSize: RUN_IO_SIZE,
  ioPort: RUN_IO_PORT,
  ioCount: RUN_IO_COUNT,
  ioDataOffset: RUN_IO_DATA_OFFSET,
  mmioPhysAddr: RUN_MMIO_PHYS_ADDR,
  mmioData: RUN_MMIO_DATA,
  mmioLen: RUN_MMIO_LEN,
  mmioIsWrite: RUN_MMIO_IS_WRITE,
  internalSuberror: RUN_INTERNAL_SUBERROR,
  failEntryReason: RUN_FAIL_ENTRY_REASON,
  systemEventType: RUN_SYSTEM_EVENT_TYPE,
} = abi.KVM_RUN_AT;

const KVM_SYSTEM_EVENT_SHUTDOWN = 1;
const KVM_SYSTEM_EVENT_RESET = 2;

/** CPUID leaf 1 bits we hide when the interrupt controller is ours (no LAPIC). */
const CPUID_1_EDX_APIC = 1 << 9;
/** CPUID leaf 1 EDX: EBX bits 23-16 count the package's logical processors. */
const CPUID_1_EDX_HTT = 1 << 28;
const CPUID_1_ECX_X2APIC = 1 << 21;
const CPUID_1_ECX_TSC_DEADLINE = 1 << 24;
const CPUID_1_ECX_HYPERVISOR = 1 << 31;

/**
 * Leaf 1 (and 0x40000000 when `signature` is given) of a KVM_GET_SUPPORTED_CPUID
 * buffer as a guest should see them: the hypervisor bit set and, when the
 * interrupt controller is not KVM's (`hideApic`), no LAPIC, x2APIC or
 * TSC-deadline timer. Returns a copy.
 */
export function guestCpuid(
  supported: Uint8Array,
  options: {
    hideApic: boolean;
    signature?: string;
    /** An xAPIC only (vmmctl's own, MMIO): no x2APIC, no TSC-deadline timer. */
    xapicOnly?: boolean;
    /** Processors in the one package (leaf 1 EBX 23-16, leaf 4, leaf 0xB); default 1. */
    cpus?: number;
  },
): Uint8Array {
  const cpus = options.cpus ?? 1;
  const buf = supported.slice();
  const view = new DataView(buf.buffer);
  const nent = view.getUint32(0, true);
  const E = abi.kvm_cpuid_entry2;
  const sig = options.signature === undefined
    ? undefined
    : new DataView(new TextEncoder().encode(options.signature.padEnd(12, "\0")).buffer);
  for (let i = 0; i < nent; i++) {
    const at = abi.kvm_cpuid2.size + i * E.size;
    const entry = E.decode(view, at);
    if (entry.function === 1) {
      let ecx = entry.ecx | CPUID_1_ECX_HYPERVISOR;
      let edx = entry.edx;
      if (options.hideApic) {
        edx &= ~CPUID_1_EDX_APIC;
        ecx &= ~(CPUID_1_ECX_X2APIC | CPUID_1_ECX_TSC_DEADLINE);
      } else {
        edx |= CPUID_1_EDX_APIC;
        if (options.xapicOnly) ecx &= ~(CPUID_1_ECX_X2APIC | CPUID_1_ECX_TSC_DEADLINE);
      }
      let ebx = entry.ebx as number;
      if (cpus > 1) {
        edx |= CPUID_1_EDX_HTT;
        ebx = (ebx & 0xff00ffff) | (cpus << 16);
      }
      E.encode(view, { ecx: ecx >>> 0, edx: edx >>> 0, ebx: ebx >>> 0 }, at);
    } else if (entry.function === 4) {
      // One package of `cpus` cores (EAX bits 31-26: cores - 1), one thread each.
      const eax = ((entry.eax as number) & 0x3fff) | ((cpus - 1) << 26);
      E.encode(view, { eax: eax >>> 0 }, at);
    } else if (entry.function === 0xb) {
      // x2APIC topology: level 0 SMT (1 thread), level 1 core (`cpus`); openVcpu sets EDX.
      const level = entry.index as number;
      const fields = level === 0
        ? { eax: 0, ebx: 1, ecx: 1 << 8 }
        : level === 1
        ? { eax: Math.ceil(Math.log2(cpus)), ebx: cpus, ecx: (2 << 8) | 1 }
        : { eax: 0, ebx: 0, ecx: level };
      E.encode(view, fields, at);
    } else if (entry.function === 0x40000000 && sig) {
      E.encode(view, {
        ebx: sig.getUint32(0, true),
        ecx: sig.getUint32(4, true),
        edx: sig.getUint32(8, true),
      }, at);
    }
  }
  return buf;
}

/**
 * Creates vCPU `id` of `vm`: KVM_CREATE_VCPU, its kvm_run mapping, and
 * `cpuid` (see {@link guestCpuid}) with the initial APIC id set to `id`. The
 * one vCPU set-up for the back-end and the vmm(4) emulation.
 */
export function openVcpu(vm: KvmVm, id: number, cpuid: Uint8Array): { fd: number; run: Mapping } {
  const libc = vm.accel.libc;
  const fd = libc.ioctl(vm.fd, abi.KVM_CREATE_VCPU, id);
  let run: Mapping | undefined;
  try {
    const c = libc.consts;
    run = libc.mmap(vm.accel.vcpuMmapSize(), c.PROT_READ | c.PROT_WRITE, c.MAP_SHARED, fd, 0);
    const buf = cpuid.slice();
    const view = new DataView(buf.buffer);
    const E = abi.kvm_cpuid_entry2;
    const ebxAt = E.offsetOf("ebx");
    for (let i = 0; i < view.getUint32(0, true); i++) {
      const at = abi.kvm_cpuid2.size + i * E.size;
      const fn = view.getUint32(at, true);
      // x2APIC id of the topology leaf = vCPU id.
      if (fn === 0xb) view.setUint32(at + E.offsetOf("edx"), id, true);
      if (fn !== 1) continue;
      // Initial APIC id = vCPU id (bits 31-24 of EBX).
      const ebx = (view.getUint32(at + ebxAt, true) & 0x00ffffff) | (id << 24);
      view.setUint32(at + ebxAt, ebx >>> 0, true);
    }
    libc.ioctl(fd, abi.KVM_SET_CPUID2, buf);
    return { fd, run };
  } catch (e) {
    if (run) libc.munmap(run);
    libc.close(fd);
    throw e;
  }
}

/** KVM irqchip ids and the routing entry type for them (linux/kvm.h). */
const KVM_IRQCHIP_PIC_MASTER = 0;
const KVM_IRQCHIP_PIC_SLAVE = 1;
const KVM_IRQCHIP_IOAPIC = 2;
const KVM_IRQ_ROUTING_IRQCHIP = 1;

/** Opens /dev/kvm with errors that say what to do (the SyscallError is the cause). */
function openKvm(libc: Libc, path: string): number {
  try {
    return libc.open(path, libc.consts.O_RDWR | libc.consts.O_CLOEXEC);
  } catch (e) {
    if (e instanceof SyscallError) {
      if (e.code === "ENOENT" || e.code === "ENODEV" || e.code === "ENXIO") {
        throw new Error(
          `${path} does not exist: KVM is not available on this host ` +
            `(enable virtualization in the firmware and load kvm_intel or kvm_amd)`,
          { cause: e },
        );
      }
      if (e.code === "EACCES" || e.code === "EPERM") {
        throw new Error(
          `No permission to open ${path}: run as root or add your user to the "kvm" group`,
          { cause: e },
        );
      }
    }
    throw e;
  }
}

/** The KVM accelerator. */
export class KvmAccel implements Accel {
  readonly name = "kvm";
  readonly libc: Libc;
  readonly fd: number;
  #cpuid?: Uint8Array;
  #runSize = 0;
  #closed = false;

  constructor(libc: Libc, devicePath = "/dev/kvm") {
    this.libc = libc;
    this.fd = openKvm(libc, devicePath);
    const version = libc.ioctl(this.fd, abi.KVM_GET_API_VERSION, 0);
    if (version !== abi.KVM_API_VERSION) {
      libc.close(this.fd);
      throw new Error(
        `KVM API version ${version} is not supported (vmmctl needs ${abi.KVM_API_VERSION})`,
      );
    }
  }

  /** Whether the host KVM has capability `cap`. */
  hasCapability(cap: number): number {
    return this.libc.ioctl(this.fd, abi.KVM_CHECK_EXTENSION, cap);
  }

  /** KVM_GET_SUPPORTED_CPUID as a kvm_cpuid2 buffer (cached). */
  supportedCpuid(): Uint8Array {
    if (this.#cpuid) return this.#cpuid;
    const entrySize = abi.kvm_cpuid_entry2.size;
    for (let nent = 64; nent <= 4096; nent *= 2) {
      const buf = new Uint8Array(abi.kvm_cpuid2.size + nent * entrySize);
      abi.kvm_cpuid2.encode(new DataView(buf.buffer), { nent });
      const r = this.libc.ioctlTry(this.fd, abi.KVM_GET_SUPPORTED_CPUID, buf, ["E2BIG"]);
      if (r >= 0) {
        this.#cpuid = buf;
        return buf;
      }
    }
    throw new Error("KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
  }

  /** KVM_GET_VCPU_MMAP_SIZE: the size of a vCPU's kvm_run mapping (cached). */
  vcpuMmapSize(): number {
    return this.#runSize ||= this.libc.ioctl(this.fd, abi.KVM_GET_VCPU_MMAP_SIZE, 0);
  }

  createVm(options: VmOptions): KvmVm {
    return new KvmVm(this, options);
  }

  attachVm(share: VmShare, options: VmOptions): KvmVm {
    return new KvmVm(this, options, share);
  }

  kick(token: KickToken): void {
    kickVcpu(this.libc, token);
  }

  /** Closes /dev/kvm (VMs hold their own fds). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.libc.close(this.fd);
  }
}

/**
 * A KVM VM: its fd, memory slots (anonymous mappings, one per `options.ram`
 * range, slot = index) and (optionally) in-kernel irqchip. The one KVM VM
 * set-up, also under the vmm(4) emulation.
 */
export class KvmVm implements Vm {
  readonly accel: KvmAccel;
  readonly fd: number;
  readonly memory: GuestMemory;
  readonly options: VmOptions;
  #regions: MemoryRegion[] = [];
  /** Memory slots of device mappings (after the RAM slots). */
  #deviceSlots = new Set<number>();
  #closed = false;
  /** Attached to a VM another thread owns: close() releases nothing. */
  readonly #attached: boolean;

  constructor(accel: KvmAccel, options: VmOptions, share?: VmShare) {
    this.accel = accel;
    this.options = options;
    const libc = accel.libc;
    this.#attached = share !== undefined;
    if (share) {
      // The same fd and the same host mappings: fds and memory are process-wide.
      this.fd = share.fd as number;
      const ram = share.ram as string[];
      options.ram.forEach((r, i) => {
        const hostAddress = BigInt(ram[i]);
        this.#regions.push({ gpa: r.gpa, bytes: libc.memoryAt(hostAddress, r.size), hostAddress });
      });
      this.memory = new GuestMemory(this.#regions);
      return;
    }
    this.fd = libc.ioctl(accel.fd, abi.KVM_CREATE_VM, 0);
    try {
      libc.ioctl(this.fd, abi.KVM_SET_TSS_ADDR, KVM_TSS_ADDR);
      const idmap = new Uint8Array(8);
      new DataView(idmap.buffer).setBigUint64(0, BigInt(KVM_IDENTITY_MAP_ADDR), true);
      libc.ioctl(this.fd, abi.KVM_SET_IDENTITY_MAP_ADDR, idmap);
      if (options.irqchip === "kernel") {
        libc.ioctl(this.fd, abi.KVM_CREATE_IRQCHIP, 0);
        // SPEAKER_DUMMY: KVM also answers port 0x61 (channel 2 gate, OUT2), which guests use to
        // calibrate their clocks; otherwise it would reach us with no PIT here to answer it.
        libc.ioctl(
          this.fd,
          abi.KVM_CREATE_PIT2,
          abi.kvm_pit_config.bytes({ flags: abi.KVM_PIT_SPEAKER_DUMMY }),
        );
      }
      if (options.irqchip === "kernel") this.#setGsiRouting();
      options.ram.forEach((r, slot) => this.#addRegion(slot, r.gpa, r.size));
    } catch (e) {
      this.close();
      throw e;
    }
    this.memory = new GuestMemory(this.#regions);
  }

  /**
   * The PC's GSI routing, as the MADT describes it: ISA IRQ n on 8259 input
   * n (but 2, the cascade) and on I/O APIC input n, except IRQ 0 (the PIT)
   * on I/O APIC input 2. KVM's default sends GSI 0 to input 0.
   */
  #setGsiRouting(): void {
    const routes: [gsi: number, chip: number, pin: number][] = [];
    for (let gsi = 0; gsi < 16; gsi++) {
      if (gsi === 2) continue;
      routes.push([gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi & 7]);
    }
    for (let gsi = 0; gsi < 24; gsi++) {
      if (gsi !== 2) routes.push([gsi, KVM_IRQCHIP_IOAPIC, gsi === 0 ? 2 : gsi]);
    }
    const E = abi.kvm_irq_routing_entry;
    const buf = new Uint8Array(abi.kvm_irq_routing.size + routes.length * E.size);
    const view = new DataView(buf.buffer);
    view.setUint32(abi.kvm_irq_routing.offsetOf("nr"), routes.length, true);
    routes.forEach(([gsi, chip, pin], i) => {
      const at = abi.kvm_irq_routing.size + i * E.size;
      view.setUint32(at + E.offsetOf("gsi"), gsi, true);
      view.setUint32(at + E.offsetOf("type"), KVM_IRQ_ROUTING_IRQCHIP, true);
      view.setUint32(at + E.offsetOf("u.irqchip.irqchip"), chip, true);
      view.setUint32(at + E.offsetOf("u.irqchip.pin"), pin, true);
    });
    this.accel.libc.ioctl(this.fd, abi.KVM_SET_GSI_ROUTING, buf);
  }

  #addRegion(slot: number, gpa: number, size: number): void {
    const libc = this.accel.libc;
    const c = libc.consts;
    let mapping;
    try {
      mapping = libc.mmap(
        size,
        c.PROT_READ | c.PROT_WRITE,
        c.MAP_PRIVATE | c.MAP_ANONYMOUS | c.MAP_NORESERVE,
        -1,
        0,
      );
    } catch (e) {
      if (e instanceof SyscallError && e.code === "ENOMEM") {
        throw new Error(`Cannot allocate ${size} bytes of guest RAM: not enough host memory`, {
          cause: e,
        });
      }
      throw e;
    }
    this.#regions.push({ gpa, bytes: mapping.bytes, hostAddress: mapping.address });
    libc.ioctl(
      this.fd,
      abi.KVM_SET_USER_MEMORY_REGION,
      abi.kvm_userspace_memory_region.bytes({
        slot,
        flags: 0,
        guest_phys_addr: BigInt(gpa),
        memory_size: BigInt(size),
        userspace_addr: mapping.address,
      }),
    );
  }

  mapDeviceMemory(gpa: number, hostAddress: bigint, size: number): DeviceMapping {
    if (gpa % PAGE_BYTES || size % PAGE_BYTES || hostAddress % BigInt(PAGE_BYTES)) {
      throw new RangeError(`Device memory at 0x${gpa.toString(16)} is not page aligned`);
    }
    let slot = FIRST_DEVICE_SLOT;
    while (this.#deviceSlots.has(slot)) slot++;
    const region = (memory_size: bigint) =>
      abi.kvm_userspace_memory_region.bytes({
        slot,
        flags: 0,
        guest_phys_addr: BigInt(gpa),
        memory_size,
        userspace_addr: hostAddress,
      });
    this.accel.libc.ioctl(this.fd, abi.KVM_SET_USER_MEMORY_REGION, region(BigInt(size)));
    this.#deviceSlots.add(slot);
    return {
      unmap: () => {
        if (!this.#deviceSlots.delete(slot) || this.#closed) return;
        // A slot of size 0 is deleted.
        this.accel.libc.ioctl(this.fd, abi.KVM_SET_USER_MEMORY_REGION, region(0n));
      },
    };
  }

  createVcpu(id: number, state: CpuState): KvmVcpu {
    return new KvmVcpu(this, id, state);
  }

  signalMsi(address: number, data: number): void {
    const msi = abi.kvm_msi.bytes({
      address_lo: address % 2 ** 32,
      address_hi: Math.floor(address / 2 ** 32),
      data,
    });
    this.accel.libc.ioctl(this.fd, abi.KVM_SIGNAL_MSI, msi);
  }

  share(): VmShare {
    return { fd: this.fd, ram: this.#regions.map((r) => r.hostAddress!.toString()) };
  }

  setIrqLevelTriggered(irq: number): void {
    // The ELCR lives in the in-kernel PIC's state: read it, set the bit, write it back.
    const libc = this.accel.libc;
    const chip = abi.kvm_irqchip.bytes({ chip_id: irq >> 3 });
    libc.ioctl(this.fd, abi.KVM_GET_IRQCHIP, chip);
    const view = new DataView(chip.buffer);
    const at = abi.kvm_irqchip.offsetOf("chip.pic.elcr");
    view.setUint8(at, view.getUint8(at) | (1 << (irq & 7)));
    libc.ioctl(this.fd, abi.KVM_SET_IRQCHIP, chip);
  }

  setIrqLine(irq: number, high: boolean): void {
    this.accel.libc.ioctl(
      this.fd,
      abi.KVM_IRQ_LINE,
      abi.kvm_irq_level.bytes({ irq, level: high ? 1 : 0 }),
    );
  }

  /** Closes the VM fd and unmaps guest RAM, unless `keepMemory` (its owner unmaps it later). */
  close(keepMemory = false): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#attached) return;
    const libc = this.accel.libc;
    if (this.fd >= 0) libc.close(this.fd);
    if (keepMemory) return;
    for (const r of this.#regions) {
      libc.munmap({ address: r.hostAddress!, bytes: r.bytes });
    }
  }
}

/** A decoded `kvm_segment`. */
type KvmSegment = ReturnType<typeof abi.kvm_segment.decode>;

function decodeSegment(s: KvmSegment): Segment {
  return {
    base: s.base,
    limit: s.limit,
    selector: s.selector,
    type: s.type,
    present: s.present === 1,
    dpl: s.dpl,
    db: s.db === 1,
    s: s.s === 1,
    l: s.l === 1,
    g: s.g === 1,
    avl: s.avl === 1,
    unusable: s.unusable === 1,
  };
}

/** A decoded `kvm_sregs` as our {@link SpecialRegisters} (the vmm(4) emulation decodes its own). */
export function specialRegistersFromKvm(
  d: Pick<ReturnType<typeof abi.kvm_sregs.decode>, keyof SpecialRegisters>,
): SpecialRegisters {
  return {
    cs: decodeSegment(d.cs),
    ds: decodeSegment(d.ds),
    es: decodeSegment(d.es),
    fs: decodeSegment(d.fs),
    gs: decodeSegment(d.gs),
    ss: decodeSegment(d.ss),
    tr: decodeSegment(d.tr),
    ldt: decodeSegment(d.ldt),
    gdt: { base: d.gdt.base, limit: d.gdt.limit },
    idt: { base: d.idt.base, limit: d.idt.limit },
    cr0: d.cr0,
    cr2: d.cr2,
    cr3: d.cr3,
    cr4: d.cr4,
    cr8: d.cr8,
    efer: d.efer,
  };
}

function encodeSegment(s: Segment): EncodeValue<KvmSegment> {
  return {
    base: s.base,
    limit: s.limit,
    selector: s.selector,
    type: s.type,
    present: s.present ? 1 : 0,
    dpl: s.dpl,
    db: s.db ? 1 : 0,
    s: s.s ? 1 : 0,
    l: s.l ? 1 : 0,
    g: s.g ? 1 : 0,
    avl: s.avl ? 1 : 0,
    unusable: s.unusable ? 1 : 0,
  };
}

/** A KVM vCPU; used only on the thread that runs it. */
export class KvmVcpu extends VcpuBase implements Vcpu {
  readonly vm: KvmVm;
  readonly fd: number;
  readonly #libc: Libc;
  readonly #run: Uint8Array;
  readonly #runView: DataView;
  readonly #runMapping: Mapping;
  #regs?: Registers;
  #regsDirty = false;
  #sregs?: SpecialRegisters;
  #sregsDirty = false;
  readonly #regsBuf = new Uint8Array(abi.kvm_regs.size);
  readonly #sregsBuf = new Uint8Array(abi.kvm_sregs.size);

  constructor(vm: KvmVm, id: number, state: CpuState) {
    super(id);
    this.vm = vm;
    const libc = vm.accel.libc;
    this.#libc = libc;
    // irqchip "user" has our xAPIC (MMIO at 0xFEE00000), "kernel" KVM's.
    const cpuid = guestCpuid(vm.accel.supportedCpuid(), {
      hideApic: false,
      xapicOnly: vm.options.irqchip === "user",
      cpus: vm.options.vcpus,
    });
    const { fd, run } = openVcpu(vm, id, cpuid);
    this.fd = fd;
    this.#runMapping = run;
    this.#run = run.bytes;
    this.#runView = new DataView(this.#run.buffer, this.#run.byteOffset, this.#run.length);
    this.setSpecialRegisters(state.sregs);
    this.setRegisters(state.regs);
    this.#flush();
    this.configured();
  }

  getRegisters(): Registers {
    if (!this.#regs) {
      this.#libc.ioctl(this.fd, abi.KVM_GET_REGS, this.#regsBuf);
      // kvm_regs has exactly the fields of Registers.
      this.#regs = abi.kvm_regs.decode(new DataView(this.#regsBuf.buffer));
    }
    return { ...this.#regs };
  }

  setRegisters(regs: Registers): void {
    this.#regs = { ...regs };
    this.#regsDirty = true;
  }

  getSpecialRegisters(): SpecialRegisters {
    if (!this.#sregs) {
      this.#libc.ioctl(this.fd, abi.KVM_GET_SREGS, this.#sregsBuf);
      const d = abi.kvm_sregs.decode(new DataView(this.#sregsBuf.buffer));
      this.#sregs = specialRegistersFromKvm(d);
    }
    return structuredClone(this.#sregs);
  }

  setSpecialRegisters(sregs: SpecialRegisters): void {
    if (!this.#sregs) this.getSpecialRegisters(); // keep apic_base and the interrupt bitmap
    this.#sregs = structuredClone(sregs);
    this.#sregsDirty = true;
  }

  #flush(): void {
    if (this.#sregsDirty && this.#sregs) {
      const s = this.#sregs;
      // apic_base and the interrupt bitmap keep the bytes KVM gave.
      abi.kvm_sregs.encode(new DataView(this.#sregsBuf.buffer), {
        cs: encodeSegment(s.cs),
        ds: encodeSegment(s.ds),
        es: encodeSegment(s.es),
        fs: encodeSegment(s.fs),
        gs: encodeSegment(s.gs),
        ss: encodeSegment(s.ss),
        tr: encodeSegment(s.tr),
        ldt: encodeSegment(s.ldt),
        gdt: { base: s.gdt.base, limit: s.gdt.limit },
        idt: { base: s.idt.base, limit: s.idt.limit },
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
      });
      this.#libc.ioctl(this.fd, abi.KVM_SET_SREGS, this.#sregsBuf);
      this.#sregsDirty = false;
    }
    if (this.#regsDirty && this.#regs) {
      abi.kvm_regs.encode(new DataView(this.#regsBuf.buffer), this.#regs);
      this.#libc.ioctl(this.fd, abi.KVM_SET_REGS, this.#regsBuf);
      this.#regsDirty = false;
    }
  }

  protected doRun(): VcpuExit {
    this.#flush();
    this.#regs = undefined;
    this.#sregs = undefined;
    const r = this.#libc.ioctlTry(this.fd, abi.KVM_RUN, 0, ["EINTR", "EAGAIN"]);
    if (r < 0) {
      this.#run[RUN_IMMEDIATE_EXIT] = 0;
      return { kind: "interrupted" };
    }
    return this.#decodeExit();
  }

  #decodeExit(): VcpuExit {
    const v = this.#runView;
    const reason = v.getUint32(RUN_EXIT_REASON, true);
    switch (reason) {
      case abi.KVM_EXIT_IO: {
        const size = v.getUint8(RUN_IO_SIZE);
        const count = v.getUint32(RUN_IO_COUNT, true);
        // data_offset is within the kvm_run mapping (a few pages): its low half is enough.
        const offset = v.getUint32(RUN_IO_DATA_OFFSET, true);
        const port = v.getUint16(RUN_IO_PORT, true);
        const data = this.#dataView(offset, size * count);
        return v.getUint8(RUN_IO_DIRECTION) === abi.KVM_EXIT_IO_IN
          ? { kind: "io-in", port, size, count, data }
          : { kind: "io-out", port, size, count, data };
      }
      case abi.KVM_EXIT_MMIO: {
        const gpa = gpaFromHalves(
          v.getUint32(RUN_MMIO_PHYS_ADDR + 4, true),
          v.getUint32(RUN_MMIO_PHYS_ADDR, true),
        );
        const len = Math.min(v.getUint32(RUN_MMIO_LEN, true), 8);
        const data = this.#dataView(RUN_MMIO_DATA, len);
        return v.getUint8(RUN_MMIO_IS_WRITE)
          ? { kind: "mmio-write", gpa, data }
          : { kind: "mmio-read", gpa, data };
      }
      case abi.KVM_EXIT_HLT:
        return { kind: "halt" };
      case abi.KVM_EXIT_IRQ_WINDOW_OPEN:
        return { kind: "interrupt-window" };
      case abi.KVM_EXIT_INTR:
        this.#run[RUN_IMMEDIATE_EXIT] = 0;
        return { kind: "interrupted" };
      case abi.KVM_EXIT_SHUTDOWN:
        return { kind: "shutdown", reason: "triple-fault" };
      case abi.KVM_EXIT_SYSTEM_EVENT: {
        const type = v.getUint32(RUN_SYSTEM_EVENT_TYPE, true);
        if (type === KVM_SYSTEM_EVENT_SHUTDOWN) return { kind: "shutdown", reason: "poweroff" };
        if (type === KVM_SYSTEM_EVENT_RESET) return { kind: "shutdown", reason: "reset" };
        return { kind: "shutdown", reason: "system-event" };
      }
      case abi.KVM_EXIT_FAIL_ENTRY: {
        const hw = v.getBigUint64(RUN_FAIL_ENTRY_REASON, true);
        return {
          kind: "fail",
          raw: reason,
          reason: `KVM_EXIT_FAIL_ENTRY: the CPU refused to enter the guest ` +
            `(hardware reason 0x${hw.toString(16)})${this.describeLocation()}`,
        };
      }
      case abi.KVM_EXIT_INTERNAL_ERROR: {
        const sub = v.getUint32(RUN_INTERNAL_SUBERROR, true);
        const what = sub === 1 ? "emulation failure" : `suberror ${sub}`;
        return {
          kind: "fail",
          raw: reason,
          reason: `KVM_EXIT_INTERNAL_ERROR (${what})${this.describeLocation()}`,
        };
      }
      default:
        return {
          kind: "fail",
          raw: reason,
          reason: `unexpected KVM exit ${
            abi.kvmExitName(reason)
          } (${reason})${this.describeLocation()}`,
        };
    }
  }

  // The exit data views of the last few (offset, length) pairs: KVM uses the same few
  // every time, and not allocating a view per exit keeps the hot path lean.
  readonly #views = new Map<number, Uint8Array>();

  #dataView(offset: number, length: number): Uint8Array {
    const key = offset * 65536 + length;
    let view = this.#views.get(key);
    if (view === undefined) {
      view = this.#run.subarray(offset, offset + length);
      if (this.#views.size < 64) this.#views.set(key, view);
    }
    return view;
  }

  /** " at RIP 0x...: 0f 01 ..." — the bytes at the guest's RIP, for failure reports. */
  describeLocation(): string {
    try {
      const regs = this.getRegisters();
      const sregs = this.getSpecialRegisters();
      const linear = (sregs.cs.base + regs.rip) & 0xffff_ffff_ffff_ffffn;
      const bytes = this.readGuestLinear(linear, 15);
      const hex = bytes ? [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ") : "?";
      return ` at RIP 0x${regs.rip.toString(16)} (CS base 0x${sregs.cs.base.toString(16)}): ${hex}`;
    } catch {
      return "";
    }
  }

  /** Reads up to `length` bytes at a guest linear address through KVM_TRANSLATE. */
  readGuestLinear(linear: bigint, length: number): Uint8Array | undefined {
    const out: number[] = [];
    let addr = linear;
    while (out.length < length) {
      const t = abi.kvm_translation.bytes({ linear_address: addr });
      this.#libc.ioctl(this.fd, abi.KVM_TRANSLATE, t);
      const d = abi.kvm_translation.decode(new DataView(t.buffer));
      if (!d.valid) break;
      const gpa = Number(d.physical_address);
      const inPage = Math.min(length - out.length, 4096 - (gpa & 0xfff));
      if (!this.vm.memory.contains(gpa, inPage)) break;
      out.push(...this.vm.memory.slice(gpa, inPage));
      addr += BigInt(inPage);
    }
    return out.length ? new Uint8Array(out) : undefined;
  }

  protected doCompleteIo(): void {
    // KVM completes IN/MMIO reads from the kvm_run page on the next KVM_RUN.
  }

  readyForInterrupt(): boolean {
    return this.#run[RUN_READY_FOR_INJECTION] !== 0 && this.#run[RUN_IF_FLAG] !== 0;
  }

  injectInterrupt(vector: number): void {
    this.#libc.ioctl(this.fd, abi.KVM_INTERRUPT, abi.kvm_interrupt.bytes({ irq: vector }));
  }

  injectNmi(): void {
    // KVM queues it and delivers it when NMIs are not blocked.
    this.#libc.ioctl(this.fd, abi.KVM_NMI, 0);
  }

  requestInterruptWindow(wanted: boolean): void {
    this.#run[RUN_REQUEST_INTERRUPT_WINDOW] = wanted ? 1 : 0;
  }

  kickToken(): KickToken {
    return { thread: this.#libc.threadId().toString() };
  }

  protected doClose(): void {
    this.#libc.munmap(this.#runMapping);
    this.#libc.close(this.fd);
  }
}
