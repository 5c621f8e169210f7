// The batch view: the events of one `process` call, read in place from the
// flat layout the host sends (all values back to back, end offsets).

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** One event of a batch. */
export class Event {
  constructor(index, seq, timestampMs, value, key, headers) {
    /** Position in the batch: what `Output.reject` takes. */
    this.index = index;
    /** Host-assigned sequence number, growing across batches and restarts. */
    this.seq = seq;
    /** Event time, milliseconds since the Unix epoch (a Number). */
    this.timestampMs = timestampMs;
    /** The value (a Uint8Array view into the batch). */
    this.value = value;
    /** The key, or null when the event has none. */
    this.key = key;
    /** The event's headers: [{name, value}] (usually none). */
    this.headers = headers;
  }

  /** The value as UTF-8 text (throws a TypeError if it is not UTF-8). */
  text() {
    return decoder.decode(this.value);
  }
}

/** The events of one call, in order: iterate it, or `get(i)`. */
export class Batch {
  /**
   * @param {number|bigint} baseSeq sequence number of the first event
   * @param {{timestamps, values, valueEnds, keys, keyEnds, headers}} events
   *   the host's flat layout (timestamps may be BigInts)
   */
  constructor(baseSeq, events) {
    this.baseSeq = Number(baseSeq);
    this.timestamps = events.timestamps;
    this.values = events.values;
    this.valueEnds = events.valueEnds;
    this.keys = events.keys ?? new Uint8Array(0);
    this.keyEnds = events.keyEnds ?? new Array(events.valueEnds.length).fill(0);
    this.headersByEvent = new Map();
    for (const h of events.headers ?? []) {
      const list = this.headersByEvent.get(h.event) ?? [];
      list.push({ name: h.name, value: h.value });
      this.headersByEvent.set(h.event, list);
    }
  }

  /** A batch of [timestampMs, value] pairs, for tests. */
  static fromValues(baseSeq, pairs) {
    const parts = pairs.map(([, v]) => (typeof v === "string" ? encoder.encode(v) : v));
    const values = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    const valueEnds = [];
    let at = 0;
    for (const p of parts) {
      values.set(p, at);
      at += p.length;
      valueEnds.push(at);
    }
    return new Batch(baseSeq, { timestamps: pairs.map(([t]) => t), values, valueEnds, headers: [] });
  }

  /** Number of events. */
  get length() {
    return this.valueEnds.length;
  }

  /** Event `i`. */
  get(i) {
    if (i < 0 || i >= this.valueEnds.length) throw new RangeError(`no event ${i}`);
    const start = i ? this.valueEnds[i - 1] : 0;
    const kstart = i ? this.keyEnds[i - 1] : 0;
    const kend = this.keyEnds[i];
    return new Event(
      i,
      this.baseSeq + i,
      Number(this.timestamps[i]),
      this.values.subarray(start, this.valueEnds[i]),
      kend > kstart ? this.keys.subarray(kstart, kend) : null,
      this.headersByEvent.get(i) ?? [],
    );
  }

  *[Symbol.iterator]() {
    const n = this.valueEnds.length;
    let start = 0;
    let kstart = 0;
    for (let i = 0; i < n; i++) {
      const end = this.valueEnds[i];
      const kend = this.keyEnds[i];
      yield new Event(
        i,
        this.baseSeq + i,
        Number(this.timestamps[i]),
        this.values.subarray(start, end),
        kend > kstart ? this.keys.subarray(kstart, kend) : null,
        this.headersByEvent.get(i) ?? [],
      );
      start = end;
      kstart = kend;
    }
  }
}
