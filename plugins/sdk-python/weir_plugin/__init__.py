"""The Weir plugin SDK for Python: the same shape as the Rust SDK.

A plugin is a class with ``process``, ``tick``, ``flush``, ``snapshot`` and
``restore`` over a batch view (:class:`Batch`) and an output builder
(:class:`Output`); :class:`Windowed` runs an :class:`Aggregate` (read an
event, add it to a window, write a closed window) with the clock, late
events, ticks, snapshots and held acknowledgements taken care of.

The module ``plugin.py`` of a plugin names its class with :func:`export`::

    import weir_plugin

    class Upper(weir_plugin.Transform):
        def process(self, batch, out):
            for event in batch:
                out.emit(event.timestamp_ms, event.value.upper())

    weir_plugin.export(Upper)

Everything here is plain Python, so a plugin's tests run with
``python3 -m unittest`` without building the component; ``weir plugin
build`` adds the bindings that connect the class to the host.
"""

from .batch import Batch, Event, Header
from .config import Settings, parse_bytes, parse_duration_ms
from .field import Field, Record
from .output import Output, Rejection
from .state import load_state, save_state
from .transform import Transform, export, exported, log, now_ms
from .window import Aggregate, Closed, Late, WindowSpec, Windowed, Windows, Windowing

__all__ = [
    "Aggregate",
    "Batch",
    "Closed",
    "Event",
    "Field",
    "Header",
    "Late",
    "Output",
    "Record",
    "Rejection",
    "Settings",
    "Transform",
    "WindowSpec",
    "Windowed",
    "Windowing",
    "Windows",
    "export",
    "exported",
    "load_state",
    "log",
    "now_ms",
    "parse_bytes",
    "parse_duration_ms",
    "save_state",
]
