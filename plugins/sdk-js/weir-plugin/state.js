// Versioned plugin state: {"version":N,...} as JSON, so a build that
// changes its layout refuses old snapshots with a reason instead of
// misreading them (the layout the Rust SDK writes).

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Saves `state` (an object of JSON values) with its layout version. */
export function saveState(version, state) {
  return encoder.encode(JSON.stringify({ version, ...state }));
}

/** Reads state saved by `saveState` with the same version; throws an Error
 * with the reason otherwise. */
export function loadState(version, bytes) {
  let saved;
  try {
    saved = JSON.parse(decoder.decode(bytes));
  } catch (e) {
    throw new Error(`unreadable state: ${e.message}`);
  }
  if (saved === null || typeof saved !== "object" || !Number.isInteger(saved.version)) {
    throw new Error("unreadable state: no version");
  }
  if (saved.version !== version) {
    throw new Error(`state version ${saved.version} is not supported (this build reads version ${version})`);
  }
  return saved;
}
