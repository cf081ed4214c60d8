/**
 * Fetches a real Debian kernel for the opt-in tests (VMMCTL_TEST_LINUX=1):
 * `apt-get download` of the current linux-image-*-cloud-amd64 package,
 * cached in $VMMCTL_TEST_CACHE (default /tmp/vmmctl-test-cache), unpacked
 * with dpkg-deb.
 *
 * @module
 */

/** Whether the opt-in Linux tests were asked for. */
export const LINUX_TESTS_ENABLED: boolean = Deno.env.get("VMMCTL_TEST_LINUX") === "1";

function sh(cmd: string, args: string[], cwd?: string): string {
  const out = new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).outputSync();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** Downloads (once) and unpacks the Debian cloud kernel; returns the vmlinuz path. */
export function debianKernel(): string {
  const deps = sh("apt-cache", ["depends", "linux-image-cloud-amd64"]);
  const pkg = deps.match(/Depends: (linux-image-[0-9][^\s]*-cloud-amd64)/)?.[1];
  if (!pkg) throw new Error(`no linux-image-*-cloud-amd64 dependency (run apt-get update?)`);
  const cache = Deno.env.get("VMMCTL_TEST_CACHE") ?? "/tmp/vmmctl-test-cache";
  Deno.mkdirSync(cache, { recursive: true });
  const find = () => [...Deno.readDirSync(cache)].find((e) => e.name.startsWith(`${pkg}_`))?.name;
  let deb = find();
  if (!deb) {
    sh("apt-get", ["download", pkg], cache);
    deb = find();
  }
  if (!deb) throw new Error(`apt-get download ${pkg} left no .deb in ${cache}`);
  const root = `${cache}/${pkg}`;
  try {
    Deno.statSync(`${root}/boot`);
  } catch {
    sh("dpkg-deb", ["-x", `${cache}/${deb}`, root]);
  }
  const vmlinuz = [...Deno.readDirSync(`${root}/boot`)].find((e) => e.name.startsWith("vmlinuz-"));
  if (!vmlinuz) throw new Error(`no /boot/vmlinuz-* in ${deb}`);
  return `${root}/boot/${vmlinuz.name}`;
}
