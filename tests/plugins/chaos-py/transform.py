"""Echoes every event and counts them; misbehaves when a value asks:

- `sleep:MS`: `time.sleep` for MS milliseconds, then emits `slept`;
- `open:PATH`: reads a file, emitting `opened` or rejecting the record with
  `open failed: ...`;
- `connect:HOST:PORT`: opens a TCP connection, emitting `connected` or
  rejecting with `connect failed: ...`;
- `print:TEXT`: prints TEXT, then echoes the value.

`flush` emits `total=N`, the count of echoed events, kept in snapshots.
"""

import socket
import time

from wit_world.exports import transform as iface
from wit_world.imports import types


def _empty() -> types.Events:
    return types.Events([], b"", [], b"", [], [])


class Stage(iface.Stage):
    def __init__(self, config: str) -> None:
        self.total = 0

    def process(self, input: types.Batch) -> types.BatchResult:
        ev = input.events
        stamps, values, ends, rejections = [], bytearray(), [], []
        start = 0

        def emit(ts: int, value: bytes) -> None:
            stamps.append(ts)
            values.extend(value)
            ends.append(len(values))

        for i, end in enumerate(ev.value_ends):
            v = ev.values[start:end]
            start = end
            ts = ev.timestamps[i]
            if v.startswith(b"sleep:"):
                time.sleep(int(v[6:]) / 1000)
                emit(ts, b"slept")
            elif v.startswith(b"open:"):
                try:
                    with open(v[5:].decode(), "rb") as f:
                        f.read()
                    emit(ts, b"opened")
                except Exception as e:  # noqa: BLE001 - any failure is the answer
                    rejections.append(types.Rejection(i, f"open failed: {e}"))
            elif v.startswith(b"connect:"):
                host, port = v[8:].decode().rsplit(":", 1)
                try:
                    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                        s.connect((host, int(port)))
                    emit(ts, b"connected")
                except Exception as e:  # noqa: BLE001
                    rejections.append(types.Rejection(i, f"connect failed: {e}"))
            else:
                if v.startswith(b"print:"):
                    print(v[6:].decode())
                self.total += 1
                emit(ts, v)
        events = types.Events(stamps, bytes(values), ends, b"", [0] * len(ends), [])
        return types.BatchResult(events, rejections, None)

    def tick(self, now_ms: int) -> types.BatchResult:
        return types.BatchResult(_empty(), [], None)

    def flush(self) -> types.BatchResult:
        v = f"total={self.total}".encode()
        return types.BatchResult(types.Events([0], v, [len(v)], b"", [0], []), [], None)

    def snapshot(self) -> bytes:
        return str(self.total).encode()

    def restore(self, state: bytes) -> None:
        self.total = int(state.decode() or "0")
