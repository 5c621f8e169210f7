"""The plugin class, the host's clock and log, and how a plugin names its
class for the host."""

import time
from typing import Any, Callable, Dict, Optional

from .batch import Batch
from .output import Output


class Transform:
    """A stage of a pipeline: one instance per pipeline node, created with
    the node's ``config`` table (a dict). Raise ``ValueError`` from
    ``__init__`` to refuse a config; the host reports the reason when the
    pipeline is loaded."""

    def __init__(self, config: Dict[str, Any]) -> None:
        self.config = config

    def process(self, batch: Batch, out: Output) -> None:
        """Processes one batch: emit to ``out``, refuse with ``out.reject``."""

    def tick(self, now_ms: int, out: Output) -> None:
        """Processing time advanced to ``now_ms`` (called while idle too)."""

    def flush(self, out: Output) -> None:
        """End of input: emit whatever open windows hold."""

    def snapshot(self) -> bytes:
        """All state, for checkpoints and hot reloads."""
        return b""

    def restore(self, state: bytes) -> None:
        """Takes back a snapshot (maybe of an older build); raise
        ``ValueError`` with the reason to refuse it. The default, for
        plugins without state, takes only the empty snapshot."""
        if state:
            raise ValueError(
                f"this plugin keeps no state, but was given {len(state)} bytes of it"
            )

    def hold_from(self) -> Optional[int]:
        """Lowest sequence number whose effect is held in state and not yet
        emitted (the first event of the oldest open window), or ``None``."""
        return None


_exported: Optional[type] = None


def export(cls: type) -> type:
    """Names the plugin's class: ``weir_plugin.export(MyStage)`` in
    ``plugin.py``. Returns the class, so it also works as a decorator."""
    global _exported
    _exported = cls
    return cls


def exported() -> type:
    """The class :func:`export` named."""
    if _exported is None:
        raise RuntimeError("plugin.py did not call weir_plugin.export(YourClass)")
    return _exported


def _wall_clock() -> int:
    return time.time_ns() // 1_000_000


def _print_log(level: str, message: str) -> None:
    print(f"[{level}] {message}")


#: Set by the component bindings to the host's functions.
_host: Dict[str, Callable] = {"now_ms": _wall_clock, "log": _print_log}


def now_ms() -> int:
    """Current time in ms since the Unix epoch (the host's clock when run
    by weir)."""
    return _host["now_ms"]()


def log(level: str, message: str) -> None:
    """Writes a log line (``trace``, ``debug``, ``info``, ``warn`` or
    ``error``), tagged by the host with the stage name."""
    _host["log"](level, message)
