"""Tumbling and sliding windows over event time or processing time, as the
Rust SDK has them.

Windows are aligned to the Unix epoch. A window closes when the
**watermark** passes its end; on event time the watermark is the largest
event time seen minus ``allowed_lateness``, and an event whose windows have
all closed is *late*. On processing time the current time is the event time
and ``tick`` advances the watermark.

:class:`Windowed` runs an :class:`Aggregate`: subclass it with ``read``
(what to take from an event), ``new_acc``/``add`` (what a window keeps)
and ``emit`` (what a closed window writes).
"""

from typing import Any, Callable, Dict, List, NamedTuple, Optional

from .batch import Batch
from .config import Settings
from .field import Record
from .output import Output
from .state import load_state, save_state
from .transform import Transform, now_ms

_MIN = -(2**63)


class WindowSpec(NamedTuple):
    """Size, slide and allowed lateness, in milliseconds."""

    size_ms: int
    slide_ms: int
    allowed_lateness_ms: int = 0

    @classmethod
    def tumbling(cls, size_ms: int) -> "WindowSpec":
        """Back-to-back windows of ``size_ms``."""
        return cls(size_ms, size_ms, 0)

    def validate(self) -> None:
        """Raises ``ValueError`` explaining what is wrong."""
        if self.size_ms <= 0:
            raise ValueError(f"window size must be positive, got {self.size_ms} ms")
        if self.slide_ms <= 0 or self.slide_ms > self.size_ms:
            raise ValueError(
                f"slide must be positive and at most the window size ({self.size_ms} ms), got {self.slide_ms} ms"
            )
        if self.allowed_lateness_ms < 0:
            raise ValueError("allowed_lateness must not be negative")


class Closed(NamedTuple):
    """A closed window: ``[start, end)`` and what it accumulated."""

    start: int
    end: int
    acc: Any


class Late(ValueError):
    """The event falls only into windows that have already closed."""

    def __init__(self, watermark: int) -> None:
        super().__init__("late")
        self.watermark = watermark


class Windows:
    """Open windows by start, each with an accumulator made by ``new_acc``."""

    def __init__(self, spec: WindowSpec, new_acc: Callable[[], Any] = int) -> None:
        spec.validate()
        self.spec = spec
        self.new_acc = new_acc
        self.open: Dict[int, List[Any]] = {}  # start -> [acc, first_seq]
        self.watermark = _MIN
        self.closed: List[Closed] = []

    def add(self, ts: int, seq: int, update: Callable[..., Any], *args: Any) -> None:
        """Adds an event at ``ts`` to every window holding it:
        ``update(acc, *args)`` returns the new accumulator. Raises :class:`Late` if its earliest
        window has closed. Windows the watermark passes are collected in
        ``closed``."""
        size, slide, lateness = self.spec
        last_start = ts - ts % slide
        first_start = last_start - ((size - 1 - (ts - last_start)) // slide) * slide
        if first_start + size <= self.watermark:
            raise Late(self.watermark)
        open_ = self.open
        start = first_start
        while start <= last_start:
            slot = open_.get(start)
            if slot is None:
                open_[start] = [update(self.new_acc(), *args), seq]
            else:
                slot[0] = update(slot[0], *args)
                if seq < slot[1]:
                    slot[1] = seq
            start += slide
        self.advance(ts - lateness)

    def advance(self, watermark: int) -> None:
        """Moves the watermark forward (never back) and closes every window
        ending at or before it."""
        if watermark <= self.watermark:
            return
        self.watermark = watermark
        size = self.spec.size_ms
        if not self.open or min(self.open) + size > watermark:
            return
        for start in sorted(self.open):
            if start + size > watermark:
                break
            acc, _ = self.open.pop(start)
            self.closed.append(Closed(start, start + size, acc))

    def close_all(self) -> None:
        """Closes every open window (end of input)."""
        size = self.spec.size_ms
        for start in sorted(self.open):
            self.closed.append(Closed(start, start + size, self.open[start][0]))
        self.open.clear()

    def take_closed(self) -> List[Closed]:
        """The windows closed since the last call, oldest first."""
        closed, self.closed = self.closed, []
        return closed

    def hold_from(self) -> Optional[int]:
        """The lowest sequence number held in an open window."""
        return min((s[1] for s in self.open.values()), default=None)

    def to_json(self) -> Dict[str, Any]:
        """The open windows and the watermark, for snapshots."""
        return {
            "spec": list(self.spec),
            "open": [[start, first, acc] for start, (acc, first) in sorted(self.open.items())],
            "watermark": self.watermark,
        }

    def load_json(self, saved: Dict[str, Any]) -> None:
        """Restores what :meth:`to_json` saved, for the same spec."""
        if list(saved.get("spec", [])) != list(self.spec):
            raise ValueError("state was built with a different window size, slide or lateness")
        self.open = {int(start): [acc, int(first)] for start, first, acc in saved["open"]}
        self.watermark = int(saved["watermark"])
        self.closed = []


class Windowing(NamedTuple):
    """The windows an :class:`Aggregate` fills and the clock that fills them."""

    spec: WindowSpec
    time: str  # "processing" or "event"

    @classmethod
    def from_settings(cls, settings: Settings, default_window_ms: int = 1000) -> "Windowing":
        """From the usual settings: ``window`` (default 1 s), ``slide``
        (default: the window, so tumbling), ``time`` (``processing``, the
        default, or ``event``) and ``allowed_lateness`` (event time only)."""
        size = settings.duration_ms("window", default_window_ms)
        slide = settings.duration_ms("slide", size)
        time = settings.choice("time", ["processing", "event"], "processing")
        lateness = settings.duration_ms("allowed_lateness", 0)
        if time == "processing" and lateness:
            raise ValueError('allowed_lateness applies only to time = "event"')
        spec = WindowSpec(size, slide, lateness)
        spec.validate()
        return cls(spec, time)


#: The config keys :meth:`Windowing.from_settings` reads.
WINDOW_KEYS = ("window", "slide", "time", "allowed_lateness")


class Aggregate:
    """A plugin that folds events into one set of windows and writes one
    result per closed window; run it with :class:`Windowed`.

    Override ``init`` (read the config, return a :class:`Windowing`),
    ``read`` (what to take from an event; raise ``ValueError`` to refuse
    it), ``new_acc`` and ``add`` (what a window keeps; JSON-serialisable so
    snapshots carry it) and ``emit`` (write a closed window).
    """

    #: Version of the snapshot layout: raise it when the accumulator changes.
    STATE_VERSION = 1

    def init(self, config: Dict[str, Any]) -> Windowing:
        """Reads the config; returns the windows to fill."""
        return Windowing.from_settings(Settings(config, WINDOW_KEYS))

    def read(self, record: Record) -> Any:
        """What to add from the event ``record`` holds."""
        return None

    def new_acc(self) -> Any:
        """An empty accumulator."""
        return 0

    def add(self, acc: Any, item: Any) -> Any:
        """Adds ``item`` to ``acc``; returns the accumulator."""
        return acc + 1

    def emit(self, window: Closed, out: Output) -> None:
        """Writes a closed window."""
        raise NotImplementedError


class Windowed(Transform):
    """A stage running an :class:`Aggregate` (its class is given when
    subclassing: ``class Count(Windowed): aggregate = MyAggregate``): files
    events into windows on the configured clock, refuses late events with
    reason ``late``, writes windows as they close, holds acknowledgements
    of events in open windows, and saves the open windows in snapshots as
    ``{"version":N,"windows":...}``."""

    aggregate: type = Aggregate

    def __init__(self, config: Dict[str, Any]) -> None:
        self.plugin = self.aggregate()
        windowing = self.plugin.init(config)
        self.time = windowing.time
        self.windows = Windows(windowing.spec, self.plugin.new_acc)

    def _emit_closed(self, out: Output) -> None:
        for window in self.windows.take_closed():
            self.plugin.emit(window, out)

    def process(self, batch: Batch, out: Output) -> None:
        arrival = now_ms() if self.time == "processing" else None
        plugin, windows = self.plugin, self.windows
        read, add = plugin.read, plugin.add
        for event in batch:
            try:
                item = read(Record(event))
            except ValueError as e:
                out.reject(event.index, str(e))
                continue
            ts = event.timestamp_ms if arrival is None else arrival
            try:
                windows.add(ts, event.seq, add, item)
            except Late as late:
                out.reject(event.index, str(late))
            if windows.closed:
                self._emit_closed(out)

    def tick(self, now: int, out: Output) -> None:
        if self.time == "processing":
            self.windows.advance(now)
            self._emit_closed(out)

    def flush(self, out: Output) -> None:
        self.windows.close_all()
        self._emit_closed(out)

    def snapshot(self) -> bytes:
        return save_state(self.plugin.STATE_VERSION, {"windows": self.windows.to_json()})

    def restore(self, state: bytes) -> None:
        saved = load_state(self.plugin.STATE_VERSION, state)
        if not isinstance(saved.get("windows"), dict):
            raise ValueError("unreadable state: no windows")
        try:
            self.windows.load_json(saved["windows"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(str(e) if isinstance(e, ValueError) else f"unreadable state: {e}") from None

    def hold_from(self) -> Optional[int]:
        return self.windows.hold_from()


__all__ = ["Aggregate", "Closed", "Late", "WINDOW_KEYS", "WindowSpec", "Windowed", "Windowing", "Windows"]
