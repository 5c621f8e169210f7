// Weir plugin `gender-count-js`: the `gender-count` plugin in JavaScript.
//
// Counts events by value over time windows, with the same config and the
// same output, byte for byte, as the Rust plugin:
// - `key`: what to count by. Absent: the whole value (trimmed). A name: that
//   JSON field, or that CSV column when `columns` lists the CSV header.
// - `columns`: CSV column names, making the input CSV.
// - `window` (default "1s"), `slide` (default = window; smaller = sliding).
// - `time`: "processing" (default) or "event" (the event timestamp).
// - `allowed_lateness` (event time, default "0s").
// - `format`: "json" (default), one object per window
//   {"window_start":MS,"window_end":MS,"counts":{"0":N,...}}, or "seed",
//   the text today's consumers read: [{"0":1},{"1":6},{"2":3}].

import { Aggregate, Field, Settings, WINDOW_KEYS, Windowed, Windowing, exportStage } from "./weir-plugin/index.js";

// Keys in the order the Rust plugin writes them: by Unicode code point (a
// plain sort compares UTF-16 units, which differs above U+FFFF).
function byCodePoint(a, b) {
  const x = [...a[0]];
  const y = [...b[0]];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

/** Counts per distinct key within one window. */
class Counter extends Aggregate {
  init(config) {
    const settings = new Settings(config, ["key", "columns", "format", ...WINDOW_KEYS]);
    this.field = Field.keyed(settings.string("key"), settings.strings("columns"));
    this.format = settings.choice("format", ["json", "seed"], "json");
    return Windowing.fromSettings(settings);
  }

  read(record) {
    return record.key(this.field);
  }

  newAcc() {
    return new Map();
  }

  add(counts, key) {
    counts.set(key, (counts.get(key) ?? 0) + 1);
    return counts;
  }

  accToJSON(counts) {
    return Object.fromEntries(counts);
  }

  accFromJSON(json) {
    return new Map(Object.entries(json));
  }

  emit(window, out) {
    const counts = [...window.acc.entries()].sort(byCodePoint);
    const text =
      this.format === "json"
        ? `{"window_start":${window.start},"window_end":${window.end},"counts":{${counts
            .map(([k, n]) => `${JSON.stringify(k)}:${n}`)
            .join(",")}}}`
        : JSON.stringify(counts.map(([k, n]) => ({ [k]: n })));
    out.emit(window.end, text);
  }
}

/** The plugin: counts in windows. */
export class GenderCount extends Windowed {
  static aggregate = Counter;
}

exportStage(GenderCount);
