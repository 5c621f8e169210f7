"""Native tests of the plugin: `python3 -m unittest` in this directory."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from weir_plugin import Batch, Output  # noqa: E402

from plugin import Hashtags  # noqa: E402


def post(i, text, tags=None):
    p = {"id": str(i), "text": text, "lang": "en"}
    if tags is not None:
        p["entities"] = {"hashtags": [{"tag": t} for t in tags]}
    return json.dumps(p)


def run(config, events):
    stage = Hashtags(config)
    out = Output()
    stage.process(Batch.from_values(0, events), out)
    stage.flush(out)
    return [json.loads(v) for v in out.values_text()], [r.reason for r in out.rejections]


class HashtagsTest(unittest.TestCase):
    def test_top_hashtags_per_window_most_frequent_first(self):
        config = {"time": "event", "window": "10s", "slide": "10s", "top": 2}
        windows, rejected = run(
            config,
            [
                (1000, post(1, "x", ["Rust", "kafka"])),
                (2000, post(2, "about #rust and #wasm #Rust")),
                (3000, post(3, "x", ["kafka"])),
                (4000, post(4, "x", ["iot"])),
                (12000, post(5, "x", ["iot"])),
                (13000, "not json"),
            ],
        )
        self.assertEqual(rejected[0][:12], "invalid JSON")
        self.assertEqual(windows[0]["posts"], 4)
        self.assertEqual(list(windows[0]["counts"].items()), [("kafka", 2), ("rust", 2)])
        self.assertEqual(windows[1]["counts"], {"iot": 1})

    def test_words_without_stop_words_links_and_mentions(self):
        config = {"time": "event", "window": "10s", "slide": "10s", "words": True, "top": 3}
        windows, _ = run(config, [(1, post(1, "The Kafka stream and the @bob https://x.io #tag kafka streams"))])
        self.assertEqual(list(windows[0]["words"].items()), [("kafka", 2), ("stream", 1), ("streams", 1)])

    def test_sliding_windows_default_to_a_minute_every_ten_seconds(self):
        windows, _ = run({"time": "event"}, [(65_000, post(1, "#a"))])
        self.assertEqual([(w["window_start"], w["window_end"]) for w in windows][:2], [(10_000, 70_000), (20_000, 80_000)])
        self.assertEqual(len(windows), 6)

    def test_bad_settings_are_refused(self):
        with self.assertRaisesRegex(ValueError, "`top` must be at least 1"):
            Hashtags({"top": 0})
        with self.assertRaisesRegex(ValueError, "unknown field `tops`"):
            Hashtags({"tops": 3})


if __name__ == "__main__":
    unittest.main()
