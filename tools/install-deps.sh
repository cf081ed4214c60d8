#!/usr/bin/env bash
# Installs the Debian packages vmmctl's tests and benchmarks use, when missing (needs root).
set -euo pipefail
# chromium: the browser test of the web console; openssl: the DES reference for VNC authentication.
pkgs=(nasm qemu-system-x86 qemu-utils chromium openssl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
