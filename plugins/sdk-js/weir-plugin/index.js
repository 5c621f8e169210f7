// The Weir plugin SDK for JavaScript: the same shape as the Rust SDK.
//
// A plugin is a class with process/tick/flush/snapshot/restore over a batch
// view (Batch) and an output builder (Output); Windowed runs an Aggregate
// (read an event, add it to a window, write a closed window) with the clock,
// late events, ticks, snapshots and held acknowledgements taken care of.
//
// `plugin.js` names its class with `exportStage(MyStage)`. Everything here
// is plain JavaScript, so a plugin's tests run with `node --test` without
// building the component; `weir plugin build` adds the bindings that
// connect the class to the host.

export { Batch } from "./batch.js";
export { Output } from "./output.js";
export { Settings, parseDurationMs, parseBytes } from "./config.js";
export { Field, Record, splitCsv, trimmedText } from "./field.js";
export { saveState, loadState } from "./state.js";
export { Transform, exportStage, exported, nowMs, log, setHost } from "./transform.js";
export { WindowSpec, Windows, Windowing, Aggregate, Windowed, Late, WINDOW_KEYS } from "./window.js";
