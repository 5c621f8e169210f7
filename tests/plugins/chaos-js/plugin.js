// Test plugin `chaos-js`: echoes every event and counts them; misbehaves
// when a value asks:
// - `leak:KIB`: keeps KIB kibibytes it never frees (not part of its state),
//   then emits `leaked`;
// - `print:TEXT`: console.log(TEXT), then echoes the value.
// `flush` emits `total=N`, the count of echoed events, kept in snapshots.

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const hoard = [];

function empty() {
  return { timestamps: [], values: new Uint8Array(0), valueEnds: [], keys: new Uint8Array(0), keyEnds: [], headers: [] };
}

class Stage {
  constructor(config) {
    this.total = 0;
  }

  process(input) {
    const ev = input.events;
    const stamps = [];
    const parts = [];
    const ends = [];
    let length = 0;
    const emit = (ts, bytes) => {
      stamps.push(ts);
      parts.push(bytes);
      length += bytes.length;
      ends.push(length);
    };
    let start = 0;
    for (let i = 0; i < ev.valueEnds.length; i++) {
      const end = ev.valueEnds[i];
      const value = ev.values.subarray(start, end);
      start = end;
      const text = decoder.decode(value);
      if (text.startsWith("leak:")) {
        const kib = Number(text.slice(5));
        const block = new Uint8Array(kib * 1024);
        block.fill(1);
        hoard.push(block);
        emit(ev.timestamps[i], encoder.encode("leaked"));
      } else {
        if (text.startsWith("print:")) {
          console.log(text.slice(6));
        }
        this.total += 1;
        emit(ev.timestamps[i], value.slice());
      }
    }
    const values = new Uint8Array(length);
    let at = 0;
    for (const p of parts) {
      values.set(p, at);
      at += p.length;
    }
    return {
      events: { timestamps: stamps, values, valueEnds: ends, keys: new Uint8Array(0), keyEnds: ends.map(() => 0), headers: [] },
      rejections: [],
      holdFrom: undefined,
    };
  }

  tick(nowMs) {
    return { events: empty(), rejections: [], holdFrom: undefined };
  }

  flush() {
    const v = encoder.encode(`total=${this.total}`);
    return {
      events: { timestamps: [0n], values: v, valueEnds: [v.length], keys: new Uint8Array(0), keyEnds: [0], headers: [] },
      rejections: [],
      holdFrom: undefined,
    };
  }

  snapshot() {
    return encoder.encode(String(this.total));
  }

  restore(state) {
    this.total = Number(decoder.decode(state) || "0");
  }
}

export const transform = { Stage };
