/**
 * DEFLATE (RFC 1951) and gzip (RFC 1952) decompression in TypeScript.
 *
 * Why not `node:zlib`: importing it costs ~35 ms of start-up in every
 * thread that loads it (the vCPU worker included), and vmmctl only needs
 * inflate for compressed qcow2 clusters and gzipped OpenBSD kernels.
 *
 * @example
 * ```ts
 * import { inflateRaw } from "./inflate.ts";
 * inflateRaw(new Uint8Array([0x03, 0x00])); // empty fixed-Huffman block: Uint8Array(0)
 * ```
 * @module
 */

/** Malformed compressed data. */
export class InflateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InflateError";
  }
}

// Base lengths and extra bits for length codes 257..285, and distance codes 0..29.
const LENGTH_BASE = [
  3,
  4,
  5,
  6,
  7,
  8,
  9,
  10,
  11,
  13,
  15,
  17,
  19,
  23,
  27,
  31,
  35,
  43,
  51,
  59,
  67,
  83,
  99,
  115,
  131,
  163,
  195,
  227,
  258,
];
const LENGTH_EXTRA = [
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  1,
  1,
  1,
  1,
  2,
  2,
  2,
  2,
  3,
  3,
  3,
  3,
  4,
  4,
  4,
  4,
  5,
  5,
  5,
  5,
  0,
];
const DIST_BASE = [
  1,
  2,
  3,
  4,
  5,
  7,
  9,
  13,
  17,
  25,
  33,
  49,
  65,
  97,
  129,
  193,
  257,
  385,
  513,
  769,
  1025,
  1537,
  2049,
  3073,
  4097,
  6145,
  8193,
  12289,
  16385,
  24577,
];
const DIST_EXTRA = [
  0,
  0,
  0,
  0,
  1,
  1,
  2,
  2,
  3,
  3,
  4,
  4,
  5,
  5,
  6,
  6,
  7,
  7,
  8,
  8,
  9,
  9,
  10,
  10,
  11,
  11,
  12,
  12,
  13,
  13,
];
// The order code-length code lengths are stored in (dynamic blocks).
const CLEN_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/** A canonical Huffman code: symbol counts per length and symbols in code order. */
interface Huffman {
  counts: Uint16Array;
  symbols: Uint16Array;
}

function buildHuffman(lengths: ArrayLike<number>, n: number): Huffman {
  const counts = new Uint16Array(16);
  for (let i = 0; i < n; i++) counts[lengths[i]]++;
  counts[0] = 0;
  let left = 1;
  for (let len = 1; len < 16; len++) {
    left = left * 2 - counts[len];
    if (left < 0) throw new InflateError("over-subscribed Huffman code");
  }
  const offsets = new Uint16Array(16);
  for (let len = 1; len < 15; len++) offsets[len + 1] = offsets[len] + counts[len];
  const symbols = new Uint16Array(n);
  for (let i = 0; i < n; i++) if (lengths[i]) symbols[offsets[lengths[i]]++] = i;
  return { counts, symbols };
}

const FIXED = (() => {
  const lit = new Uint8Array(288);
  lit.fill(8, 0, 144).fill(9, 144, 256).fill(7, 256, 280).fill(8, 280, 288);
  return { lit: buildHuffman(lit, 288), dist: buildHuffman(new Uint8Array(30).fill(5), 30) };
})();

/** The output would pass the caller's cap (the data may be fine, just too big). */
export class InflateLimitError extends InflateError {
  constructor(readonly limit: number) {
    super(`output larger than the ${limit} bytes allowed`);
    this.name = "InflateLimitError";
  }
}

/** Thrown inside the inflater when a prefix of the wanted length is complete. */
class PrefixDone extends Error {}

/** Bit reader plus a growable output buffer. */
class Inflater {
  #in: Uint8Array;
  #pos = 0;
  #bitBuf = 0;
  #bitCnt = 0;
  out: Uint8Array;
  outLen = 0;
  readonly #max: number;
  /** Stop (with PrefixDone) once this many bytes are out, instead of failing at `#max`. */
  readonly #prefix: boolean;

  constructor(input: Uint8Array, sizeHint: number, maxOutput = Infinity, prefix = false) {
    if (!(maxOutput >= 0)) throw new RangeError(`output cap ${maxOutput} is not >= 0`);
    this.#in = input;
    this.#max = maxOutput;
    this.#prefix = prefix;
    this.out = new Uint8Array(Math.min(Math.max(1024, sizeHint), maxOutput));
  }

  get position(): number {
    return this.#pos;
  }

  bits(n: number): number {
    while (this.#bitCnt < n) {
      if (this.#pos >= this.#in.length) throw new InflateError("compressed data ends early");
      this.#bitBuf |= this.#in[this.#pos++] << this.#bitCnt;
      this.#bitCnt += 8;
    }
    const v = this.#bitBuf & ((1 << n) - 1);
    this.#bitBuf >>>= n;
    this.#bitCnt -= n;
    return v;
  }

  /** Drops the bits left in the current byte (stored blocks start byte aligned). */
  alignToByte(): void {
    this.#bitBuf = 0;
    this.#bitCnt = 0;
  }

  byte(): number {
    if (this.#pos >= this.#in.length) throw new InflateError("compressed data ends early");
    return this.#in[this.#pos++];
  }

  decode(h: Huffman): number {
    let code = 0;
    let first = 0;
    let index = 0;
    for (let len = 1; len < 16; len++) {
      code |= this.bits(1);
      const count = h.counts[len];
      if (code - count < first) return h.symbols[index + (code - first)];
      index += count;
      first = (first + count) << 1;
      code <<= 1;
    }
    throw new InflateError("invalid Huffman code");
  }

  #reserve(n: number): void {
    if (this.outLen + n <= this.out.length) return;
    if (this.outLen + n > this.#max) {
      if (this.#prefix) throw new PrefixDone();
      throw new InflateLimitError(this.#max);
    }
    const bigger = new Uint8Array(
      Math.min(Math.max(this.out.length * 2, this.outLen + n), this.#max),
    );
    bigger.set(this.out.subarray(0, this.outLen));
    this.out = bigger;
  }

  push(b: number): void {
    this.#reserve(1);
    this.out[this.outLen++] = b;
  }

  copy(distance: number, length: number): void {
    if (this.#prefix) {
      // Stop before checking `distance`: the output is cut short of what the stream assumes.
      if (this.outLen >= this.#max) throw new PrefixDone();
      length = Math.min(length, this.#max - this.outLen);
    }
    if (distance > this.outLen) throw new InflateError("distance beyond the start of the output");
    this.#reserve(length);
    const o = this.out;
    for (let i = 0; i < length; i++, this.outLen++) o[this.outLen] = o[this.outLen - distance];
  }

  stored(): void {
    this.alignToByte();
    const len = this.byte() | (this.byte() << 8);
    const nlen = this.byte() | (this.byte() << 8);
    if ((len ^ 0xffff) !== nlen) throw new InflateError("stored block length check failed");
    if (this.#pos + len > this.#in.length) throw new InflateError("stored block ends early");
    if (this.#prefix && this.outLen + len > this.#max) {
      const part = this.#max - this.outLen;
      this.out.set(this.#in.subarray(this.#pos, this.#pos + part), this.outLen);
      this.outLen += part;
      throw new PrefixDone();
    }
    this.#reserve(len);
    this.out.set(this.#in.subarray(this.#pos, this.#pos + len), this.outLen);
    this.outLen += len;
    this.#pos += len;
  }

  codes(lit: Huffman, dist: Huffman): void {
    for (;;) {
      const sym = this.decode(lit);
      if (sym < 256) {
        this.push(sym);
      } else if (sym === 256) {
        return;
      } else {
        const li = sym - 257;
        if (li >= 29) throw new InflateError(`invalid length symbol ${sym}`);
        const length = LENGTH_BASE[li] + this.bits(LENGTH_EXTRA[li]);
        const di = this.decode(dist);
        if (di >= 30) throw new InflateError(`invalid distance symbol ${di}`);
        this.copy(DIST_BASE[di] + this.bits(DIST_EXTRA[di]), length);
      }
    }
  }

  dynamic(): void {
    const nlen = this.bits(5) + 257;
    const ndist = this.bits(5) + 1;
    const ncode = this.bits(4) + 4;
    if (nlen > 286 || ndist > 30) throw new InflateError("bad dynamic block header");
    const clens = new Uint8Array(19);
    for (let i = 0; i < ncode; i++) clens[CLEN_ORDER[i]] = this.bits(3);
    const clen = buildHuffman(clens, 19);
    const lengths = new Uint8Array(nlen + ndist);
    for (let i = 0; i < nlen + ndist;) {
      const sym = this.decode(clen);
      if (sym < 16) {
        lengths[i++] = sym;
        continue;
      }
      let value = 0;
      let repeat: number;
      if (sym === 16) {
        if (i === 0) throw new InflateError("length repeat with no previous length");
        value = lengths[i - 1];
        repeat = 3 + this.bits(2);
      } else if (sym === 17) {
        repeat = 3 + this.bits(3);
      } else {
        repeat = 11 + this.bits(7);
      }
      if (i + repeat > nlen + ndist) throw new InflateError("too many code lengths");
      lengths.fill(value, i, i + repeat);
      i += repeat;
    }
    if (lengths[256] === 0) throw new InflateError("no end-of-block code");
    this.codes(buildHuffman(lengths, nlen), buildHuffman(lengths.subarray(nlen), ndist));
  }

  run(): void {
    let last = 0;
    while (!last) {
      last = this.bits(1);
      const type = this.bits(2);
      if (type === 0) this.stored();
      else if (type === 1) this.codes(FIXED.lit, FIXED.dist);
      else if (type === 2) this.dynamic();
      else throw new InflateError("invalid block type 3");
    }
  }
}

/**
 * Decompresses raw DEFLATE data (no zlib or gzip wrapper); data after the
 * final block is ignored. More than `maxOutput` bytes is an error.
 */
export function inflateRaw(input: Uint8Array, maxOutput = Infinity): Uint8Array {
  const inf = new Inflater(input, input.length * 4, maxOutput);
  inf.run();
  return inf.out.slice(0, inf.outLen);
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3), as gzip uses it. */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const FHCRC = 2;
const FEXTRA = 4;
const FNAME = 8;
const FCOMMENT = 16;

/** True when `data` starts with the gzip magic. */
export function isGzip(data: Uint8Array): boolean {
  return data.length >= 2 && data[0] === 0x1f && data[1] === 0x8b;
}

/** Where the compressed data of the gzip member at `pos` starts. */
function memberDataStart(input: Uint8Array, pos: number): number {
  if (input[pos + 2] !== 8) throw new InflateError(`unknown gzip method ${input[pos + 2]}`);
  const flags = input[pos + 3];
  let at = pos + 10;
  if (flags & FEXTRA) at += 2 + (input[at] | (input[at + 1] << 8));
  if (flags & FNAME) { while (at < input.length && input[at++] !== 0); }
  if (flags & FCOMMENT) { while (at < input.length && input[at++] !== 0); }
  if (flags & FHCRC) at += 2;
  if (at >= input.length) throw new InflateError("gzip header ends early");
  return at;
}

/**
 * The first `length` bytes (fewer when the data is shorter) of the first
 * gzip member's output, decompressing only as far as that takes: format
 * detection looks at a header without paying for the whole file.
 */
export function gunzipPrefix(input: Uint8Array, length: number): Uint8Array {
  if (input.length < 18 || !isGzip(input)) throw new InflateError("not gzip data");
  const at = memberDataStart(input, 0);
  const inf = new Inflater(input.subarray(at), length, length, true);
  try {
    inf.run();
  } catch (e) {
    if (!(e instanceof PrefixDone)) throw e;
  }
  return inf.out.slice(0, Math.min(inf.outLen, length));
}

/**
 * Decompresses a gzip file (one or more members), checking each member's
 * CRC and size. More than `maxOutput` bytes in all is an {@link InflateError},
 * raised as soon as the output passes the cap (so a small file that expands
 * to gigabytes costs at most `maxOutput` of memory).
 */
export function gunzip(input: Uint8Array, maxOutput = Infinity): Uint8Array {
  const parts: Uint8Array[] = [];
  let total = 0;
  let pos = 0;
  while (pos < input.length) {
    if (input.length - pos < 18 || !isGzip(input.subarray(pos))) {
      if (parts.length) break; // trailing padding after the last member
      throw new InflateError("not gzip data");
    }
    const at = memberDataStart(input, pos);
    const inf = new Inflater(
      input.subarray(at),
      (input.length - at) * 4,
      maxOutput - total,
    );
    inf.run();
    const data = inf.out.subarray(0, inf.outLen);
    const end = at + inf.position;
    if (end + 8 > input.length) throw new InflateError("gzip trailer missing");
    const view = new DataView(input.buffer, input.byteOffset + end, 8);
    if (view.getUint32(0, true) !== crc32(data)) throw new InflateError("gzip CRC mismatch");
    if (view.getUint32(4, true) !== (data.length >>> 0)) {
      throw new InflateError("gzip size mismatch");
    }
    parts.push(data);
    total += data.length;
    pos = end + 8;
  }
  if (parts.length === 1) return parts[0].slice();
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
