/**
 * A VM console on a pseudo-terminal: guest output goes to the pty, whatever
 * is typed on its slave side (`cu -l /dev/pts/N`, `screen`) goes to the guest.
 *
 * @module
 */

import { openProcessLibc } from "../../ffi/libc.ts";

/** How often the master is polled for input (non-blocking reads). */
const PTY_POLL_MS = 25;

/** A pty pair held open for a VM's serial console. */
export class PtyConsole {
  /** The slave's path (what `status` shows as TTY). */
  readonly path: string;
  #master: number;
  #slave: number;
  #poll?: ReturnType<typeof setInterval>;

  private constructor(path: string, master: number, slave: number) {
    this.path = path;
    this.#master = master;
    this.#slave = slave;
  }

  /** Allocates a pty. */
  static open(): PtyConsole {
    const libc = openProcessLibc();
    const pty = libc.openPty();
    // We hold the slave open ourselves: reads on the master never see a hang-up,
    // and raw mode stops the line discipline echoing guest output back as input.
    const slave = libc.openTerminal(pty.slavePath);
    libc.makeRaw(slave);
    return new PtyConsole(pty.slavePath, pty.masterFd, slave);
  }

  /** Guest output; a full pty (nobody reading the slave) drops it rather than stall the VM. */
  write(bytes: Uint8Array): void {
    if (this.#master >= 0) openProcessLibc().writeNonblocking(this.#master, bytes);
  }

  /** Starts handing what is typed on the slave side to `onInput`. */
  startPolling(onInput: (bytes: Uint8Array) => void): void {
    const buf = new Uint8Array(4096);
    this.#poll = setInterval(() => {
      if (this.#master < 0) return;
      try {
        const n = openProcessLibc().readNonblocking(this.#master, buf);
        if (n > 0) onInput(buf.slice(0, n));
      } catch {
        // EIO while nobody holds the slave: nothing to read
      }
    }, PTY_POLL_MS);
  }

  /** Stops polling and closes both sides (idempotent). */
  close(): void {
    if (this.#poll !== undefined) clearInterval(this.#poll);
    this.#poll = undefined;
    const libc = openProcessLibc();
    for (const fd of [this.#master, this.#slave]) {
      if (fd < 0) continue;
      try {
        libc.close(fd);
      } catch {
        // already closed
      }
    }
    this.#master = this.#slave = -1;
  }
}
