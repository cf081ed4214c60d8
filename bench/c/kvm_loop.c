/*
 * kvm_loop: the reference for vmmctl's exit round-trip benchmark. A minimal
 * KVM run loop in C that runs a machine snapshot written by
 * bench/snapshot.ts (guest RAM pages + the vCPU's kvm_regs/kvm_sregs exactly
 * as vmmctl's loader set them), so it executes the same guest bytes in the
 * same CPU mode as vmmctl does.
 *
 * Devices: COM1's line status register reads "transmitter empty", every
 * other port reads all ones, writes are dropped; MMIO reads are zero, writes
 * dropped. The run ends at the first write to the snapshot's exit port.
 *
 * Output: one JSON object on stdout with the exit counts, the times (ns)
 * from the first KVM_RUN and from the first "counted" exit (the snapshot's
 * benchmark port or MMIO address) to the exit-port write, and the thread's
 * user and system CPU time over the latter.
 *
 * Build: cc -O2 -o kvm_loop kvm_loop.c      Run: kvm_loop SNAPSHOT
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Where vmmctl's KVM back-end puts KVM's private pages (accel/kvm/kvm.ts). */
#define TSS_ADDR 0xfffbd000UL
#define IDENTITY_MAP_ADDR 0xfffbc000ULL
#define COM1_LSR 0x3fd
#define LSR_THRE_TEMT 0x60
#define PAGE 4096
#define MAX_REGIONS 8

/* CPUID leaf 1 bits vmmctl hides when the interrupt controller is its own. */
#define CPUID1_EDX_APIC (1u << 9)
#define CPUID1_ECX_X2APIC (1u << 21)
#define CPUID1_ECX_TSC_DEADLINE (1u << 24)
#define CPUID1_ECX_HYPERVISOR (1u << 31)

static void die(const char *what) {
  fprintf(stderr, "kvm_loop: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void fail(const char *what) {
  fprintf(stderr, "kvm_loop: %s\n", what);
  exit(2);
}

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

/* User and system CPU ns of this thread. */
static void cpu_ns(uint64_t *user, uint64_t *sys) {
  struct rusage r;
  getrusage(RUSAGE_THREAD, &r);
  *user = (uint64_t)r.ru_utime.tv_sec * 1000000000ULL + (uint64_t)r.ru_utime.tv_usec * 1000ULL;
  *sys = (uint64_t)r.ru_stime.tv_sec * 1000000000ULL + (uint64_t)r.ru_stime.tv_usec * 1000ULL;
}

static FILE *snap;

static void get(void *p, size_t n) {
  if (fread(p, 1, n, snap) != n) fail("snapshot is truncated");
}

static uint32_t get32(void) {
  uint32_t v;
  get(&v, 4);
  return v;
}

static uint64_t get64(void) {
  uint64_t v;
  get(&v, 8);
  return v;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: kvm_loop SNAPSHOT\n");
    return 2;
  }
  snap = fopen(argv[1], "rb");
  if (!snap) die(argv[1]);
  char magic[8];
  get(magic, 8);
  if (memcmp(magic, "VMMBSNAP", 8) != 0) fail("not a vmmctl bench snapshot");
  if (get32() != 1) fail("unknown snapshot version");
  uint32_t exit_port = get32();
  uint32_t count_port = get32(); /* 0xffffffff: none */
  uint64_t count_mmio = get64(); /* ~0: none */
  uint32_t nregions = get32();
  if (nregions == 0 || nregions > MAX_REGIONS) fail("bad region count");

  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("/dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  if (ioctl(vm, KVM_SET_TSS_ADDR, TSS_ADDR) < 0) die("KVM_SET_TSS_ADDR");
  uint64_t idmap = IDENTITY_MAP_ADDR;
  if (ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) die("KVM_SET_IDENTITY_MAP_ADDR");

  uint64_t gpas[MAX_REGIONS], sizes[MAX_REGIONS];
  uint8_t *hosts[MAX_REGIONS];
  for (uint32_t i = 0; i < nregions; i++) {
    gpas[i] = get64();
    sizes[i] = get64();
    hosts[i] = mmap(NULL, sizes[i], PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (hosts[i] == MAP_FAILED) die("mmap guest RAM");
    struct kvm_userspace_memory_region r = {
        .slot = i,
        .guest_phys_addr = gpas[i],
        .memory_size = sizes[i],
        .userspace_addr = (uint64_t)(uintptr_t)hosts[i],
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
  }

  struct kvm_regs regs;
  struct kvm_sregs sregs;
  if (get32() != sizeof regs) fail("kvm_regs size differs from this kernel's");
  get(&regs, sizeof regs);
  if (get32() != sizeof sregs) fail("kvm_sregs size differs from this kernel's");
  get(&sregs, sizeof sregs);

  uint32_t npages = get32();
  for (uint32_t p = 0; p < npages; p++) {
    uint64_t gpa = get64();
    uint32_t i = 0;
    while (i < nregions && !(gpa >= gpas[i] && gpa + PAGE <= gpas[i] + sizes[i])) i++;
    if (i == nregions) fail("snapshot page outside guest RAM");
    get(hosts[i] + (gpa - gpas[i]), PAGE);
  }
  fclose(snap);

  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size < 0) die("KVM_GET_VCPU_MMAP_SIZE");
  struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");

  /* The same CPUID as vmmctl gives a vCPU with its own PIC. */
  int nent = 256;
  struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + nent * sizeof(struct kvm_cpuid_entry2));
  cpuid->nent = nent;
  if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
  for (uint32_t i = 0; i < cpuid->nent; i++) {
    struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
    if (e->function == 1) {
      e->ecx |= CPUID1_ECX_HYPERVISOR;
      e->edx &= ~CPUID1_EDX_APIC;
      e->ecx &= ~(CPUID1_ECX_X2APIC | CPUID1_ECX_TSC_DEADLINE);
      e->ebx &= 0x00ffffff;
    }
  }
  if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

  uint64_t exits = 0, pio = 0, mmio = 0, counted = 0;
  uint64_t t_start = now_ns(), t_first = 0;
  uint64_t user0 = 0, sys0 = 0, user1, sys1;
  int status = -1;
  while (status < 0) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      die("KVM_RUN");
    }
    exits++;
    switch (run->exit_reason) {
      case KVM_EXIT_IO: {
        uint8_t *data = (uint8_t *)run + run->io.data_offset;
        uint32_t bytes = run->io.size * run->io.count;
        pio++;
        if (run->io.port == count_port && counted++ == 0) {
          t_first = now_ns();
          cpu_ns(&user0, &sys0);
        }
        if (run->io.direction == KVM_EXIT_IO_OUT) {
          if (run->io.port == exit_port) {
            status = data[0];
          }
        } else {
          memset(data, run->io.port == COM1_LSR ? LSR_THRE_TEMT : 0xff, bytes);
        }
        break;
      }
      case KVM_EXIT_MMIO:
        mmio++;
        if (run->mmio.phys_addr == count_mmio && counted++ == 0) {
          t_first = now_ns();
          cpu_ns(&user0, &sys0);
        }
        if (!run->mmio.is_write) memset(run->mmio.data, 0, sizeof run->mmio.data);
        break;
      default:
        fprintf(stderr, "kvm_loop: unexpected exit reason %u at exit %llu\n", run->exit_reason,
                (unsigned long long)exits);
        return 3;
    }
  }
  uint64_t t_end = now_ns();
  cpu_ns(&user1, &sys1);
  printf("{\"status\":%d,\"exits\":%llu,\"pioExits\":%llu,\"mmioExits\":%llu,"
         "\"countedExits\":%llu,\"loopNs\":%llu,\"countedNs\":%llu,"
         "\"countedUserNs\":%llu,\"countedSysNs\":%llu}\n",
         status, (unsigned long long)exits, (unsigned long long)pio,
         (unsigned long long)mmio, (unsigned long long)counted,
         (unsigned long long)(t_end - t_start),
         (unsigned long long)(counted ? t_end - t_first : 0),
         (unsigned long long)(user1 - user0), (unsigned long long)(sys1 - sys0));
  return 0;
}
