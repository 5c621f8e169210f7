"""Native tests of the plugin: `python3 -m unittest` in this directory."""

import os
import sys
import unittest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)

from weir_plugin import Batch, Output  # noqa: E402

from plugin import GenderCount  # noqa: E402


def run(config, events):
    stage = GenderCount(config)
    out = Output()
    stage.process(Batch.from_values(0, events), out)
    stage.flush(out)
    return out.values_text(), [r.reason for r in out.rejections]


class GenderCountTest(unittest.TestCase):
    def test_seed_format_matches_todays_consumers(self):
        events = [(100, v) for v, n in [("0", 1), ("1", 6), ("2", 3)] for _ in range(n)]
        out, _ = run({"time": "event", "format": "seed"}, events)
        self.assertEqual(out, ['[{"0":1},{"1":6},{"2":3}]'])

    def test_json_format_counts_per_window_with_sorted_keys(self):
        out, rejected = run(
            {"time": "event", "key": "gender"},
            [
                (10, '{"gender":"1"}'),
                (20, '{"gender":"0","x":[1,{"gender":"9"}]}'),
                (1500, '{"gender":1}'),
                (1600, '{"gender":null}'),
                (1700, '{"other":1}'),
                (1800, "not json"),
            ],
        )
        self.assertEqual(
            out,
            [
                '{"window_start":0,"window_end":1000,"counts":{"0":1,"1":1}}',
                '{"window_start":1000,"window_end":2000,"counts":{"":1,"1":1}}',
            ],
        )
        self.assertEqual(rejected[0], 'no field "gender"')
        self.assertTrue(rejected[1].startswith("invalid JSON"), rejected)

    def test_csv_columns_select_the_key(self):
        config = {"time": "event", "key": "gender", "columns": ["user_id", "gender", "province"], "format": "seed"}
        out, _ = run(config, [(1, '7,1,"Hebei, CN"'), (2, "8,0,x"), (3, "9,1,y")])
        self.assertEqual(out, ['[{"0":1},{"1":2}]'])

    def test_late_events_are_rejected_and_sliding_windows_count_twice(self):
        _, rejected = run({"time": "event"}, [(1500, "a"), (200, "b")])
        self.assertEqual(rejected, ["late"])
        out, _ = run({"time": "event", "window": "2s", "slide": "1s", "format": "seed"}, [(1500, "a")])
        self.assertEqual(out, ['[{"a":1}]', '[{"a":1}]'])

    def test_state_carries_open_windows_across_instances(self):
        config = {"time": "event", "format": "seed"}
        a = GenderCount(config)
        out = Output()
        a.process(Batch.from_values(0, [(10, "1"), (20, "1")]), out)
        self.assertTrue(out.is_empty())
        self.assertEqual(a.hold_from(), 0)
        b = GenderCount(config)
        b.restore(a.snapshot())
        b.process(Batch.from_values(2, [(30, "0"), (1000, "0")]), out)
        self.assertEqual(out.values_text(), ['[{"0":1},{"1":2}]'])
        self.assertEqual(b.hold_from(), 3)
        with self.assertRaises(ValueError):
            GenderCount({"time": "event", "window": "5s"}).restore(b.snapshot())
        with self.assertRaises(ValueError):
            b.restore(b"\xff garbage")

    def test_bad_config_is_explained(self):
        with self.assertRaisesRegex(ValueError, "unknown field `windw`"):
            GenderCount({"windw": "1s"})
        with self.assertRaisesRegex(ValueError, "not one of the columns"):
            GenderCount({"key": "g", "columns": ["a"]})
        with self.assertRaisesRegex(ValueError, "`window`: invalid duration"):
            GenderCount({"window": "2 weeks"})


if __name__ == "__main__":
    unittest.main()
