// Tests of the JavaScript SDK itself: `node --test` in this directory. The
// cases mirror the Rust SDK's, so both read and window events alike.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Batch, Field, Output, Record, Settings, WindowSpec, Windows, parseBytes, parseDurationMs, splitCsv,
} from "./weir-plugin/index.js";
import { jsonField, numberText } from "./weir-plugin/field.js";

const bytes = (s) => new TextEncoder().encode(s);
const text = (b) => new TextDecoder().decode(b);

function counts(spec, stamps) {
  const w = new Windows(spec);
  let late = 0;
  stamps.forEach((ts, i) => {
    try {
      w.add(ts, i, (n) => n + 1);
    } catch {
      late += 1;
    }
  });
  w.closeAll();
  return [w.takeClosed().map((c) => [c.start, c.end, c.acc]), late];
}

test("tumbling windows align to the epoch, negative times floor", () => {
  assert.deepEqual(counts(new WindowSpec(1000), [5, 999, 1000, 2500, 2999]), [
    [[0, 1000, 2], [1000, 2000, 1], [2000, 3000, 2]],
    0,
  ]);
  assert.deepEqual(counts(new WindowSpec(1000), [-1, -1000, -1001])[0], [[-1000, 0, 2]]);
  assert.equal(counts(new WindowSpec(1000), [-1, -1001])[1], 1);
});

test("sliding windows hold each event size/slide times; lateness admits stragglers", () => {
  assert.deepEqual(counts(new WindowSpec(3000, 1000), [2500])[0], [[0, 3000, 1], [1000, 4000, 1], [2000, 5000, 1]]);
  assert.deepEqual(counts(new WindowSpec(45000, 15000), [50000])[0].map((g) => g[0]), [15000, 30000, 45000]);
  assert.deepEqual(counts(new WindowSpec(2500, 1000), [2600])[0].map((g) => g[0]), [1000, 2000]);
  assert.equal(counts(new WindowSpec(1000), [1500, 999])[1], 1);
  assert.deepEqual(counts(new WindowSpec(1000, 1000, 600), [1500, 999]), [[[0, 1000, 1], [1000, 2000, 1]], 0]);
});

test("hold-from and snapshots", () => {
  const w = new Windows(new WindowSpec(20, 10));
  w.add(15, 1, (n) => n + 1);
  assert.equal(w.holdFrom(), 1);
  const back = new Windows(new WindowSpec(20, 10));
  back.loadJSON(JSON.parse(JSON.stringify(w.toJSON())));
  back.add(16, 2, (n) => n + 1);
  back.add(40, 3, (n) => n + 1);
  assert.deepEqual(back.takeClosed().slice(0, 2).map((c) => [c.start, c.end, c.acc]), [[0, 20, 2], [10, 30, 2]]);
  assert.throws(() => new Windows(new WindowSpec(30, 10)).loadJSON(w.toJSON()), /different window/);
  assert.throws(() => new Windows(new WindowSpec(0)), /positive/);
  assert.throws(() => new Windows(new WindowSpec(10, 20)), /slide/);
});

test("durations, sizes and settings read as the host reads them", () => {
  assert.equal(parseDurationMs("1.5s"), 1500);
  assert.equal(parseDurationMs("250ms"), 250);
  assert.equal(parseDurationMs(250), 250);
  assert.equal(parseDurationMs("2m"), 120000);
  assert.equal(parseBytes("64MiB"), 64 * 2 ** 20);
  assert.throws(() => parseDurationMs("2 weeks"), /unknown unit "weeks"/);
  const s = new Settings('{"window":"2s","labels":["a"]}', ["window", "labels", "n"]);
  assert.equal(s.durationMs("window"), 2000);
  assert.deepEqual(s.strings("labels"), ["a"]);
  assert.equal(s.integer("n", 7), 7);
  assert.throws(() => s.integer("window"), /^Error: `window`: expected a whole number/);
  assert.throws(() => new Settings({ x: 1 }, ["a"]), /unknown field `x`, expected one of `a`/);
});

test("csv rows split and json scalars print like the rust sdk", () => {
  assert.deepEqual(splitCsv(bytes('"1","2015-02-04 17:51:00",23.18,"say ""hi"""')).map(text), [
    "1", "2015-02-04 17:51:00", "23.18", 'say "hi"',
  ]);
  assert.deepEqual(splitCsv(bytes("a,,b,\r")).map(text), ["a", "", "b", ""]);
  assert.throws(() => splitCsv(bytes('"open')), /unterminated/);
  const doc = bytes('{"i":7,"f":21.50,"e":1e21,"small":1e-7,"t":true,"n":null,"s":"x","a":[1]}');
  const got = (k) => jsonField(doc, k);
  assert.deepEqual(
    ["i", "f", "e", "small", "t", "n", "s", "a", "missing"].map(got),
    ["7", "21.5", "1000000000000000000000", "0.0000001", "true", "", "x", null, undefined],
  );
  assert.equal(numberText(-1.5e-10), "-0.00000000015");
  assert.equal(jsonField(bytes('{"z":-0}'), "z"), "-0");
  assert.throws(() => jsonField(bytes('{"x":1e400}'), "x"), /^Error: invalid JSON/);
  assert.throws(() => jsonField(bytes('{"x":"\\ud800"}'), "x"), /lone surrogate/);
  assert.throws(() => jsonField(new Uint8Array([0xef, 0xbb, 0xbf, ...bytes('{"x":1}')]), "x"), /^Error: invalid JSON/);
});

test("records read keys by whole value, column or field", () => {
  const batch = Batch.fromValues(0, [[1, " 7, 1 "], [2, "7"], [3, '{"gender":1}']]);
  const gender = Field.keyed("gender", ["user", "gender"]);
  assert.equal(new Record(batch.get(0)).key(gender), "1");
  assert.throws(() => new Record(batch.get(1)).key(gender), /row has 1 columns, the key is column 2/);
  assert.equal(new Record(batch.get(2)).key(Field.keyed("gender", null)), "1");
  assert.equal(new Record(batch.get(0)).key(Field.WHOLE), "7, 1");
});

test("events carry sequence numbers, keys and headers; output lays them out flat", () => {
  const b = new Batch(10n, {
    timestamps: [5n, 6n], values: bytes("abcd"), valueEnds: [1, 4], keys: bytes("k"), keyEnds: [1, 1],
    headers: [{ event: 1, name: "h", value: bytes("v") }],
  });
  const events = [...b];
  assert.deepEqual(events.map((e) => [e.index, e.seq, e.timestampMs, text(e.value), e.key && text(e.key)]), [
    [0, 10, 5, "a", "k"], [1, 11, 6, "bcd", null],
  ]);
  assert.equal(events[1].headers[0].name, "h");
  const out = new Output();
  out.emit(1, "x", "k", [["h", "v"]]);
  out.emit(2, bytes("yz"));
  out.reject(0, "bad");
  const flat = out.toEvents();
  assert.deepEqual(out.valuesText(), ["x", "yz"]);
  assert.deepEqual([...flat.timestamps], [1n, 2n]);
  assert.deepEqual([...flat.keyEnds], [1, 1]);
  assert.deepEqual(out.rejections, [{ index: 0, reason: "bad" }]);
});
