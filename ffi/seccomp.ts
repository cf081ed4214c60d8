/**
 * seccomp(2) filters for the VM process, built in TypeScript: a classic-BPF
 * assembler for `struct seccomp_data`, the x86-64 system call numbers, and
 * the allow-list a locked-down VM process runs under (see
 * docs/THREAT_MODEL.md for how the list was measured).
 *
 * The filter is an allow-list: every system call not on it fails with EPERM
 * (a call we missed degrades one operation instead of killing a running
 * guest); `clone3` fails with ENOSYS so that glibc falls back to `clone`,
 * whose flags a filter can read, and `clone` is allowed only with
 * CLONE_THREAD (threads yes, new processes no). A foreign architecture or an
 * x32 call number kills the process.
 *
 * @example
 * ```ts
 * import { buildVmFilter, encodeFilter } from "./seccomp.ts";
 * const program = encodeFilter(buildVmFilter());
 * // program.length / 8 instructions, ready for seccomp(SECCOMP_SET_MODE_FILTER)
 * ```
 * @module
 */

/** One classic-BPF instruction (`struct sock_filter`). */
export interface BpfInsn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

// BPF opcodes (linux/bpf_common.h).
const BPF_LD = 0x00, BPF_W = 0x00, BPF_ABS = 0x20;
const BPF_JMP = 0x05, BPF_JEQ = 0x10, BPF_JGE = 0x30, BPF_JSET = 0x40, BPF_K = 0x00;
const BPF_RET = 0x06;

/** Return values (linux/seccomp.h). */
export const SECCOMP_RET = {
  KILL_PROCESS: 0x80000000,
  TRAP: 0x00030000,
  ERRNO: 0x00050000,
  LOG: 0x7ffc0000,
  ALLOW: 0x7fff0000,
} as const;

/** `struct seccomp_data` offsets. */
const DATA_NR = 0;
const DATA_ARCH = 4;
/** Low 32 bits of argument `i` (little-endian). */
const dataArgLow = (i: number) => 16 + 8 * i;

/** AUDIT_ARCH_X86_64 (EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE). */
export const AUDIT_ARCH_X86_64 = 0xc000003e;
/** x32 system calls have this bit set in their number. */
const X32_SYSCALL_BIT = 0x40000000;
/** CLONE_THREAD (linux/sched.h). */
export const CLONE_THREAD = 0x00010000;

const EPERM = 1;

const words = (s: string): string[] => s.split(" ");
const ENOSYS = 38;

/** `ld [offset]` (a 32-bit word of seccomp_data). */
export function ld(offset: number): BpfInsn {
  return { code: BPF_LD | BPF_W | BPF_ABS, jt: 0, jf: 0, k: offset };
}
/** `jeq #k, jt, jf`. */
export function jeq(k: number, jt: number, jf: number): BpfInsn {
  return { code: BPF_JMP | BPF_JEQ | BPF_K, jt, jf, k: k >>> 0 };
}
/** `jge #k, jt, jf`. */
export function jge(k: number, jt: number, jf: number): BpfInsn {
  return { code: BPF_JMP | BPF_JGE | BPF_K, jt, jf, k: k >>> 0 };
}
/** `jset #k, jt, jf`. */
export function jset(k: number, jt: number, jf: number): BpfInsn {
  return { code: BPF_JMP | BPF_JSET | BPF_K, jt, jf, k: k >>> 0 };
}
/** `ret #k`. */
export function ret(k: number): BpfInsn {
  return { code: BPF_RET | BPF_K, jt: 0, jf: 0, k: k >>> 0 };
}

const X86_64_TABLE = `
  read:0 write:1 open:2 close:3 stat:4 fstat:5 lstat:6 poll:7 lseek:8 mmap:9 mprotect:10
  munmap:11 brk:12 rt_sigaction:13 rt_sigprocmask:14 rt_sigreturn:15 ioctl:16 pread64:17
  pwrite64:18 readv:19 writev:20 access:21 pipe:22 select:23 sched_yield:24 mremap:25 msync:26
  mincore:27 madvise:28 dup:32 dup2:33 pause:34 nanosleep:35 getitimer:36 alarm:37 setitimer:38
  getpid:39 sendfile:40 socket:41 connect:42 accept:43 sendto:44 recvfrom:45 sendmsg:46
  recvmsg:47 shutdown:48 bind:49 listen:50 getsockname:51 getpeername:52 socketpair:53
  setsockopt:54 getsockopt:55 clone:56 fork:57 vfork:58 execve:59 exit:60 wait4:61 kill:62
  uname:63 fcntl:72 flock:73 fsync:74 fdatasync:75 truncate:76 ftruncate:77 getdents:78 getcwd:79
  chdir:80 fchdir:81 rename:82 mkdir:83 rmdir:84 creat:85 link:86 unlink:87 symlink:88
  readlink:89 chmod:90 fchmod:91 chown:92 fchown:93 lchown:94 umask:95 gettimeofday:96
  getrlimit:97 getrusage:98 sysinfo:99 times:100 ptrace:101 getuid:102 syslog:103 getgid:104
  setuid:105 setgid:106 geteuid:107 getegid:108 setpgid:109 getppid:110 getpgrp:111 setsid:112
  setreuid:113 setregid:114 getgroups:115 setgroups:116 setresuid:117 getresuid:118 setresgid:119
  getresgid:120 getpgid:121 setfsuid:122 setfsgid:123 getsid:124 capget:125 capset:126
  rt_sigpending:127 rt_sigtimedwait:128 rt_sigqueueinfo:129 rt_sigsuspend:130 sigaltstack:131
  mknod:133 personality:135 statfs:137 fstatfs:138 sched_setparam:142 sched_getparam:143
  sched_setscheduler:144 sched_getscheduler:145 mlock:149 munlock:150 mlockall:151 munlockall:152
  vhangup:153 modify_ldt:154 pivot_root:155 prctl:157 arch_prctl:158 adjtimex:159 setrlimit:160
  chroot:161 sync:162 acct:163 settimeofday:164 mount:165 umount2:166 swapon:167 swapoff:168
  reboot:169 sethostname:170 setdomainname:171 iopl:172 ioperm:173 init_module:175
  delete_module:176 quotactl:179 gettid:186 readahead:187 tkill:200 time:201 futex:202
  sched_setaffinity:203 sched_getaffinity:204 io_setup:206 lookup_dcookie:212 getdents64:217
  set_tid_address:218 restart_syscall:219 fadvise64:221 timer_create:222 clock_settime:227
  clock_gettime:228 clock_getres:229 clock_nanosleep:230 exit_group:231 epoll_wait:232
  epoll_ctl:233 tgkill:234 utimes:235 mbind:237 kexec_load:246 waitid:247 add_key:248
  request_key:249 keyctl:250 inotify_init:253 openat:257 mkdirat:258 mknodat:259 fchownat:260
  futimesat:261 newfstatat:262 unlinkat:263 renameat:264 linkat:265 symlinkat:266 readlinkat:267
  fchmodat:268 faccessat:269 pselect6:270 ppoll:271 unshare:272 set_robust_list:273
  get_robust_list:274 splice:275 tee:276 sync_file_range:277 vmsplice:278 move_pages:279
  utimensat:280 epoll_pwait:281 timerfd_create:283 eventfd:284 fallocate:285 timerfd_settime:286
  timerfd_gettime:287 accept4:288 eventfd2:290 epoll_create1:291 dup3:292 pipe2:293 preadv:295
  pwritev:296 rt_tgsigqueueinfo:297 perf_event_open:298 recvmmsg:299 prlimit64:302
  name_to_handle_at:303 open_by_handle_at:304 syncfs:306 sendmmsg:307 setns:308 getcpu:309
  process_vm_readv:310 process_vm_writev:311 kcmp:312 finit_module:313 sched_setattr:314
  sched_getattr:315 renameat2:316 seccomp:317 getrandom:318 memfd_create:319 kexec_file_load:320
  bpf:321 execveat:322 userfaultfd:323 membarrier:324 mlock2:325 copy_file_range:326 preadv2:327
  pwritev2:328 pkey_mprotect:329 pkey_alloc:330 pkey_free:331 statx:332 io_pgetevents:333
  rseq:334 pidfd_send_signal:424 io_uring_setup:425 io_uring_enter:426 io_uring_register:427
  open_tree:428 move_mount:429 fsopen:430 fsconfig:431 fsmount:432 fspick:433 pidfd_open:434
  clone3:435 close_range:436 openat2:437 pidfd_getfd:438 faccessat2:439 process_madvise:440
  epoll_pwait2:441 mount_setattr:442 landlock_create_ruleset:444 landlock_add_rule:445
  landlock_restrict_self:446 memfd_secret:447 futex_waitv:449
`;

/** x86-64 system call numbers (asm/unistd_64.h; checked against the header in the tests). */
export const X86_64_SYSCALLS: Readonly<Record<string, number>> = Object.fromEntries(
  X86_64_TABLE.trim().split(/\s+/).map((w) => {
    const [name, nr] = w.split(":");
    return [name, Number(nr)];
  }),
);

/**
 * What a locked-down VM process may call, grouped by who needs it. Measured
 * with `strace -f` on running VMs (serial, virtio-blk, virtio-net, pty
 * console, control socket, pause/stop/reset) after the lock-down point, plus
 * what Deno's runtime (V8, tokio, the GC threads) does on its own.
 */
export const VM_SYSCALL_GROUPS: Readonly<Record<string, readonly string[]>> = {
  /** Files already open: disk images, the tap, the pty, the log, pipes. */
  io: words(
    "read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2 lseek " +
      "close fsync fdatasync ftruncate fallocate fstat fcntl flock dup dup2 dup3 ioctl " +
      "poll ppoll pselect6 select",
  ),
  /** The run directory: state files replaced by rename, the log rotated, files removed at exit. */
  files: words(
    "openat open stat lstat newfstatat statx access faccessat faccessat2 readlink " +
      "readlinkat rename renameat renameat2 unlink unlinkat getdents64 getcwd fchmod chmod " +
      "fchmodat " +
      "fstatfs statfs",
  ),
  /** Memory: guest RAM, V8's heap and JIT (W^X flips), the allocator. */
  memory: words(
    "mmap munmap mprotect mremap madvise brk msync mincore mlock munlock membarrier " +
      "pkey_alloc pkey_free pkey_mprotect",
  ),
  /** Threads and their wake-ups: tokio, V8's platform and GC threads, the vCPU Worker. */
  threads: words(
    "futex futex_waitv sched_yield sched_getaffinity sched_getscheduler " +
      "sched_getparam set_robust_list get_robust_list rseq set_tid_address gettid exit " +
      "exit_group arch_prctl prctl sigaltstack restart_syscall",
  ),
  /** Event loop: epoll, eventfd, timers. */
  events: words(
    "epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2 eventfd2 pipe2 " +
      "timerfd_create timerfd_settime timerfd_gettime clock_gettime clock_getres " +
      "clock_nanosleep nanosleep gettimeofday",
  ),
  /** Signals: the vCPU kick (tgkill SIGUSR2), Deno's signal listeners (SIGTERM, SIGINT). */
  signals: words("rt_sigaction rt_sigprocmask rt_sigreturn rt_sigtimedwait tgkill"),
  /** The control socket, already listening: accept and talk; no new sockets. */
  socket: words(
    "accept4 accept recvfrom sendto recvmsg sendmsg shutdown getsockopt setsockopt " +
      "getsockname getpeername",
  ),
  /** Identity and limits that Deno and glibc read. */
  info: words(
    "getpid getppid getuid geteuid getgid getegid getresuid getresgid getgroups " +
      "uname sysinfo getrusage prlimit64 getrlimit getrandom getcpu times",
  ),
};

/**
 * Calls that stay denied, named so that a test shows each is refused (the
 * filter denies everything not in {@link VM_SYSCALL_GROUPS} anyway).
 */
export const VM_DENIED_EXAMPLES: readonly string[] = words(
  "execve execveat fork vfork socket socketpair connect bind listen ptrace " +
    "process_vm_readv process_vm_writev mount umount2 pivot_root chroot unshare setns " +
    "setuid setgid setresuid setresgid setgroups capset bpf perf_event_open kexec_load " +
    "init_module finit_module keyctl add_key userfaultfd io_uring_setup open_by_handle_at " +
    "mknod chown fchown link symlink mkdir memfd_create personality reboot seccomp",
);

/** Options of {@link buildVmFilter}. */
export interface FilterOptions {
  /** Names to allow (default: every group of {@link VM_SYSCALL_GROUPS}). */
  allow?: readonly string[];
  /** What a call off the list gets (default ERRNO(EPERM); LOG to measure). */
  deny?: number;
  /** When set, tgkill may signal only this process (the vCPU kick), not others of the user. */
  ownPid?: number;
}

/** Every name of {@link VM_SYSCALL_GROUPS}, once. */
export function vmAllowList(): string[] {
  return [...new Set(Object.values(VM_SYSCALL_GROUPS).flat())];
}

/** The number of system call `name`; throws for a name the table lacks. */
export function syscallNumber(name: string): number {
  const n = X86_64_SYSCALLS[name];
  if (n === undefined) throw new Error(`Unknown x86-64 system call "${name}"`);
  return n;
}

/**
 * The VM process's filter. Layout: check the architecture, refuse x32
 * numbers, handle clone/clone3, then one `jeq nr; ret ALLOW` pair per
 * allowed call (short jumps only: BPF jump offsets are 8 bits), then deny.
 */
export function buildVmFilter(options: FilterOptions = {}): BpfInsn[] {
  const deny = options.deny ?? (SECCOMP_RET.ERRNO | EPERM);
  const special = ["clone", "clone3", ...(options.ownPid === undefined ? [] : ["tgkill"])];
  const allow = [...new Set(options.allow ?? vmAllowList())].filter((n) => !special.includes(n));
  const prog: BpfInsn[] = [
    ld(DATA_ARCH),
    jeq(AUDIT_ARCH_X86_64, 1, 0),
    ret(SECCOMP_RET.KILL_PROCESS),
    ld(DATA_NR),
    jge(X32_SYSCALL_BIT, 0, 1),
    ret(SECCOMP_RET.KILL_PROCESS),
    // clone3 passes its flags in memory a filter cannot read: ENOSYS makes glibc use clone.
    jeq(syscallNumber("clone3"), 0, 1),
    ret(SECCOMP_RET.ERRNO | ENOSYS),
    // clone: threads only (CLONE_THREAD in the flags, argument 0).
    jeq(syscallNumber("clone"), 0, 4),
    ld(dataArgLow(0)),
    jset(CLONE_THREAD, 0, 1),
    ret(SECCOMP_RET.ALLOW),
    ret(deny),
  ];
  if (options.ownPid !== undefined) {
    prog.push(
      jeq(syscallNumber("tgkill"), 0, 4),
      ld(dataArgLow(0)),
      jeq(options.ownPid, 0, 1),
      ret(SECCOMP_RET.ALLOW),
      ret(deny),
    );
  }
  for (const name of allow) prog.push(jeq(syscallNumber(name), 0, 1), ret(SECCOMP_RET.ALLOW));
  prog.push(ret(deny));
  return prog;
}

/** `struct sock_filter[]` bytes (8 per instruction, little-endian). */
export function encodeFilter(prog: readonly BpfInsn[]): Uint8Array {
  if (prog.length === 0 || prog.length > 4096) {
    throw new RangeError(`A BPF program has 1..4096 instructions, not ${prog.length}`);
  }
  const out = new Uint8Array(prog.length * 8);
  const view = new DataView(out.buffer);
  prog.forEach((insn, i) => {
    view.setUint16(i * 8, insn.code, true);
    view.setUint8(i * 8 + 2, insn.jt);
    view.setUint8(i * 8 + 3, insn.jf);
    view.setUint32(i * 8 + 4, insn.k, true);
  });
  return out;
}

/** What a `struct seccomp_data` holds, for {@link runFilter}. */
export interface SeccompData {
  nr: number;
  arch?: number;
  /** Arguments' low 32 bits. */
  args?: number[];
}

/**
 * Interprets `prog` for one call, as the kernel would (the subset of classic
 * BPF the filters here use): the tests check the filter's verdicts with it.
 */
export function runFilter(prog: readonly BpfInsn[], data: SeccompData): number {
  let acc = 0;
  for (let pc = 0; pc < prog.length;) {
    const { code, jt, jf, k } = prog[pc];
    if (code === (BPF_LD | BPF_W | BPF_ABS)) {
      if (k === DATA_NR) acc = data.nr;
      else if (k === DATA_ARCH) acc = data.arch ?? AUDIT_ARCH_X86_64;
      else if (k >= 16 && k < 64 && (k - 16) % 8 === 0) acc = data.args?.[(k - 16) / 8] ?? 0;
      else throw new Error(`Unexpected load offset ${k}`);
      acc >>>= 0;
      pc++;
    } else if (code === (BPF_RET | BPF_K)) {
      return k;
    } else {
      let taken: boolean;
      if (code === (BPF_JMP | BPF_JEQ | BPF_K)) taken = acc === k;
      else if (code === (BPF_JMP | BPF_JGE | BPF_K)) taken = acc >= k;
      else if (code === (BPF_JMP | BPF_JSET | BPF_K)) taken = (acc & k) !== 0;
      else throw new Error(`Unexpected BPF opcode 0x${code.toString(16)}`);
      pc += 1 + (taken ? jt : jf);
    }
  }
  throw new Error("The BPF program ran off its end");
}
