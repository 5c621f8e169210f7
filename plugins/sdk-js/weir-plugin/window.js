// Tumbling and sliding windows over event time or processing time, as the
// Rust SDK has them.
//
// Windows are aligned to the Unix epoch. A window closes when the watermark
// passes its end; on event time the watermark is the largest event time
// seen minus `allowed_lateness`, and an event whose windows have all closed
// is late. On processing time the current time is the event time and
// `tick` advances the watermark.
//
// `Windowed` runs an `Aggregate`: `read` (what to take from an event),
// `newAcc`/`add` (what a window keeps) and `emit` (what a closed window
// writes).

import { Settings } from "./config.js";
import { Record } from "./field.js";
import { loadState, saveState } from "./state.js";
import { Transform, nowMs } from "./transform.js";

const MIN = -(2 ** 63);

/** Size, slide and allowed lateness, in milliseconds. */
export class WindowSpec {
  constructor(sizeMs, slideMs = sizeMs, allowedLatenessMs = 0) {
    this.sizeMs = sizeMs;
    this.slideMs = slideMs;
    this.allowedLatenessMs = allowedLatenessMs;
  }

  /** Throws an Error explaining what is wrong. */
  validate() {
    if (!(this.sizeMs > 0)) throw new Error(`window size must be positive, got ${this.sizeMs} ms`);
    if (!(this.slideMs > 0) || this.slideMs > this.sizeMs) {
      throw new Error(
        `slide must be positive and at most the window size (${this.sizeMs} ms), got ${this.slideMs} ms`,
      );
    }
    if (this.allowedLatenessMs < 0) throw new Error("allowed_lateness must not be negative");
  }

  toJSON() {
    return [this.sizeMs, this.slideMs, this.allowedLatenessMs];
  }
}

/** The event falls only into windows that have already closed. */
export class Late extends Error {
  constructor(watermark) {
    super("late");
    this.watermark = watermark;
  }
}

/** Open windows by start, each with an accumulator made by `newAcc`. */
export class Windows {
  constructor(spec, newAcc = () => 0) {
    spec.validate();
    this.spec = spec;
    this.newAcc = newAcc;
    /** start -> {acc, firstSeq} */
    this.open = new Map();
    this.watermark = MIN;
    /** Closed since the last `takeClosed`: [{start, end, acc}]. */
    this.closed = [];
  }

  /** Adds an event at `ts` to every window holding it: `update(acc, item)`
   * returns the new accumulator. Throws `Late` if its earliest window has
   * closed; windows the watermark passes go to `closed`. */
  add(ts, seq, update, item) {
    const { sizeMs: size, slideMs: slide, allowedLatenessMs: lateness } = this.spec;
    const lastStart = ts - (((ts % slide) + slide) % slide);
    const firstStart = lastStart - Math.floor((size - 1 - (ts - lastStart)) / slide) * slide;
    if (firstStart + size <= this.watermark) throw new Late(this.watermark);
    for (let start = firstStart; start <= lastStart; start += slide) {
      const slot = this.open.get(start);
      if (slot === undefined) {
        this.open.set(start, { acc: update(this.newAcc(), item), firstSeq: seq });
      } else {
        slot.acc = update(slot.acc, item);
        if (seq < slot.firstSeq) slot.firstSeq = seq;
      }
    }
    this.advance(ts - lateness);
  }

  /** Moves the watermark forward (never back) and closes every window
   * ending at or before it. */
  advance(watermark) {
    if (watermark <= this.watermark) return;
    this.watermark = watermark;
    const size = this.spec.sizeMs;
    let due = false;
    for (const start of this.open.keys()) {
      if (start + size <= watermark) {
        due = true;
        break;
      }
    }
    if (!due) return;
    const starts = [...this.open.keys()].sort((a, b) => a - b);
    for (const start of starts) {
      if (start + size > watermark) break;
      this.closed.push({ start, end: start + size, acc: this.open.get(start).acc });
      this.open.delete(start);
    }
  }

  /** Closes every open window (end of input). */
  closeAll() {
    const size = this.spec.sizeMs;
    for (const start of [...this.open.keys()].sort((a, b) => a - b)) {
      this.closed.push({ start, end: start + size, acc: this.open.get(start).acc });
    }
    this.open.clear();
  }

  /** The windows closed since the last call, oldest first. */
  takeClosed() {
    const closed = this.closed;
    this.closed = [];
    return closed;
  }

  /** The lowest sequence number held in an open window, or null. */
  holdFrom() {
    let min = null;
    for (const slot of this.open.values()) if (min === null || slot.firstSeq < min) min = slot.firstSeq;
    return min;
  }

  /** The open windows and the watermark, for snapshots (`accToJSON` turns
   * an accumulator into JSON values). */
  toJSON(accToJSON = (a) => a) {
    const open = [...this.open.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([start, s]) => [start, s.firstSeq, accToJSON(s.acc)]);
    return { spec: this.spec.toJSON(), open, watermark: this.watermark };
  }

  /** Restores what `toJSON` saved, for the same spec. */
  loadJSON(saved, accFromJSON = (a) => a) {
    const spec = saved && saved.spec;
    if (!Array.isArray(spec) || spec.join() !== this.spec.toJSON().join()) {
      throw new Error("state was built with a different window size, slide or lateness");
    }
    if (!Array.isArray(saved.open) || typeof saved.watermark !== "number") {
      throw new Error("unreadable state: no open windows");
    }
    this.open = new Map(saved.open.map(([start, firstSeq, acc]) => [start, { acc: accFromJSON(acc), firstSeq }]));
    this.watermark = saved.watermark;
    this.closed = [];
  }
}

/** The config keys `Windowing.fromSettings` reads. */
export const WINDOW_KEYS = ["window", "slide", "time", "allowed_lateness"];

/** The windows an Aggregate fills and the clock that fills them. */
export class Windowing {
  constructor(spec, time) {
    this.spec = spec;
    /** "processing" or "event". */
    this.time = time;
  }

  /** From the usual settings: `window` (default 1 s), `slide` (default:
   * the window, so tumbling), `time` ("processing", the default, or
   * "event") and `allowed_lateness` (event time only). */
  static fromSettings(settings, defaultWindowMs = 1000) {
    const size = settings.durationMs("window", defaultWindowMs);
    const slide = settings.durationMs("slide", size);
    const time = settings.choice("time", ["processing", "event"], "processing");
    const lateness = settings.durationMs("allowed_lateness", 0);
    if (time === "processing" && lateness) throw new Error('allowed_lateness applies only to time = "event"');
    const spec = new WindowSpec(size, slide, lateness);
    spec.validate();
    return new Windowing(spec, time);
  }
}

/** A plugin that folds events into one set of windows and writes one result
 * per closed window; run it with `Windowed`. Override `init` (read the
 * config, return a Windowing), `read` (what to take from an event; throw to
 * refuse it), `newAcc` and `add` (what a window keeps; `accToJSON` and
 * `accFromJSON` when it is not plain JSON) and `emit` (write a window). */
export class Aggregate {
  /** Version of the snapshot layout: raise it when the accumulator changes. */
  static STATE_VERSION = 1;

  init(config) {
    return Windowing.fromSettings(new Settings(config, WINDOW_KEYS));
  }

  read(record) {
    return null;
  }

  newAcc() {
    return 0;
  }

  add(acc, item) {
    return acc + 1;
  }

  accToJSON(acc) {
    return acc;
  }

  accFromJSON(json) {
    return json;
  }

  emit(window, out) {
    throw new Error("Aggregate.emit is not implemented");
  }
}

/** A stage running an Aggregate (`static aggregate = MyAggregate` in a
 * subclass): files events into windows on the configured clock, refuses late
 * events with reason `late`, writes windows as they close, holds the
 * acknowledgements of events in open windows, and saves the open windows in
 * snapshots as {"version":N,"windows":...}. */
export class Windowed extends Transform {
  static aggregate = Aggregate;

  constructor(config) {
    super(config);
    this.plugin = new this.constructor.aggregate();
    const windowing = this.plugin.init(config);
    this.time = windowing.time;
    this.windows = new Windows(windowing.spec, () => this.plugin.newAcc());
  }

  emitClosed(out) {
    for (const window of this.windows.takeClosed()) this.plugin.emit(window, out);
  }

  process(batch, out) {
    const arrival = this.time === "processing" ? nowMs() : null;
    const { plugin, windows } = this;
    const add = (acc, item) => plugin.add(acc, item);
    for (let i = 0, n = batch.length; i < n; i++) {
      const event = batch.get(i);
      let item;
      try {
        item = plugin.read(new Record(event));
      } catch (e) {
        out.reject(event.index, e.message);
        continue;
      }
      const ts = arrival === null ? event.timestampMs : arrival;
      try {
        windows.add(ts, event.seq, add, item);
      } catch (e) {
        if (!(e instanceof Late)) throw e;
        out.reject(event.index, e.message);
      }
      if (windows.closed.length) this.emitClosed(out);
    }
  }

  tick(now, out) {
    if (this.time === "processing") {
      this.windows.advance(now);
      this.emitClosed(out);
    }
  }

  flush(out) {
    this.windows.closeAll();
    this.emitClosed(out);
  }

  snapshot() {
    const version = this.plugin.constructor.STATE_VERSION;
    return saveState(version, { windows: this.windows.toJSON((a) => this.plugin.accToJSON(a)) });
  }

  restore(state) {
    const saved = loadState(this.plugin.constructor.STATE_VERSION, state);
    this.windows.loadJSON(saved.windows, (a) => this.plugin.accFromJSON(a));
  }

  holdFrom() {
    return this.windows.holdFrom();
  }
}
