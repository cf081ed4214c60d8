/**
 * The error a verb shows the user as it is (`vmmctl: MESSAGE`, exit status 1),
 * and the wrapper that prints it.
 *
 * @module
 */

/** An error for the user: printed as it is, exit status 1. */
export class ManagedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ManagedError";
  }
}

/** Runs a verb, printing a {@link ManagedError} as `vmmctl: MESSAGE` with exit status 1. */
export async function reportErrors(fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ManagedError) {
      // One `vmmctl: ` per line, as err(3) prints each of vmctl's messages.
      console.error(e.message.split("\n").map((l) => `vmmctl: ${l}`).join("\n"));
      return 1;
    }
    throw e;
  }
}
