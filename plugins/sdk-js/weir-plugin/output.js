// The output builder: what one call emits and which input events it refuses.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function bytesOf(v) {
  return typeof v === "string" ? encoder.encode(v) : v;
}

/** Growable byte buffer. */
class Bytes {
  constructor() {
    this.buf = new Uint8Array(256);
    this.length = 0;
  }

  push(bytes) {
    const need = this.length + bytes.length;
    if (need > this.buf.length) {
      const bigger = new Uint8Array(Math.max(need, this.buf.length * 2));
      bigger.set(this.buf.subarray(0, this.length));
      this.buf = bigger;
    }
    this.buf.set(bytes, this.length);
    this.length = need;
  }

  view() {
    return this.buf.subarray(0, this.length);
  }
}

/** Collects the events a call emits, laid out flat as the host wants them,
 * and the events it refuses. */
export class Output {
  constructor() {
    this.timestamps = [];
    this.values = new Bytes();
    this.valueEnds = [];
    this.keys = new Bytes();
    this.keyEnds = [];
    this.headers = [];
    /** Refused input events: [{index, reason}]. */
    this.rejections = [];
  }

  /** Emits one event downstream (strings are UTF-8 encoded). */
  emit(timestampMs, value, key = null, headers = []) {
    const i = this.valueEnds.length;
    this.timestamps.push(timestampMs);
    this.values.push(bytesOf(value));
    this.valueEnds.push(this.values.length);
    if (key !== null && key !== undefined) this.keys.push(bytesOf(key));
    this.keyEnds.push(this.keys.length);
    for (const [name, v] of headers) this.headers.push({ event: i, name, value: bytesOf(v) });
  }

  /** Refuses input event `index` of the batch with a reason for operators;
   * the host sends it to the dead-letter output. */
  reject(index, reason) {
    this.rejections.push({ index, reason: String(reason) });
  }

  /** Number of events emitted. */
  get length() {
    return this.valueEnds.length;
  }

  /** Whether nothing was emitted (rejections aside). */
  isEmpty() {
    return this.valueEnds.length === 0;
  }

  /** The emitted values as text, for tests. */
  valuesText() {
    const all = this.values.view();
    let start = 0;
    return this.valueEnds.map((end) => {
      const t = decoder.decode(all.subarray(start, end));
      start = end;
      return t;
    });
  }

  /** The host's flat layout (timestamps as BigInts). */
  toEvents() {
    return {
      timestamps: BigInt64Array.from(this.timestamps, (t) => BigInt(t)),
      values: this.values.view(),
      valueEnds: Uint32Array.from(this.valueEnds),
      keys: this.keys.view(),
      keyEnds: Uint32Array.from(this.keyEnds),
      headers: this.headers,
    };
  }
}
