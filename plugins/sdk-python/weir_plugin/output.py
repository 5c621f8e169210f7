"""The output builder: what one call emits and which input events it
refuses."""

from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

Bytes = Union[bytes, bytearray, str]


def _bytes(b: Bytes) -> bytes:
    return b.encode("utf-8") if isinstance(b, str) else bytes(b)


class Rejection(NamedTuple):
    """An input event refused, sent by the host to the dead-letter output."""

    index: int
    reason: str


class Output:
    """Collects the events a call emits, laid out flat as the host wants
    them, and the events it refuses."""

    __slots__ = ("timestamps", "values", "value_ends", "keys", "key_ends", "headers", "rejections")

    def __init__(self) -> None:
        self.timestamps: List[int] = []
        self.values = bytearray()
        self.value_ends: List[int] = []
        self.keys = bytearray()
        self.key_ends: List[int] = []
        self.headers: List[Tuple[int, str, bytes]] = []
        self.rejections: List[Rejection] = []

    def emit(
        self,
        timestamp_ms: int,
        value: Bytes,
        key: Optional[Bytes] = None,
        headers: Sequence[Tuple[str, Bytes]] = (),
    ) -> None:
        """Emits one event downstream (``str`` values are UTF-8 encoded)."""
        i = len(self.value_ends)
        self.timestamps.append(timestamp_ms)
        self.values += value.encode("utf-8") if isinstance(value, str) else value
        self.value_ends.append(len(self.values))
        if key is not None:
            self.keys += _bytes(key)
        self.key_ends.append(len(self.keys))
        for name, v in headers:
            self.headers.append((i, name, _bytes(v)))

    def reject(self, index: int, reason: str) -> None:
        """Refuses input event ``index`` of the batch with a reason for
        operators; the host sends it to the dead-letter output."""
        self.rejections.append(Rejection(index, str(reason)))

    def __len__(self) -> int:
        return len(self.value_ends)

    def is_empty(self) -> bool:
        """Whether nothing was emitted (rejections aside)."""
        return not self.value_ends

    def values_text(self) -> List[str]:
        """The emitted values as text, for tests."""
        out, start = [], 0
        for end in self.value_ends:
            out.append(self.values[start:end].decode("utf-8", "replace"))
            start = end
        return out

    def clear(self) -> None:
        """Forgets everything collected."""
        self.__init__()
