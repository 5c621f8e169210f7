"""Tests of the Python SDK itself: `python3 -m unittest` in this directory.
The cases mirror the Rust SDK's, so both read and window events alike."""

import unittest

from weir_plugin import Batch, Output, Settings, WindowSpec, Windows, parse_bytes, parse_duration_ms
from weir_plugin.field import Field, Record, json_field, split_csv


def counts(spec, stamps):
    w = Windows(spec)
    late = 0
    for i, ts in enumerate(stamps):
        try:
            w.add(ts, i, lambda n: n + 1)
        except ValueError:
            late += 1
    w.close_all()
    return [(c.start, c.end, c.acc) for c in w.take_closed()], late


class WindowsTest(unittest.TestCase):
    def test_tumbling_windows_align_to_the_epoch(self):
        self.assertEqual(
            counts(WindowSpec.tumbling(1000), [5, 999, 1000, 2500, 2999]),
            ([(0, 1000, 2), (1000, 2000, 1), (2000, 3000, 2)], 0),
        )

    def test_negative_times_floor(self):
        self.assertEqual(counts(WindowSpec.tumbling(1000), [-1, -1000, -1001])[0], [(-1000, 0, 2)])
        self.assertEqual(counts(WindowSpec.tumbling(1000), [-1, -1001])[1], 1)

    def test_sliding_windows_hold_each_event_size_over_slide_times(self):
        self.assertEqual(
            counts(WindowSpec(3000, 1000), [2500])[0], [(0, 3000, 1), (1000, 4000, 1), (2000, 5000, 1)]
        )
        self.assertEqual([g[0] for g in counts(WindowSpec(45000, 15000), [50000])[0]], [15000, 30000, 45000])
        self.assertEqual([g[0] for g in counts(WindowSpec(2500, 1000), [2600])[0]], [1000, 2000])

    def test_lateness_admits_stragglers(self):
        self.assertEqual(counts(WindowSpec.tumbling(1000), [1500, 999])[1], 1)
        self.assertEqual(counts(WindowSpec(1000, 1000, 600), [1500, 999]), ([(0, 1000, 1), (1000, 2000, 1)], 0))

    def test_hold_from_and_snapshots(self):
        w = Windows(WindowSpec(20, 10))
        w.add(15, 1, lambda n: n + 1)
        self.assertEqual(w.hold_from(), 1)
        back = Windows(WindowSpec(20, 10))
        back.load_json(w.to_json())
        back.add(16, 2, lambda n: n + 1)
        back.add(40, 3, lambda n: n + 1)
        self.assertEqual([tuple(c) for c in back.take_closed()[:2]], [(0, 20, 2), (10, 30, 2)])
        with self.assertRaises(ValueError):
            Windows(WindowSpec(30, 10)).load_json(w.to_json())

    def test_invalid_specs_are_explained(self):
        with self.assertRaisesRegex(ValueError, "positive"):
            Windows(WindowSpec.tumbling(0))
        with self.assertRaisesRegex(ValueError, "slide"):
            Windows(WindowSpec(10, 20))


class ConfigTest(unittest.TestCase):
    def test_durations_and_sizes_read_as_the_host_reads_them(self):
        self.assertEqual(parse_duration_ms("1.5s"), 1500)
        self.assertEqual(parse_duration_ms("250ms"), 250)
        self.assertEqual(parse_duration_ms(250), 250)
        self.assertEqual(parse_duration_ms("2m"), 120000)
        self.assertEqual(parse_bytes("64MiB"), 64 << 20)
        with self.assertRaisesRegex(ValueError, 'unknown unit "weeks"'):
            parse_duration_ms("2 weeks")

    def test_settings_name_the_key_at_fault(self):
        s = Settings('{"window":"2s","labels":["a"]}', ["window", "labels", "n"])
        self.assertEqual(s.duration_ms("window"), 2000)
        self.assertEqual(s.strings("labels"), ["a"])
        self.assertEqual(s.integer("n", 7), 7)
        with self.assertRaisesRegex(ValueError, "^`window`: expected a whole number"):
            s.integer("window")
        with self.assertRaisesRegex(ValueError, "unknown field `x`, expected one of `a`"):
            Settings({"x": 1}, ["a"])


class FieldsTest(unittest.TestCase):
    def test_csv_rows_split_like_the_rust_sdk(self):
        self.assertEqual(split_csv(b'"1","2015-02-04 17:51:00",23.18,"say ""hi"""'),
                         [b"1", b"2015-02-04 17:51:00", b"23.18", b'say "hi"'])
        self.assertEqual(split_csv(b"a,,b,\r"), [b"a", b"", b"b", b""])
        with self.assertRaisesRegex(ValueError, "unterminated"):
            split_csv(b'"open')

    def test_json_scalars_read_as_text_the_way_rust_prints_them(self):
        doc = b'{"i":7,"f":21.50,"e":1e21,"small":1e-7,"t":true,"n":null,"s":"x","a":[1]}'
        got = {k: json_field(doc, k) for k in ["i", "f", "e", "small", "t", "n", "s", "a", "missing"]}
        self.assertEqual(got["i"], (True, "7"))
        self.assertEqual(got["f"], (True, "21.5"))
        self.assertEqual(got["e"], (True, "1000000000000000000000"))
        self.assertEqual(got["small"], (True, "0.0000001"))
        self.assertEqual(got["t"], (True, "true"))
        self.assertEqual(got["n"], (True, ""))
        self.assertEqual(got["s"], (True, "x"))
        self.assertEqual(got["a"], (True, None))
        self.assertEqual(got["missing"], (False, None))
        self.assertEqual(json_field(b'{"z":-0,"y":-0.0}', "z"), (True, "-0"))
        self.assertEqual(json_field(b'{"z":-0,"y":-0.0}', "y"), (True, "-0"))
        for bad in [b'{"x":1e400}', b'{"x":"\\ud800"}', b'{"x":NaN}', b"[" * 100000]:
            with self.assertRaisesRegex(ValueError, "^invalid JSON"):
                json_field(bad, "x")

    def test_records_read_keys_by_whole_value_column_or_field(self):
        batch = Batch.from_values(0, [(1, " 7, 1 "), (2, "7"), (3, '{"gender":1}')])
        gender = Field.keyed("gender", ["user", "gender"])
        self.assertEqual(Record(batch[0]).key(gender), "1")
        with self.assertRaisesRegex(ValueError, "row has 1 columns, the key is column 2"):
            Record(batch[1]).key(gender)
        self.assertEqual(Record(batch[2]).key(Field.keyed("gender", None)), "1")
        self.assertEqual(Record(batch[0]).key(Field.WHOLE), "7, 1")


class BatchOutputTest(unittest.TestCase):
    def test_events_carry_sequence_numbers_keys_and_headers(self):
        b = Batch(10, [5, 6], b"abcd", [1, 4], b"k", [1, 1], [(1, "h", b"v")])
        events = list(b)
        self.assertEqual([(e.index, e.seq, e.timestamp_ms, e.value, e.key) for e in events],
                         [(0, 10, 5, b"a", b"k"), (1, 11, 6, b"bcd", None)])
        self.assertEqual(events[1].headers[0].name, "h")
        out = Output()
        out.emit(1, "x", key="k", headers=[("h", "v")])
        out.emit(2, b"yz")
        out.reject(0, "bad")
        self.assertEqual((out.values_text(), out.key_ends, out.headers), (["x", "yz"], [1, 1], [(0, "h", b"v")]))


if __name__ == "__main__":
    unittest.main()
