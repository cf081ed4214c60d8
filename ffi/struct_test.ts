import assert from "node:assert/strict";
import {
  alignOf,
  array,
  defineStruct,
  defineUnion,
  pad,
  readScalar,
  sizeOf,
  type StructLayout,
} from "./struct.ts";
import {
  CC_PATH,
  compileAndRun,
  cProgram,
  NO_CC_MESSAGE,
  parseProbeOutput,
  probeLayout,
} from "../tests/cc.ts";

const offsets = (l: StructLayout) => Object.fromEntries(l.fields.map((f) => [f.name, f.offset]));

Deno.test("struct: scalars are aligned to their size and the struct to its widest member", () => {
  const s = defineStruct("mixed", [
    ["a", "u8"],
    ["b", "u32"],
    ["c", "u16"],
    ["d", "u64"],
    ["e", "i8"],
  ]);
  assert.deepEqual(offsets(s), { a: 0, b: 4, c: 8, d: 16, e: 24 });
  assert.equal(s.size, 32); // trailing padding up to the 8-byte alignment
  assert.equal(s.align, 8);
  assert.deepEqual(s.fields.map((f) => f.size), [1, 4, 2, 8, 1]);

  const small = defineStruct("small", [["x", "u16"], ["y", "u8"]]);
  assert.equal(small.size, 4);
  assert.equal(small.align, 2);
  assert.equal(defineStruct("empty", []).size, 0);
});

Deno.test("struct: nested structs are placed at their own alignment", () => {
  const inner = defineStruct("inner", [["lo", "u32"], ["hi", "u64"]]);
  const outer = defineStruct("outer", [["tag", "u8"], ["in", inner], ["tail", "u16"]]);
  assert.equal(inner.size, 16);
  assert.deepEqual(offsets(outer), { tag: 0, in: 8, tail: 24 });
  assert.equal(outer.size, 32);
  assert.equal(outer.offsetOf("in.hi"), 16);
});

Deno.test("struct: arrays take their element's alignment and multiply its size", () => {
  const a = array("u16", 3);
  assert.equal(sizeOf(a), 6);
  assert.equal(alignOf(a), 2);
  const pair = defineStruct("pair", [["k", "u32"], ["v", "u8"]]);
  const s = defineStruct("table", [
    ["n", "u8"],
    ["pairs", array(pair, 4)],
    ["grid", array(array("u8", 3), 2)],
  ]);
  assert.equal(pair.size, 8);
  assert.deepEqual(offsets(s), { n: 0, pairs: 4, grid: 36 });
  assert.equal(s.size, 44);
  assert.equal(s.offsetOf("pairs[3].v"), 4 + 3 * 8 + 4);
  assert.equal(s.offsetOf("grid[1][2]"), 36 + 3 + 2);
  assert.equal(sizeOf(array(pair, 0)), 0);
  assert.equal(alignOf(array(pair, 0)), 4);
});

Deno.test("struct: unions put every member at 0 and round the largest up", () => {
  const u = defineUnion("u", [["bytes", array("u8", 5)], ["word", "u32"], ["half", "u16"]]);
  assert.deepEqual(offsets(u), { bytes: 0, word: 0, half: 0 });
  assert.equal(u.size, 8);
  assert.equal(u.align, 4);
  const s = defineStruct("holder", [["c", "u8"], ["u", u], ["d", "u8"]]);
  assert.deepEqual(offsets(s), { c: 0, u: 4, d: 12 });
  assert.equal(s.size, 16);
});

Deno.test("struct: packed structs have no padding and alignment 1", () => {
  const p = defineStruct("packed", [["a", "u8"], ["b", "u32"], ["c", "u64"], ["d", "u16"]], {
    packed: true,
  });
  assert.deepEqual(offsets(p), { a: 0, b: 1, c: 5, d: 13 });
  assert.equal(p.size, 15);
  assert.equal(p.align, 1);
  // Inside a normal struct a packed one needs no alignment either.
  const s = defineStruct("outer", [["x", "u8"], ["p", p]]);
  assert.equal(s.offsetOf("p.c"), 1 + 5);
});

Deno.test("struct: explicit padding occupies bytes, decodes to nothing, refuses writes", () => {
  const s = defineStruct("padded", [["a", "u8"], ["", pad(3)], ["b", "u8"]]);
  assert.equal(s.offsetOf("b"), 4);
  assert.equal(s.size, 5);
  assert.equal(sizeOf(pad(7)), 7);
  assert.equal(alignOf(pad(7)), 1);
  const buf = new Uint8Array([1, 0xee, 0xee, 0xee, 2]);
  assert.deepEqual(s.decode(new DataView(buf.buffer)), { a: 1, b: 2 });
  assert.throws(
    // @ts-expect-error: padding is not a field that can be written
    () => s.encode(new DataView(buf.buffer), { "": 0 }),
    { message: "padded.: cannot write to padding" },
  );
});

Deno.test("struct: encode/decode round trip keeps every scalar kind exact", () => {
  const s = defineStruct("all", [
    ["u8", "u8"],
    ["i8", "i8"],
    ["u16", "u16"],
    ["i16", "i16"],
    ["u32", "u32"],
    ["i32", "i32"],
    ["u64", "u64"],
    ["i64", "i64"],
  ]);
  const value = {
    u8: 0xff,
    i8: -128,
    u16: 0xfffe,
    i16: -2,
    u32: 0xfffffff0,
    i32: -5,
    u64: 0xffffffffffffffffn,
    i64: -(2n ** 63n),
  };
  const bytes = s.bytes(value);
  assert.equal(bytes.length, 32); // i16 at 4, then u32 realigned to 8
  assert.deepEqual(s.decode(new DataView(bytes.buffer)), value);
  // Little-endian on the wire.
  assert.deepEqual([...bytes.subarray(8, 12)], [0xf0, 0xff, 0xff, 0xff]); // u32
  assert.deepEqual([...bytes.subarray(12, 16)], [0xfb, 0xff, 0xff, 0xff]); // i32 -5
});

Deno.test("struct: out-of-range numbers wrap like C stores; 64-bit accepts numbers", () => {
  const s = defineStruct("wrap", [["b", "u8"], ["w", "u32"], ["q", "u64"], ["n", "i64"]]);
  const buf = s.bytes({ b: 0x1ff, w: -1, q: 0x1234, n: -1n });
  const d = s.decode(new DataView(buf.buffer));
  assert.equal(d.b, 0xff);
  assert.equal(d.w, 0xffffffff);
  assert.equal(d.q, 0x1234n);
  assert.equal(d.n, -1n);
  const buf2 = s.bytes({ q: -1n, n: 2n ** 63n });
  const d2 = s.decode(new DataView(buf2.buffer));
  assert.equal(d2.q, 0xffffffffffffffffn);
  assert.equal(d2.n, -(2n ** 63n));
});

Deno.test("struct: encode writes only the given fields, at a base offset", () => {
  const s = defineStruct("pt", [["x", "u16"], ["y", "u16"]]);
  const buf = new Uint8Array(8).fill(0xaa);
  const view = new DataView(buf.buffer);
  s.encode(view, { y: 0x0102 }, 4);
  assert.deepEqual([...buf], [0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0x02, 0x01]);
  assert.deepEqual(s.decode(view, 4), { x: 0xaaaa, y: 0x0102 });
  s.encode(view, { x: undefined, y: 7 }, 0);
  assert.equal(view.getUint16(0, true), 0xaaaa);
  assert.equal(readScalar(view, 2, "u16"), 7);
  assert.equal(readScalar(view, 0, "i16"), -21846);
});

Deno.test("struct: arrays encode from lists, strings and bytes; nested structs from objects", () => {
  const inner = defineStruct("kv", [["k", "u8"], ["v", "u32"]]);
  const s = defineStruct("arr", [
    ["name", array("u8", 8)],
    ["words", array("u32", 3)],
    ["kvs", array(inner, 2)],
  ]);
  const buf = s.bytes({ name: "vmm", words: [1, undefined, 3], kvs: [{ k: 9 }, { v: 0x10 }] });
  const d = s.decode(new DataView(buf.buffer));
  assert.deepEqual(d.name, [0x76, 0x6d, 0x6d, 0, 0, 0, 0, 0]);
  assert.deepEqual(d.words, [1, 0, 3]);
  assert.deepEqual(d.kvs, [{ k: 9, v: 0 }, { k: 0, v: 0x10 }]);
  const raw = s.bytes({ name: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) });
  assert.deepEqual([...raw.subarray(0, 8)], [1, 2, 3, 4, 5, 6, 7, 8]);
});

Deno.test("struct: bad values are refused with the field path", () => {
  const s = defineStruct("bad", [["x", "u32"], ["name", array("u8", 4)], ["w", array("u16", 2)]]);
  const view = new DataView(new ArrayBuffer(s.size));
  assert.throws(() => s.encode(view, { x: 1.5 }), {
    name: "TypeError",
    message: "bad.x: expected an integer, got 1.5",
  });
  // @ts-expect-error: a 32-bit field takes a number
  assert.throws(() => s.encode(view, { x: 1n }), TypeError);
  assert.throws(() => s.encode(view, { name: "toolong" }), {
    name: "RangeError",
    message: "bad.name: 7 bytes do not fit in 4",
  });
  assert.throws(() => s.encode(view, { w: [1, 2, 3] }), {
    name: "RangeError",
    message: "bad.w: expected an array of at most 2 elements",
  });
  // @ts-expect-error: only the struct's own field names type-check
  assert.throws(() => s.encode(view, { nope: 1 }), { message: 'Struct "bad" has no field "nope"' });
  assert.throws(() => array("u8", -1), { message: "Cannot declare array of length -1" });
  assert.throws(() => array("u8", 2.5), RangeError);
});

Deno.test("struct: offsetOf resolves paths and rejects bad ones", () => {
  const inner = defineStruct("in", [["a", "u32"], ["list", array("u16", 4)]]);
  const s = defineStruct("top", [["h", "u64"], ["in", inner], ["items", array(inner, 2)]]);
  assert.equal(s.offsetOf("h"), 0);
  assert.equal(s.offsetOf("in.list[3]"), 8 + 4 + 6);
  assert.equal(s.offsetOf("items[1].list[0]"), 8 + 12 + 12 + 4);
  assert.equal(s.field("in").size, 12);
  assert.throws(() => s.offsetOf("zz"), { message: 'Struct "top" has no field "zz"' });
  assert.throws(() => s.offsetOf("in.zz"), { message: 'Struct "in" has no field "zz"' });
  assert.throws(() => s.offsetOf("items[2]"), {
    name: "RangeError",
    message: 'Index 2 out of range in "items[2]"',
  });
  assert.throws(() => s.offsetOf("h[0]"), { message: '"h[0]" in "h[0]" is not an array' });
  assert.throws(() => s.offsetOf("h.x"), { message: 'Cannot resolve "h.x" in struct "top"' });
  assert.throws(() => s.offsetOf("in..a"), { message: 'Cannot resolve "in..a" in struct "top"' });
  assert.throws(() => s.offsetOf("items[-1]"), /Cannot resolve/);
});

// The same layouts written in C: the compiler is the oracle for the rules above.
const C_TYPES = `
#include <stdint.h>
struct mixed { uint8_t a; uint32_t b; uint16_t c; uint64_t d; int8_t e; };
struct inner { uint32_t lo; uint64_t hi; };
struct outer { uint8_t tag; struct inner in; uint16_t tail; };
struct pair { uint32_t k; uint8_t v; };
struct table { uint8_t n; struct pair pairs[4]; uint8_t grid[2][3]; };
union u { uint8_t bytes[5]; uint32_t word; uint16_t half; };
struct holder { uint8_t c; union u u; uint8_t d; };
struct __attribute__((packed)) packed { uint8_t a; uint32_t b; uint64_t c; uint16_t d; };
struct poly { int16_t s; int64_t q; uint8_t flag; struct pair last[1]; };
`;

Deno.test({
  name: "struct: layouts agree with the C compiler (padding, nesting, arrays, unions, packed)",
  ignore: CC_PATH === undefined,
  async fn() {
    const pair = defineStruct("pair", [["k", "u32"], ["v", "u8"]]);
    const inner = defineStruct("inner", [["lo", "u32"], ["hi", "u64"]]);
    const u = defineUnion("u", [["bytes", array("u8", 5)], ["word", "u32"], ["half", "u16"]]);
    const layouts: [StructLayout, string][] = [
      [
        defineStruct("mixed", [["a", "u8"], ["b", "u32"], ["c", "u16"], ["d", "u64"], ["e", "i8"]]),
        "struct mixed",
      ],
      [inner, "struct inner"],
      [defineStruct("outer", [["tag", "u8"], ["in", inner], ["tail", "u16"]]), "struct outer"],
      [
        defineStruct("table", [["n", "u8"], ["pairs", array(pair, 4)], [
          "grid",
          array(array("u8", 3), 2),
        ]]),
        "struct table",
      ],
      [u, "union u"],
      [defineStruct("holder", [["c", "u8"], ["u", u], ["d", "u8"]]), "struct holder"],
      [
        defineStruct("packed", [["a", "u8"], ["b", "u32"], ["c", "u64"], ["d", "u16"]], {
          packed: true,
        }),
        "struct packed",
      ],
      [
        defineStruct("poly", [["s", "i16"], ["q", "i64"], ["flag", "u8"], [
          "last",
          array(pair, 1),
        ]]),
        "struct poly",
      ],
    ];
    const probes = layouts.map(([l, c]) => probeLayout(l, c));
    const out = await compileAndRun(cProgram([C_TYPES], probes.flatMap((p) => p.lines)));
    assert.ok(out !== undefined, NO_CC_MESSAGE);
    assert.deepEqual(parseProbeOutput(out), Object.assign({}, ...probes.map((p) => p.expected)));
  },
});

Deno.test("struct: decoding is typed from the field table, encoding takes only its fields", () => {
  const inner = defineStruct("inner", [["x", "u16"]]);
  const s = defineStruct("typed", [
    ["a", "u32"],
    ["b", "u64"],
    ["bytes", array("u8", 2)],
    ["gap", pad(2)],
    ["in", inner],
  ]);
  const buf = s.bytes({ a: 7, b: 9, bytes: [1, 2], in: { x: 3 } });
  const d = s.decode(new DataView(buf.buffer));
  // These annotations are the test: they compile only if decode's type is right.
  const a: number = d.a;
  const b: bigint = d.b;
  const bytes: number[] = d.bytes;
  const x: number = d.in.x;
  assert.deepEqual([a, b, bytes, x], [7, 9n, [1, 2], 3]);
  // @ts-expect-error: padding is not part of the decoded value
  assert.equal(d.gap, undefined);
  // 64-bit fields take a number too; a missing field keeps its bytes.
  s.encode(new DataView(buf.buffer), { b: 1 });
  assert.equal(s.decode(new DataView(buf.buffer)).b, 1n);
});
