/**
 * C struct layouts declared once as field tables.
 *
 * A layout computes offsets, size and alignment with the C rules of the
 * x86-64 SysV ABI (every scalar aligned to its size, a struct aligned to its
 * most aligned member, size rounded up to that alignment) and encodes/decodes
 * values over a DataView. Kernel ABIs are declared with these tables and tests
 * compare the computed offsets against what a C compiler prints.
 *
 * @example
 * ```ts
 * import { defineStruct, array } from "./struct.ts";
 * const range = defineStruct("vm_mem_range", [
 *   ["vmr_gpa", "u64"], ["vmr_va", "u64"], ["vmr_size", "u64"], ["vmr_type", "u32"],
 * ]);
 * range.size; // 32
 * const buf = new Uint8Array(range.size);
 * range.encode(new DataView(buf.buffer), { vmr_size: 4096n });
 * ```
 * @module
 */

/** A scalar C type. 64-bit values are bigint in JavaScript. */
export type Scalar = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "u64" | "i64";

/** A fixed-length C array. */
export interface ArrayType<E extends FieldType = FieldType> {
  readonly kind: "array";
  readonly element: E;
  readonly length: number;
}

/** Explicit padding bytes (alignment 1). */
export interface PadType {
  readonly kind: "pad";
  readonly bytes: number;
}

/** Any field type of a layout. */
export type FieldType = Scalar | ArrayType | PadType | StructLayout<object>;

/** The JavaScript value of a field type: 64-bit scalars are bigint, arrays are arrays. */
export type ValueOf<F> = F extends "u64" | "i64" ? bigint
  : F extends Scalar ? number
  : F extends StructLayout<infer T> ? T
  : F extends ArrayType<infer E> ? ValueOf<E>[]
  : never;

/** One member of a declaration: its name and type. */
export type Member = readonly [string, FieldType];

/** The decoded object of a struct declared with `members` (padding left out). */
export type StructOf<M extends readonly Member[]> = {
  [P in M[number] as P[1] extends PadType ? never : P[0]]: ValueOf<P[1]>;
};

/**
 * What {@link StructLayout.encode} accepts for a value of type `V`: any subset
 * of the fields, numbers for 64-bit fields too, and a string or bytes for a
 * byte array.
 */
export type EncodeValue<V> = V extends bigint ? bigint | number
  : V extends number ? number
  : V extends readonly (infer E)[] ? readonly (EncodeValue<E> | undefined)[] | Uint8Array | string
  : V extends object ? { readonly [K in keyof V]?: EncodeValue<V[K]> }
  : never;

/** Declares `T name[length]`. */
export function array<E extends FieldType>(element: E, length: number): ArrayType<E> {
  if (!Number.isInteger(length) || length < 0) {
    throw new RangeError(`Cannot declare array of length ${length}`);
  }
  return { kind: "array", element, length };
}

/** Members of one type: `fields(["a", "b"], "u64")` is `[["a", "u64"], ["b", "u64"]]`. */
export function fields<const N extends readonly string[], T extends FieldType>(
  names: N,
  type: T,
): { readonly [I in keyof N]: readonly [N[I], T] } {
  return names.map((n) => [n, type] as const) as { readonly [I in keyof N]: readonly [N[I], T] };
}

/** Declares `bytes` bytes of explicit padding. */
export function pad(bytes: number): PadType {
  return { kind: "pad", bytes };
}

const SCALAR_SIZE: Record<Scalar, number> = {
  u8: 1,
  i8: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  u64: 8,
  i64: 8,
};

/** Size in bytes of a field type. */
export function sizeOf(type: FieldType): number {
  if (typeof type === "string") return SCALAR_SIZE[type];
  if (type instanceof StructLayout) return type.size;
  if (type.kind === "array") return sizeOf(type.element) * type.length;
  return type.bytes;
}

/** Alignment in bytes of a field type. */
export function alignOf(type: FieldType): number {
  if (typeof type === "string") return SCALAR_SIZE[type];
  if (type instanceof StructLayout) return type.align;
  if (type.kind === "array") return alignOf(type.element);
  return 1;
}

/** One placed field of a layout. */
export interface Field {
  readonly name: string;
  readonly type: FieldType;
  readonly offset: number;
  readonly size: number;
}

/**
 * A computed struct (or union) layout; `T` is its decoded value, inferred
 * from the declaration by {@link defineStruct} and {@link defineUnion}.
 */
export class StructLayout<T extends object = object> {
  /** The C name, used in error messages. */
  readonly name: string;
  /** sizeof(struct). */
  readonly size: number;
  /** alignof(struct). */
  readonly align: number;
  /** Fields in declaration order with their offsets. */
  readonly fields: readonly Field[];
  readonly #byName: Map<string, Field>;

  constructor(name: string, fields: readonly Field[], size: number, align: number) {
    this.name = name;
    this.fields = fields;
    this.size = size;
    this.align = align;
    this.#byName = new Map(fields.map((f) => [f.name, f]));
  }

  /** The field called `name`; throws when there is none. */
  field(name: string): Field {
    const f = this.#byName.get(name);
    if (!f) throw new Error(`Struct "${this.name}" has no field "${name}"`);
    return f;
  }

  /**
   * Offset of a field path such as `"vrs.vrs_gprs[16]"` or `"vei.vei_port"`.
   */
  offsetOf(path: string): number {
    return pathOffset(this, path);
  }

  /** Decodes the struct at `base` of `view` into a plain object. */
  decode(view: DataView, base = 0): T {
    const out: Record<string, unknown> = {};
    for (const f of this.fields) {
      if (
        typeof f.type !== "string" && !(f.type instanceof StructLayout) && f.type.kind === "pad"
      ) {
        continue;
      }
      out[f.name] = decodeField(view, base + f.offset, f.type);
    }
    return out as T;
  }

  /**
   * Writes the fields present in `value` at `base` of `view`; absent fields
   * keep their bytes (zero a buffer first for a fresh struct). Unknown names
   * do not type-check, and throw at run time.
   */
  encode(view: DataView, value: EncodeValue<T>, base = 0): void {
    for (const [name, v] of Object.entries(value)) {
      if (v === undefined) continue;
      const f = this.field(name);
      encodeField(view, base + f.offset, f.type, v, `${this.name}.${name}`);
    }
  }

  /** A fresh zeroed buffer of this struct's size with `value` encoded in it. */
  bytes(value: EncodeValue<T> = {} as EncodeValue<T>): Uint8Array {
    const buf = new Uint8Array(this.size);
    this.encode(new DataView(buf.buffer), value);
    return buf;
  }
}

/** Offset of a field path within `root` (see {@link StructLayout.offsetOf}). */
function pathOffset(root: StructLayout<object>, path: string): number {
  let layout: FieldType = root;
  let offset = 0;
  for (const part of path.split(".")) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$/.exec(part);
    if (!m || !(layout instanceof StructLayout)) {
      throw new Error(`Cannot resolve "${path}" in struct "${root.name}"`);
    }
    const f: Field = layout.field(m[1]);
    offset += f.offset;
    layout = f.type;
    for (const idx of m[2].matchAll(/\[(\d+)\]/g)) {
      if (typeof layout === "string" || !("kind" in layout) || layout.kind !== "array") {
        throw new Error(`"${part}" in "${path}" is not an array`);
      }
      const i = Number(idx[1]);
      if (i >= layout.length) throw new RangeError(`Index ${i} out of range in "${path}"`);
      offset += i * sizeOf(layout.element);
      layout = layout.element;
    }
  }
  return offset;
}

/** Declares a struct; members are laid out with C alignment rules. */
export function defineStruct<const M extends readonly Member[]>(
  name: string,
  members: M,
  options: { packed?: boolean } = {},
): StructLayout<StructOf<M>> {
  let offset = 0;
  let align = 1;
  const fields: Field[] = [];
  for (const [fname, type] of members) {
    const a = options.packed ? 1 : alignOf(type);
    offset = roundUp(offset, a);
    const size = sizeOf(type);
    fields.push({ name: fname, type, offset, size });
    offset += size;
    align = Math.max(align, a);
  }
  return new StructLayout(name, fields, roundUp(offset, align), align);
}

/** Declares a union: every member at offset 0. */
export function defineUnion<const M extends readonly Member[]>(
  name: string,
  members: M,
): StructLayout<StructOf<M>> {
  let size = 0;
  let align = 1;
  const fields: Field[] = members.map(([fname, type]) => {
    size = Math.max(size, sizeOf(type));
    align = Math.max(align, alignOf(type));
    return { name: fname, type, offset: 0, size: sizeOf(type) };
  });
  return new StructLayout(name, fields, roundUp(size, align), align);
}

/**
 * Lifts the fields of the struct/union member `member` into `layout` (C11
 * anonymous members): same bytes, but reached without the member's name.
 */
export function liftAnonymous<T extends object, K extends keyof T & string>(
  layout: StructLayout<T>,
  member: K,
): StructLayout<Omit<T, K> & T[K]> {
  const fields = layout.fields.flatMap((f): Field[] => {
    if (f.name !== member) return [f];
    if (!(f.type instanceof StructLayout)) {
      throw new Error(`Member "${member}" of "${layout.name}" is not a struct or union`);
    }
    return f.type.fields.map((g) => ({ ...g, offset: g.offset + f.offset }));
  });
  return new StructLayout(layout.name, fields, layout.size, layout.align);
}

function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

function decodeField(view: DataView, at: number, type: FieldType): unknown {
  if (typeof type === "string") return readScalar(view, at, type);
  if (type instanceof StructLayout) return type.decode(view, at);
  if (type.kind === "array") {
    const step = sizeOf(type.element);
    return Array.from(
      { length: type.length },
      (_, i) => decodeField(view, at + i * step, type.element),
    );
  }
  return undefined;
}

function encodeField(view: DataView, at: number, type: FieldType, v: unknown, path: string): void {
  if (typeof type === "string") return writeScalar(view, at, type, v, path);
  if (type instanceof StructLayout) {
    return type.encode(view, v as EncodeValue<object>, at);
  }
  if (type.kind === "array") {
    const step = sizeOf(type.element);
    if (type.element === "u8" && (typeof v === "string" || v instanceof Uint8Array)) {
      const bytes = typeof v === "string" ? new TextEncoder().encode(v) : v;
      if (bytes.length > type.length) {
        throw new RangeError(`${path}: ${bytes.length} bytes do not fit in ${type.length}`);
      }
      new Uint8Array(view.buffer, view.byteOffset + at, bytes.length).set(bytes);
      return;
    }
    const list = v as unknown[];
    if (!Array.isArray(list) || list.length > type.length) {
      throw new RangeError(`${path}: expected an array of at most ${type.length} elements`);
    }
    list.forEach((e, i) => {
      if (e !== undefined) encodeField(view, at + i * step, type.element, e, `${path}[${i}]`);
    });
    return;
  }
  throw new Error(`${path}: cannot write to padding`);
}

/** Reads one scalar (little-endian). */
export function readScalar(view: DataView, at: number, type: Scalar): number | bigint {
  switch (type) {
    case "u8":
      return view.getUint8(at);
    case "i8":
      return view.getInt8(at);
    case "u16":
      return view.getUint16(at, true);
    case "i16":
      return view.getInt16(at, true);
    case "u32":
      return view.getUint32(at, true);
    case "i32":
      return view.getInt32(at, true);
    case "u64":
      return view.getBigUint64(at, true);
    case "i64":
      return view.getBigInt64(at, true);
  }
}

function writeScalar(view: DataView, at: number, type: Scalar, v: unknown, path: string): void {
  if (type === "u64" || type === "i64") {
    const b = typeof v === "bigint" ? v : BigInt(v as number);
    if (type === "u64") view.setBigUint64(at, BigInt.asUintN(64, b), true);
    else view.setBigInt64(at, BigInt.asIntN(64, b), true);
    return;
  }
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new TypeError(`${path}: expected an integer, got ${String(v)}`);
  }
  switch (type) {
    case "u8":
    case "i8":
      return view.setUint8(at, v & 0xff);
    case "u16":
    case "i16":
      return view.setUint16(at, v & 0xffff, true);
    case "u32":
    case "i32":
      return view.setUint32(at, v >>> 0, true);
  }
}
