#!/usr/bin/env bash
# Installs the Debian packages vmmctl's tests and benchmarks use, when they are missing.
# Called by `deno task test` (and so by .ci/run) before the suite. It never fails: when it cannot
# install something (not root, not Debian, offline) it says so in one line and the tests that
# need it skip.
set -uo pipefail

# package      what uses it (add a line when a test needs another tool)
pkgs=(
  nasm            # x86 decoder and test-guest assembly tests
  qemu-system-x86 # the reference the test guests' output is compared with
  qemu-utils      # qemu-img/qemu-io: qcow2 interoperability
  chromium        # the browser test of the web console
  openssl         # the DES reference for VNC authentication
  gcc             # the vmm(4) header probe against test header trees
  man-db          # man -l renders the manual pages in man/
  mandoc          # mandoc -T lint checks them
  seabios         # the BIOS firmware VMs without a kernel boot through (and the BIOS tests)
  grub-pc-bin     # grub-mkrescue's BIOS modules: the gated ISO boot tests
  xorriso         # grub-mkrescue writes the ISO with it
  mtools          # grub-mkrescue
  syslinux        # isolinux/syslinux boot images
  isolinux
  acpica-tools    # iasl: decompiles the generated ACPI tables
)

say() { echo "install-deps: $*" >&2; }

if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  say "not a Debian system: install ${pkgs[*]} yourself (tests that need them skip)"
  exit 0
fi
missing() {
  local p out=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out+=("$p")
  done
  echo "${out[*]}"
}
# The unprivileged user VM processes run as once set up (see docs/THREAT_MODEL.md); vmmctl
# also creates it on first use as root.
if [ "$(id -u)" -eq 0 ] && ! getent passwd _vmmctl >/dev/null; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --comment "vmmctl VM processes" _vmmctl ||
    say "could not create the user _vmmctl (vmmctl up tries again as root)"
fi
todo=$(missing)
[ -z "$todo" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  say "not root, could not install: $todo (tests that need them skip)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
# shellcheck disable=SC2086 # one word per package
{ apt-get update -qq && apt-get install -y -qq --no-install-recommends $todo; } >"$log" 2>&1
left=$(missing)
if [ -n "$left" ]; then
  say "could not install: $left ($(grep -E '^(E|W):' "$log" | head -n 1 || true)); tests that need them skip"
fi
rm -f "$log"
exit 0
