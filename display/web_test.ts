import assert from "node:assert/strict";
import type { Frame } from "../devices/vga/render.ts";
import { WebConsole } from "./web.ts";

function solid(w: number, h: number, v: number): Frame {
  const rgba = new Uint8Array(w * h * 4).fill(v);
  return { width: w, height: h, rgba };
}

async function withConsole(
  password: string | undefined,
  fn: (
    port: number,
    state: { frame: Frame; keys: string[]; ptrs: number[][]; logs: string[] },
  ) => Promise<void>,
) {
  const state = {
    frame: solid(32, 16, 9),
    keys: [] as string[],
    ptrs: [] as number[][],
    logs: [] as string[],
  };
  const web = new WebConsole({
    source: { frame: () => state.frame },
    input: {
      key: (k, d) => state.keys.push(`${k.code}:${d}`),
      pointer: (x, y, b) => state.ptrs.push([x, y, b]),
    },
    name: "vm<1>",
    password,
    refreshMs: 5,
    log: (l) => state.logs.push(l),
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, web.handle);
  try {
    await fn(server.addr.port, state);
  } finally {
    await server.shutdown();
  }
}

function nextMessage(ws: WebSocket): Promise<MessageEvent> {
  return new Promise((resolve, reject) => {
    ws.onmessage = resolve;
    ws.onclose = () => reject(new Error("closed"));
  });
}

Deno.test("web console: the page, a full first frame, then changes after 'ready', and input", async () => {
  await withConsole(undefined, async (port, st) => {
    const html = await (await fetch(`http://127.0.0.1:${port}/`)).text();
    assert.match(html, /<canvas/);
    assert.match(html, /vm&#60;1&#62;/, "the name is escaped");
    assert.equal(
      await fetch(`http://127.0.0.1:${port}/nope`).then(async (
        r,
      ) => (await r.body?.cancel(), r.status)),
      404,
    );
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    ws.binaryType = "arraybuffer";
    const first = await nextMessage(ws);
    const v = new DataView(first.data as ArrayBuffer);
    assert.deepEqual(
      [0, 1, 3, 5, 7, 9, 11].map((o) => (o === 0 ? v.getUint8(0) : v.getUint16(o, true))),
      [1, 32, 16, 0, 0, 32, 16],
    );
    assert.equal(new Uint8Array(first.data as ArrayBuffer)[13], 9);
    const changed = solid(32, 16, 9);
    changed.rgba.fill(200, (3 * 32 + 20) * 4, (3 * 32 + 21) * 4);
    st.frame = changed;
    const second = nextMessage(ws);
    ws.send('{"t":"ready"}');
    const m = new DataView((await second).data as ArrayBuffer);
    assert.deepEqual([
      m.getUint16(5, true),
      m.getUint16(7, true),
      m.getUint16(9, true),
      m.getUint16(11, true),
    ], [16, 0, 16, 16]);
    ws.send('{"t":"key","code":"KeyQ","down":true}');
    ws.send('{"t":"key","code":"NoSuchKey","down":true}');
    ws.send('{"t":"ptr","x":5,"y":6,"b":4}');
    const closed = new Promise((r) => (ws.onclose = r));
    ws.send('{"t":"ptr","x":-1,"y":6,"b":4}');
    await closed;
    assert.deepEqual(st.keys, ["KeyQ:true"]);
    assert.deepEqual(st.ptrs, [[5, 6, 4]]);
    assert.equal(st.logs.length, 1, "the malformed pointer closed the socket");
  });
});

Deno.test("web console: malformed or oversized messages close only that socket", async () => {
  await withConsole(undefined, async (port, st) => {
    for (const bad of ["not json", "[1,2]", '{"t":"key","code":1,"down":true}', "x".repeat(5000)]) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
      await nextMessage(ws);
      const closed = new Promise((r) => (ws.onclose = r));
      ws.send(bad);
      await closed;
    }
    assert.equal(st.logs.length, 4, "each bad message closed its own socket");
  });
});

Deno.test("web console: a password is required when set", async () => {
  await withConsole("hunter2", async (port) => {
    const r = await fetch(`http://127.0.0.1:${port}/`);
    await r.body?.cancel();
    assert.equal(r.status, 401);
    const ok = await fetch(`http://127.0.0.1:${port}/`, {
      headers: { authorization: `Basic ${btoa("x:hunter2")}` },
    });
    await ok.body?.cancel();
    assert.equal(ok.status, 200);
    const bad = await fetch(`http://127.0.0.1:${port}/`, {
      headers: { authorization: `Basic ${btoa("x:nope")}` },
    });
    await bad.body?.cancel();
    assert.equal(bad.status, 401);
  });
});

Deno.test("web console: a name cannot close the page's script element", async () => {
  const web = new WebConsole({
    source: { frame: () => solid(8, 8, 0) },
    input: { key: () => {}, pointer: () => {} },
    name: "</script><script>alert(1)</script>",
  });
  const html = await web.handle(new Request("http://x/")).text();
  assert.equal(html.match(/<\/script>/g)?.length, 1, "only the page's own closing tag");
});
