"""The batch view: the events of one ``process`` call, read in place from
the flat layout the host sends (all values back to back, end offsets)."""

from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union


class Header(NamedTuple):
    """A header of one event: its name and raw value."""

    name: str
    value: bytes


class Event(NamedTuple):
    """One event of a batch."""

    index: int
    """Position in the batch: what :meth:`Output.reject` takes."""
    seq: int
    """Host-assigned sequence number, growing across batches and restarts."""
    timestamp_ms: int
    """Event time, milliseconds since the Unix epoch."""
    value: bytes
    """The value."""
    key: Optional[bytes]
    """The key, or ``None`` when the event has none."""
    headers: Tuple[Header, ...]
    """The event's headers (usually none)."""

    def text(self) -> str:
        """The value as UTF-8 text (``UnicodeDecodeError`` if it is not)."""
        return self.value.decode("utf-8")


class Batch:
    """The events of one call, in order. Iterate it, index it, or take
    ``len``; events are built as they are read."""

    __slots__ = ("base_seq", "timestamps", "values", "value_ends", "keys", "key_ends", "_headers")

    def __init__(
        self,
        base_seq: int,
        timestamps: Sequence[int],
        values: bytes,
        value_ends: Sequence[int],
        keys: bytes = b"",
        key_ends: Optional[Sequence[int]] = None,
        headers: Sequence[Tuple[int, str, bytes]] = (),
    ) -> None:
        self.base_seq = base_seq
        self.timestamps = timestamps
        self.values = values
        self.value_ends = value_ends
        self.keys = keys
        self.key_ends = key_ends if key_ends is not None else [0] * len(value_ends)
        by_event: dict = {}
        for event, name, value in headers:
            by_event.setdefault(event, []).append(Header(name, bytes(value)))
        self._headers = {i: tuple(h) for i, h in by_event.items()}

    @classmethod
    def from_values(cls, base_seq: int, events: Sequence[Tuple[int, Union[str, bytes]]]) -> "Batch":
        """A batch of ``(timestamp_ms, value)`` pairs, for tests."""
        values = bytearray()
        ends: List[int] = []
        for _, v in events:
            values.extend(v.encode() if isinstance(v, str) else v)
            ends.append(len(values))
        return cls(base_seq, [t for t, _ in events], bytes(values), ends)

    def __len__(self) -> int:
        return len(self.value_ends)

    def __getitem__(self, i: int) -> Event:
        if not 0 <= i < len(self.value_ends):
            raise IndexError(i)
        start = self.value_ends[i - 1] if i else 0
        kstart = self.key_ends[i - 1] if i else 0
        kend = self.key_ends[i]
        return Event(
            i,
            self.base_seq + i,
            self.timestamps[i],
            self.values[start : self.value_ends[i]],
            self.keys[kstart:kend] if kend > kstart else None,
            self._headers.get(i, ()),
        )

    def __iter__(self) -> Iterator[Event]:
        values, ts, base, headers = self.values, self.timestamps, self.base_seq, self._headers
        keys, key_ends = self.keys, self.key_ends
        start = kstart = 0
        for i, end in enumerate(self.value_ends):
            kend = key_ends[i]
            yield Event(
                i,
                base + i,
                ts[i],
                values[start:end],
                keys[kstart:kend] if kend > kstart else None,
                headers.get(i, ()),
            )
            start, kstart = end, kend
