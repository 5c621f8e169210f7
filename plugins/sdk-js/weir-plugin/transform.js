// The plugin class, the host's clock and log, and how a plugin names its
// class for the host.

/** A stage of a pipeline: one instance per pipeline node, created with the
 * node's `config` table (an object). Throw an Error from the constructor to
 * refuse a config; the host reports its message when the pipeline loads. */
export class Transform {
  constructor(config) {
    this.config = config;
  }

  /** Processes one batch: emit to `out`, refuse with `out.reject`. */
  process(batch, out) {}

  /** Processing time advanced to `nowMs` (called while idle too). */
  tick(nowMs, out) {}

  /** End of input: emit whatever open windows hold. */
  flush(out) {}

  /** All state as bytes (a Uint8Array), for checkpoints and hot reloads. */
  snapshot() {
    return new Uint8Array(0);
  }

  /** Takes back a snapshot (maybe of an older build); throw an Error with
   * the reason to refuse it. The default, for plugins without state, takes
   * only the empty snapshot. */
  restore(state) {
    if (state.length > 0) {
      throw new Error(`this plugin keeps no state, but was given ${state.length} bytes of it`);
    }
  }

  /** Lowest sequence number whose effect is held in state and not yet
   * emitted (the first event of the oldest open window), or null. */
  holdFrom() {
    return null;
  }
}

let exportedClass = null;

/** Names the plugin's class: `exportStage(MyStage)` in `plugin.js`.
 * Returns the class. */
export function exportStage(cls) {
  exportedClass = cls;
  return cls;
}

/** The class `exportStage` named. */
export function exported() {
  if (exportedClass === null) throw new Error("plugin.js did not call exportStage(YourClass)");
  return exportedClass;
}

const host = {
  nowMs: () => Date.now(),
  log: (level, message) => console.log(`[${level}] ${message}`),
};

/** Used by the component bindings to connect the host's functions. */
export function setHost(functions) {
  Object.assign(host, functions);
}

/** Current time in ms since the Unix epoch (the host's clock under weir). */
export function nowMs() {
  return host.nowMs();
}

/** Writes a log line ("trace", "debug", "info", "warn" or "error"), tagged
 * by the host with the stage name. */
export function log(level, message) {
  host.log(level, message);
}
