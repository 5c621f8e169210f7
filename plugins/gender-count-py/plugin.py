"""Weir plugin `gender-count-py`: the `gender-count` plugin in Python.

Counts events by value over time windows, with the same config and the
same output, byte for byte, as the Rust plugin:

- `key`: what to count by. Absent: the whole value (trimmed). A name: that
  JSON field, or that CSV column when `columns` lists the CSV header.
- `columns`: CSV column names, making the input CSV.
- `window` (default `"1s"`), `slide` (default = window; smaller = sliding).
- `time`: `"processing"` (default) or `"event"` (the event timestamp).
- `allowed_lateness` (event time, default `"0s"`).
- `format`: `"json"` (default), one object per window
  `{"window_start":MS,"window_end":MS,"counts":{"0":N,...}}`, or `"seed"`,
  the text today's consumers read: `[{"0":1},{"1":6},{"2":3}]`.
"""

import json

import weir_plugin
from weir_plugin import Aggregate, Field, Settings, Windowed, Windowing
from weir_plugin.window import WINDOW_KEYS


class Counter(Aggregate):
    """Counts per distinct key within one window."""

    def init(self, config):
        settings = Settings(config, ("key", "columns", "format") + WINDOW_KEYS)
        self.field = Field.keyed(settings.string("key"), settings.strings("columns"))
        self.format = settings.choice("format", ["json", "seed"], "json")
        return Windowing.from_settings(settings)

    def read(self, record):
        return record.key(self.field)

    def new_acc(self):
        return {}

    def add(self, counts, key):
        counts[key] = counts.get(key, 0) + 1
        return counts

    def emit(self, window, out):
        counts = sorted(window.acc.items())
        if self.format == "json":
            text = '{"window_start":%d,"window_end":%d,"counts":%s}' % (
                window.start,
                window.end,
                json.dumps(dict(counts), separators=(",", ":"), ensure_ascii=False),
            )
        else:
            text = json.dumps([{k: n} for k, n in counts], separators=(",", ":"), ensure_ascii=False)
        out.emit(window.end, text)


@weir_plugin.export
class GenderCount(Windowed):
    """The plugin: counts in windows."""

    aggregate = Counter
