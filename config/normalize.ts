/**
 * The printed forms of a {@link VmConfig}: stable JSON (`check --json`, golden
 * tests) and TOML with every default spelled out (`check`, `import`).
 *
 * @example
 * ```ts
 * import { normalizedToml } from "./normalize.ts";
 * const text = normalizedToml(config); // parses back to the same config
 * ```
 * @module
 */

import type { VmConfig } from "./schema.ts";
import { formatSize } from "./size.ts";

/**
 * Stable pretty JSON of a config (2-space indent, keys in schema order,
 * absent optional keys left out), for `vmmctl check --json` and golden tests.
 */
export function normalizedJson(config: VmConfig): string {
  const vm: Record<string, unknown> = {
    name: config.vm.name,
    memoryBytes: config.vm.memoryBytes,
    vcpus: config.vm.vcpus,
    accel: config.vm.accel,
    irqchip: config.vm.irqchip,
  };
  if (config.vm.owner !== undefined) {
    vm.owner = config.vm.owner.group === undefined
      ? { user: config.vm.owner.user }
      : { user: config.vm.owner.user, group: config.vm.owner.group };
  }
  if (config.vm.user !== undefined) vm.user = config.vm.user;
  const ordered = {
    vm,
    boot: {
      kernel: config.boot.kernel,
      initrd: config.boot.initrd,
      cmdline: config.boot.cmdline,
      bios: config.boot.bios,
      device: config.boot.device,
      onFail: config.boot.onFail,
    },
    cdrom: config.cdrom,
    disks: config.disks.map((d) => ({
      path: d.path,
      format: d.format,
      readonly: d.readonly,
      name: d.name,
    })),
    interfaces: config.interfaces.map((i) => ({ tap: i.tap, lladdr: i.lladdr, name: i.name })),
    console: { serial: config.console.serial, path: config.console.path },
    debug: { exitPort: config.debug.exitPort, lockdown: config.debug.lockdown },
    display: config.display,
    source: config.source,
  };
  return JSON.stringify(ordered, null, 2);
}

/**
 * The config as TOML in the documented format with every default spelled
 * out and absolute paths; parsing it back gives the same config (except
 * `source`). This is what `vmmctl check` prints.
 */
export function normalizedToml(config: VmConfig): string {
  const out: string[] = [];
  if (config.source !== undefined) out.push(`# normalized from ${config.source}`, "");
  out.push("[vm]");
  out.push(`name = ${tomlString(config.vm.name)}`);
  out.push(`memory = ${tomlString(formatSize(config.vm.memoryBytes))}`);
  out.push(`vcpus = ${config.vm.vcpus}`);
  out.push(`accel = ${tomlString(config.vm.accel)}`);
  out.push(`irqchip = ${tomlString(config.vm.irqchip)}`);
  if (config.vm.owner !== undefined) {
    const { user, group } = config.vm.owner;
    out.push(`owner = ${tomlString(group === undefined ? user : `${user}:${group}`)}`);
  }
  if (config.vm.user !== undefined) out.push(`user = ${tomlString(config.vm.user)}`);
  out.push("", "[boot]");
  if (config.boot.kernel !== undefined) out.push(`kernel = ${tomlString(config.boot.kernel)}`);
  if (config.boot.initrd !== undefined) out.push(`initrd = ${tomlString(config.boot.initrd)}`);
  out.push(`cmdline = ${tomlString(config.boot.cmdline)}`);
  if (config.boot.bios !== undefined) out.push(`bios = ${tomlString(config.boot.bios)}`);
  if (config.boot.device !== undefined) out.push(`device = ${tomlString(config.boot.device)}`);
  if (config.boot.onFail !== undefined) out.push(`on_fail = ${tomlString(config.boot.onFail)}`);
  if (config.cdrom !== undefined) {
    out.push("", "[cdrom]", `path = ${tomlString(config.cdrom.path)}`);
  }
  for (const disk of config.disks) {
    out.push("", "[[disk]]");
    out.push(`path = ${tomlString(disk.path)}`);
    out.push(`format = ${tomlString(disk.format)}`);
    out.push(`readonly = ${disk.readonly}`);
    if (disk.name !== undefined) out.push(`name = ${tomlString(disk.name)}`);
  }
  for (const iface of config.interfaces) {
    out.push("", "[[interface]]");
    out.push(`tap = ${tomlString(iface.tap)}`);
    if (iface.lladdr !== undefined) out.push(`lladdr = ${tomlString(iface.lladdr)}`);
    if (iface.name !== undefined) out.push(`name = ${tomlString(iface.name)}`);
  }
  out.push("", "[console]");
  const serial = config.console.serial === "file"
    ? `file:${config.console.path}`
    : config.console.serial;
  out.push(`serial = ${tomlString(serial)}`);
  const d = config.display;
  if (d !== undefined) {
    out.push("", "[display]");
    out.push(`type = ${tomlString(d.type)}`);
    if (d.vnc !== undefined) out.push(`vnc = ${tomlString(d.vnc)}`);
    if (d.web !== undefined) out.push(`web = ${tomlString(d.web)}`);
    if (d.password !== undefined) out.push(`password = ${tomlString(d.password)}`);
    out.push(`serial = ${d.serial}`);
  }
  if (config.debug.exitPort !== undefined || config.debug.lockdown === false) {
    out.push("", "[debug]");
    if (config.debug.exitPort !== undefined) {
      out.push(`exit_port = 0x${config.debug.exitPort.toString(16)}`);
    }
    if (config.debug.lockdown === false) out.push("lockdown = false");
  }
  return out.join("\n") + "\n";
}

/** A TOML basic string; JSON's escapes are valid TOML, except that TOML also wants DEL escaped. */
function tomlString(value: string): string {
  return JSON.stringify(value).replaceAll("\x7f", "\\u007f");
}
