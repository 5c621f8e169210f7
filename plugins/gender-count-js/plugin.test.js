// Native tests of the plugin: `node --test` in this directory.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Batch, Output } from "./weir-plugin/index.js";
import { GenderCount } from "./plugin.js";

function run(config, events) {
  const stage = new GenderCount(config);
  const out = new Output();
  stage.process(Batch.fromValues(0, events), out);
  stage.flush(out);
  return [out.valuesText(), out.rejections.map((r) => r.reason)];
}

test("seed format matches today's consumers", () => {
  const events = [["0", 1], ["1", 6], ["2", 3]].flatMap(([v, n]) => Array(n).fill([100, v]));
  assert.deepEqual(run({ time: "event", format: "seed" }, events)[0], ['[{"0":1},{"1":6},{"2":3}]']);
});

test("json format counts per window with sorted keys", () => {
  const [out, rejected] = run({ time: "event", key: "gender" }, [
    [10, '{"gender":"1"}'],
    [20, '{"gender":"0","x":[1,{"gender":"9"}]}'],
    [1500, '{"gender":1}'],
    [1600, '{"gender":null}'],
    [1700, '{"other":1}'],
    [1800, "not json"],
  ]);
  assert.deepEqual(out, [
    '{"window_start":0,"window_end":1000,"counts":{"0":1,"1":1}}',
    '{"window_start":1000,"window_end":2000,"counts":{"":1,"1":1}}',
  ]);
  assert.equal(rejected[0], 'no field "gender"');
  assert.match(rejected[1], /^invalid JSON/);
});

test("csv columns select the key", () => {
  const config = { time: "event", key: "gender", columns: ["user_id", "gender", "province"], format: "seed" };
  const [out] = run(config, [[1, '7,1,"Hebei, CN"'], [2, "8,0,x"], [3, "9,1,y"]]);
  assert.deepEqual(out, ['[{"0":1},{"1":2}]']);
});

test("late events are rejected and sliding windows count twice", () => {
  assert.deepEqual(run({ time: "event" }, [[1500, "a"], [200, "b"]])[1], ["late"]);
  const [out] = run({ time: "event", window: "2s", slide: "1s", format: "seed" }, [[1500, "a"]]);
  assert.deepEqual(out, ['[{"a":1}]', '[{"a":1}]']);
});

test("state carries open windows across instances", () => {
  const config = { time: "event", format: "seed" };
  const a = new GenderCount(config);
  const out = new Output();
  a.process(Batch.fromValues(0, [[10, "1"], [20, "1"]]), out);
  assert.ok(out.isEmpty());
  assert.equal(a.holdFrom(), 0);
  const b = new GenderCount(config);
  b.restore(a.snapshot());
  b.process(Batch.fromValues(2, [[30, "0"], [1000, "0"]]), out);
  assert.deepEqual(out.valuesText(), ['[{"0":1},{"1":2}]']);
  assert.equal(b.holdFrom(), 3);
  assert.throws(() => new GenderCount({ time: "event", window: "5s" }).restore(b.snapshot()), /different window/);
  assert.throws(() => b.restore(new Uint8Array([0xff, 1, 2])), /unreadable state/);
});

test("bad config is explained", () => {
  assert.throws(() => new GenderCount({ windw: "1s" }), /unknown field `windw`/);
  assert.throws(() => new GenderCount({ key: "g", columns: ["a"] }), /not one of the columns/);
  assert.throws(() => new GenderCount({ window: "2 weeks" }), /`window`: invalid duration/);
});
