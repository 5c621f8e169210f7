"""The `stage` resource of the `weir:plugin/transform` interface, adapting
the class `plugin.py` exported with `weir_plugin.export` (written by `weir
plugin build`; the plugin's own code never sees the generated bindings)."""

import json

import plugin  # noqa: F401 - runs weir_plugin.export(...)
import weir_plugin
from weir_plugin import transform as _sdk
from componentize_py_types import Err
from wit_world.exports import transform as iface
from wit_world.imports import host, types

_LEVELS = {
    "trace": types.Level.TRACE,
    "debug": types.Level.DEBUG,
    "info": types.Level.INFO,
    "warn": types.Level.WARN,
    "error": types.Level.ERROR,
}
_sdk._host["now_ms"] = host.now_ms
_sdk._host["log"] = lambda level, message: host.log(_LEVELS.get(level, types.Level.INFO), message)


def _result(stage, out: weir_plugin.Output) -> types.BatchResult:
    events = types.Events(
        out.timestamps,
        bytes(out.values),
        out.value_ends,
        bytes(out.keys),
        out.key_ends,
        [types.Header(i, name, value) for i, name, value in out.headers],
    )
    rejections = [types.Rejection(r.index, r.reason) for r in out.rejections]
    return types.BatchResult(events, rejections, stage.hold_from())


class Stage(iface.Stage):
    """One pipeline node's instance of the plugin."""

    def __init__(self, config: str) -> None:
        try:
            self.inner = weir_plugin.exported()(json.loads(config) if config.strip() else {})
        except Exception as e:  # noqa: BLE001 - any failure refuses the config
            raise Err(str(e) or type(e).__name__) from None

    def process(self, input: types.Batch) -> types.BatchResult:
        ev = input.events
        batch = weir_plugin.Batch(
            input.base_seq,
            ev.timestamps,
            ev.values,
            ev.value_ends,
            ev.keys,
            ev.key_ends,
            [(h.event, h.name, h.value) for h in ev.headers],
        )
        out = weir_plugin.Output()
        self.inner.process(batch, out)
        return _result(self.inner, out)

    def tick(self, now_ms: int) -> types.BatchResult:
        out = weir_plugin.Output()
        self.inner.tick(now_ms, out)
        return _result(self.inner, out)

    def flush(self) -> types.BatchResult:
        out = weir_plugin.Output()
        self.inner.flush(out)
        return _result(self.inner, out)

    def snapshot(self) -> bytes:
        return bytes(self.inner.snapshot())

    def restore(self, state: bytes) -> None:
        try:
            self.inner.restore(state)
        except Exception as e:  # noqa: BLE001 - any failure refuses the state
            raise Err(str(e) or type(e).__name__) from None
