// Reading a plugin's `config` table: the host passes it as JSON.
//
// `Settings` refuses unknown keys (so a typo is reported, not ignored) and
// reads each value with an error that names its key; durations and sizes
// are read as the host reads its own pipeline files: "1s", "250ms", "1.5s",
// "64MiB" or a whole number (ms, bytes).

const SECONDS = { ms: 0.001, s: 1, "": 1, m: 60, min: 60, h: 3600, d: 86400 };
const BYTES = {
  "": 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1 << 20, g: 1e9, gb: 1e9, gib: 2 ** 30,
};

function numberAndUnit(text, what, example) {
  const m = /^\s*([0-9.]*)\s*(.*?)\s*$/.exec(text);
  const n = m && m[1] !== "" && /^[0-9]*\.?[0-9]*$/.test(m[1]) ? Number(m[1]) : NaN;
  if (Number.isNaN(n)) {
    throw new Error(`invalid ${what} ${JSON.stringify(text)}: expected a number and a unit, like ${example}`);
  }
  return [n, m[2]];
}

/** Milliseconds of "1s", "250ms", "1.5s", "2m", "1h", "1d" or a whole
 * number of milliseconds. */
export function parseDurationMs(value) {
  if (Number.isInteger(value) && value >= 0) return value;
  if (typeof value !== "string") {
    throw new Error('expected a duration like "1s" or "250ms", or a whole number of milliseconds');
  }
  const [n, unit] = numberAndUnit(value, "duration", '"1s" or "250ms"');
  if (!Object.hasOwn(SECONDS, unit)) {
    throw new Error(
      `invalid duration ${JSON.stringify(value)}: unknown unit ${JSON.stringify(unit)} (use ms, s, m, h or d)`,
    );
  }
  return Math.floor((Math.round(n * SECONDS[unit] * 1e9) + 500000) / 1e6);
}

/** Bytes of "64MiB", "512KiB", "1GB" or a whole number. */
export function parseBytes(value) {
  if (Number.isInteger(value) && value >= 0) return value;
  if (typeof value !== "string") throw new Error('expected a size like "64MiB", or a whole number of bytes');
  const [n, unit] = numberAndUnit(value, "size", '"64MiB"');
  const scale = Object.hasOwn(BYTES, unit.toLowerCase()) ? BYTES[unit.toLowerCase()] : undefined;
  if (scale === undefined) {
    throw new Error(
      `invalid size ${JSON.stringify(value)}: unknown unit ${JSON.stringify(unit)} (use B, KiB, MiB, GiB, KB, MB or GB)`,
    );
  }
  return Math.round(n * scale);
}

function fail(kind) {
  throw new Error(`expected ${kind}`);
}

/** A stage's config table, read key by key: `new Settings(config, ["window",
 * "key"])` refuses any other key; each getter returns the default when the
 * key is absent and throws an Error naming the key when its value is of the
 * wrong kind. */
export class Settings {
  constructor(config, keys) {
    if (config === undefined || config === null || (typeof config === "string" && !config.trim())) config = {};
    if (typeof config === "string") {
      try {
        config = JSON.parse(config);
      } catch (e) {
        throw new Error(`config is not JSON: ${e.message}`);
      }
    }
    if (typeof config !== "object" || Array.isArray(config)) throw new Error("config must be a table");
    this.keys = [...keys];
    for (const k of Object.keys(config)) {
      if (!this.keys.includes(k)) {
        const expected = this.keys.length
          ? `expected one of ${this.keys.map((x) => `\`${x}\``).join(", ")}`
          : "this plugin takes no settings";
        throw new Error(`unknown field \`${k}\`, ${expected}`);
      }
    }
    this.values = config;
  }

  get(key, fallback, check) {
    const v = this.values[key];
    if (v === undefined || v === null) return fallback;
    try {
      return check(v);
    } catch (e) {
      throw new Error(`\`${key}\`: ${e.message}`);
    }
  }

  /** The value as JSON decoded it. */
  raw(key, fallback = undefined) {
    return key in this.values ? this.values[key] : fallback;
  }

  /** A text value. */
  string(key, fallback = null) {
    return this.get(key, fallback, (v) => (typeof v === "string" ? v : fail("a string")));
  }

  /** A list of texts. */
  strings(key, fallback = null) {
    return this.get(key, fallback, (v) =>
      Array.isArray(v) && v.every((s) => typeof s === "string") ? [...v] : fail("a list of strings"),
    );
  }

  /** A whole number. */
  integer(key, fallback = null) {
    return this.get(key, fallback, (v) => (Number.isInteger(v) ? v : fail("a whole number")));
  }

  /** A number. */
  number(key, fallback = null) {
    return this.get(key, fallback, (v) => (typeof v === "number" ? v : fail("a number")));
  }

  /** true or false. */
  boolean(key, fallback = null) {
    return this.get(key, fallback, (v) => (typeof v === "boolean" ? v : fail("true or false")));
  }

  /** One of `choices`. */
  choice(key, choices, fallback) {
    return this.get(key, fallback, (v) => {
      if (!choices.includes(v)) {
        throw new Error(`unknown variant \`${v}\`, expected one of ${choices.map((c) => `\`${c}\``).join(", ")}`);
      }
      return v;
    });
  }

  /** A duration in milliseconds (see `parseDurationMs`). */
  durationMs(key, fallback = null) {
    return this.get(key, fallback, parseDurationMs);
  }

  /** A size in bytes (see `parseBytes`). */
  bytes(key, fallback = null) {
    return this.get(key, fallback, parseBytes);
  }
}
