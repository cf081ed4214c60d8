/**
 * `vmmctl check` and `vmmctl up` agree on exit_port: the config check
 * refuses every port the machine's wiring would refuse, and the virtio
 * functions' I/O BARs besides (which the machine would silently disable).
 */
import assert from "node:assert/strict";
import { formatConfigError, parseConfig } from "../../config/parse.ts";
import { fixedPortRanges, portClash, virtioFunctionCount } from "../../core/ports.ts";
import { nullConfig, nullMachine } from "../harness/null_accel.ts";

function checkErrors(port: number, disks = 0): string[] {
  const disk = Array.from({ length: disks }, (_, i) => `[[disk]]\npath = "d${i}.img"\n`).join("");
  const text = `[vm]\nname = "p"\n[boot]\nkernel = "k"\n${disk}[debug]\nexit_port = ${port}\n`;
  const { errors } = parseConfig(text, { baseDir: "/", checkFiles: false });
  return errors.map(formatConfigError);
}

function upRefuses(port: number): boolean {
  const saved = console.error;
  console.error = () => {}; // a virtio BAR that cannot decode is logged
  try {
    const config = nullConfig({ debug: { exitPort: port } });
    nullMachine(config).machine.close();
    return false;
  } catch (e) {
    assert.match(String(e), /overlaps/);
    return true;
  } finally {
    console.error = saved;
  }
}

Deno.test("check refuses exit_port on COM1, 0xCF8, the PIC, the virtio BARs; the error says where", () => {
  const cases: [number, RegExp][] = [
    [0x3f8, /0x3f8-0x3fb overlaps the com1 at 0x3f8-0x3ff/],
    [0xcf8, /overlaps the pci address at 0xcf8-0xcfb/],
    [0xcfe, /overlaps the pci data at 0xcfc-0xcff/],
    [0x20, /overlaps the pic master/],
    [0xc000, /overlaps the virtio function 0 I\/O BAR at 0xc000-0xc0ff/],
    [0xc1fe, /overlaps the virtio function 1 I\/O BAR/],
  ];
  for (const [port, re] of cases) {
    const errors = checkErrors(port);
    assert.equal(errors.length, 1, `0x${port.toString(16)}: ${errors}`);
    assert.match(errors[0], /^debug\.exit_port \(line \d+\): /);
    assert.match(errors[0], re);
  }
  // Two disks add two functions: 0xc200 is free without them, taken with them.
  assert.deepEqual(checkErrors(0xc200), []);
  assert.match(checkErrors(0xc200, 2)[0], /virtio function 2 I\/O BAR/);
  assert.deepEqual(checkErrors(0xf4), []);
  // With a display, the VGA registers are taken too.
  const vga = (extra: string) =>
    parseConfig(`[vm]\nname = "p"\n[boot]\nkernel = "k"\n${extra}[debug]\nexit_port = 0x3c4\n`, {
      baseDir: "/",
      checkFiles: false,
    }).errors.map(formatConfigError);
  assert.deepEqual(vga(""), []);
  assert.match(
    vga(`[display]\ntype = "vga"\n`).join(),
    /overlaps the vga registers at 0x3c0-0x3df/,
  );
});

Deno.test("every exit_port the machine refuses, check refuses (around every fixed range)", () => {
  const functions = virtioFunctionCount(0, 0);
  const ports = new Set<number>([0, 0xf4, 0x501, 0xfffc]);
  for (const r of fixedPortRanges(functions)) {
    for (let p = r.base - 4; p <= r.base + r.length + 1; p++) if (p >= 0) ports.add(p);
  }
  let refused = 0;
  for (const port of ports) {
    const check = checkErrors(port).length > 0;
    assert.equal(check, portClash(port, 4, functions) !== undefined, `port 0x${port.toString(16)}`);
    if (upRefuses(port)) {
      refused++;
      assert.ok(check, `up refuses 0x${port.toString(16)} but check accepts it`);
    }
  }
  assert.ok(refused > 50, String(refused));
});
