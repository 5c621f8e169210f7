// componentize-js's entry module for a Weir plugin (written by `weir plugin
// build`): the `stage` resource of the `weir:plugin/transform` interface,
// adapting the class `plugin.js` exported with `exportStage`. The plugin's
// own code never sees the bindings.

import { log, nowMs } from "weir:plugin/host@0.1.0";
import "./plugin.js";
import { Batch, Output, exported, setHost } from "./weir-plugin/index.js";

setHost({ nowMs: () => Number(nowMs()), log: (level, message) => log(level, String(message)) });

const decoder = new TextDecoder();

// A `result` error crosses the boundary as the thrown value itself: a
// string, not an Error object.
function refusal(e) {
  return e instanceof Error ? e.message : String(e);
}

function result(inner, out) {
  const hold = inner.holdFrom();
  return {
    events: out.toEvents(),
    rejections: out.rejections,
    holdFrom: hold === null || hold === undefined ? undefined : BigInt(hold),
  };
}

class Stage {
  constructor(config) {
    const text = typeof config === "string" ? config : decoder.decode(config);
    try {
      this.inner = new (exported())(text.trim() ? JSON.parse(text) : {});
    } catch (e) {
      throw refusal(e);
    }
  }

  process(input) {
    const out = new Output();
    this.inner.process(new Batch(input.baseSeq, input.events), out);
    return result(this.inner, out);
  }

  tick(now) {
    const out = new Output();
    this.inner.tick(Number(now), out);
    return result(this.inner, out);
  }

  flush() {
    const out = new Output();
    this.inner.flush(out);
    return result(this.inner, out);
  }

  snapshot() {
    return this.inner.snapshot();
  }

  restore(state) {
    try {
      this.inner.restore(state);
    } catch (e) {
      throw refusal(e);
    }
  }
}

export const transform = { Stage };
