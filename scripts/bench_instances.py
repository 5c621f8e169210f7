"""`instances = 2` against one instance through `weir run`, alternating
runs of the same binary: the grayscale job (every valid sample image 20
times; the plugin keeps no state, so with `route = "batch"` each image
goes to the least busy instance) and gender-count end to end (10 M events,
routed by the `gender` field). Each job also runs with one instance held
to one core (`taskset`), so the table shows what the machine's second
core adds, however the work is spread over it. Prints a table and writes
instances-result.json into WORK.

    python3 scripts/bench_instances.py WORK [EVENTS]
"""

import json
import os
import shutil
import sys
from pathlib import Path

from bench_spark import measure, write_events

ROUNDS = 3
# The deliberately bad samples (data/README.md), left out.
BAD = ("broken_truncated.jpg", "not_an_image.jpg")
REPO = Path(__file__).resolve().parent.parent
PLUGINS = REPO / "target/wasm32-wasip2/plugin"

IMAGES = """
[sources.photos]
type = "images"
path = "images"
pattern = ["*.jpg", "*.png"]

[transforms.gray]
type = "wasm"
inputs = ["photos"]
plugin = "{plugins}/grayscale.wasm"
memory_limit = "256MiB"
timeout = "10s"
config = {{ output = "png" }}
instances = {n}
route = "batch"

[sinks.out]
type = "directory"
inputs = ["gray"]
path = "gray-{out}"
name = "filename"
"""

COUNTS = """
[sources.events]
type = "replay"
path = "{data}"
format = "jsonl"
timestamp = "ts"

[transforms.count]
type = "wasm"
inputs = ["events"]
plugin = "{plugins}/gender_count.wasm"
config = {{ key = "gender", window = "1s", time = "event" }}
instances = {n}
key_field = "gender"

[sinks.out]
type = "file"
inputs = ["count"]
path = "counts-{out}.jsonl"
"""


# The variants each job runs: (key, instances, held to one core).
VARIANTS = (("1", 1, False), ("2", 2, False), ("1-core", 1, True))


def one_core():
    """The first CPU this process may run on: `weir` held to it sees a
    1-core machine (its thread pools size themselves from the affinity)."""
    return str(min(os.sched_getaffinity(0)))


def best_of(work: Path, name: str, template: str, fill: dict, outputs: str):
    """Best wall time and its peak RSS for 1 and 2 instances, and for one
    instance on one core, runs alternating so all see the same spells of
    machine speed."""
    best = {}
    for _ in range(ROUNDS):
        for key, n, pinned in VARIANTS:
            pipeline = work / f"{name}-{key}.toml"
            pipeline.write_text(template.format(n=n, out=key, plugins=PLUGINS, **fill))
            shutil.rmtree(work / outputs.format(out=key), ignore_errors=True)
            if "." in outputs:
                (work / outputs.format(out=key)).unlink(missing_ok=True)
            cmd = [str(REPO / "target/release/weir"), "run", str(pipeline)]
            if pinned:
                cmd = ["taskset", "-c", one_core()] + cmd
            wall, rss = measure(cmd, work, (work / f"{name}-{key}.log").open("w"))
            if key not in best or wall < best[key][0]:
                best[key] = (wall, rss)
    return best


def main():
    work = Path(sys.argv[1]).resolve()
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000
    work.mkdir(parents=True, exist_ok=True)
    images = work / "images"
    if not images.exists():
        images.mkdir()
        for i in range(20):
            for f in (REPO / "data/images").iterdir():
                if f.suffix in (".jpg", ".png") and f.name not in BAD:
                    shutil.copy(f, images / f"{i}_{f.name}")
    count = len(list(images.iterdir()))
    data = work / f"events-{events}.jsonl"
    if not data.exists():
        partial = data.with_suffix(".partial")
        write_events(partial, events)
        partial.rename(data)

    gray = best_of(work, "images", IMAGES, {}, "gray-{out}")
    made = [len(list((work / f"gray-{key}").iterdir())) for key, _, _ in VARIANTS]
    assert made == [count] * len(made), f"gray images written {made}, expected {count}"
    counts = best_of(work, "counts", COUNTS, {"data": data}, "counts-{out}.jsonl")

    result = {
        "images": {"count": count, **{key: {"seconds": w, "peak_rss_mib": r}
                                      for key, (w, r) in gray.items()}},
        "gender_count": {"events": events, **{key: {"seconds": w, "peak_rss_mib": r}
                                              for key, (w, r) in counts.items()}},
    }
    (work / "instances-result.json").write_text(json.dumps(result, indent=2))
    print(f"| job (best of {ROUNDS}, alternating) | 1 instance, one core | 1 instance "
          "| 2 instances | 2 instances / 1 | both cores / one core |")
    print("|---|---|---|---|---|---|")
    for what, b, unit, amount in (
        (f"grayscale, {count} images", gray, "images/s", count),
        (f"gender-count end to end, {events:,} events", counts, "events/s", events),
    ):
        cells = [f"{w:.2f} s, {amount / w:,.0f} {unit}, {r:.0f} MiB"
                 for w, r in (b["1-core"], b["1"], b["2"])]
        both = min(b["1"][0], b["2"][0])
        print(f"| {what} | {' | '.join(cells)} | {b['1'][0] / b['2'][0]:.2f}x "
              f"| {b['1-core'][0] / both:.2f}x |")


if __name__ == "__main__":
    main()
