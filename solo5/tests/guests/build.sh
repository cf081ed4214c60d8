#!/bin/sh
# Builds vmmctl's hvt test unikernels with the host gcc and ld. The built
# images are committed (tests do not need a compiler); run this after
# changing a source. Flags: freestanding, no PIC, no SSE (CPL-0 SSE is not
# emulated on software-nested KVM), no stack protector, no red zone.
set -eu
cd "$(dirname "$0")"
CFLAGS="-O2 -std=gnu11 -ffreestanding -fno-pic -fno-pie -mno-red-zone -mgeneral-regs-only
  -fno-stack-protector -fno-asynchronous-unwind-tables -fcf-protection=none -fno-builtin
  -Wall -Wextra -Werror -Wno-unused-function"
LDFLAGS="-nostdlib -static -no-pie -Wl,-T,hvt.lds -Wl,--build-id=none -Wl,-z,max-page-size=0x1000
  -Wl,-z,noexecstack"
for g in probe blk net; do
  # shellcheck disable=SC2086
  gcc $CFLAGS $LDFLAGS -o "$g.hvt" "$g.c"
done
ls -l ./*.hvt
