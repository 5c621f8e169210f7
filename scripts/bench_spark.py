"""Weir against Spark Structured Streaming on the users' first job.

The job: JSON events {"ts": MS, "gender": "G"} counted by gender in 1 s
event-time windows, results written to files. Both read the same JSONL
file; Spark runs local[2] (both cores of the machine) with a 0 s watermark
and `availableNow`, Weir runs `weir run` on replay -> gender-count (wasm)
-> file. Wall time and peak RSS are measured from outside each process
tree: for Spark the Python driver and the JVM it starts, each process's
peak (VmHWM) read from /proc every 250 ms and summed; for Weir, one
process, its exact peak from wait4. The input is read once before either
runs, so both read it from the page cache: otherwise the first to run (Weir)
also pays for the disk, 1.8 GB at 50 M events (10.7 s against 6.5 s warm
in one run).

    python bench_spark.py EVENTS WORKDIR        # run by scripts/bench-spark

Prints a Markdown table and writes WORKDIR/spark-result.json.
"""

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SPARK_JOB = r'''
import sys
from pyspark.sql import SparkSession, functions as F, types as T
src, out, ckpt = sys.argv[1:4]
spark = (SparkSession.builder.master("local[2]").appName("gender-count")
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.shuffle.partitions", "2")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
schema = T.StructType([T.StructField("ts", T.LongType()), T.StructField("gender", T.StringType())])
events = spark.readStream.schema(schema).json(src)
counts = (events.withColumn("t", F.timestamp_millis("ts"))
          .withWatermark("t", "0 seconds")
          .groupBy(F.window("t", "1 second"), "gender").count())
query = (counts.writeStream.outputMode("append").format("json")
         .option("path", out).option("checkpointLocation", ckpt)
         .trigger(availableNow=True).start())
query.awaitTermination()
spark.stop()
'''


def write_events(path: Path, n: int) -> None:
    """The benchmark's events: timestamps 0-2 ms apart, four genders."""
    rng = random.Random(1)
    genders = ["0", "1", "2", ""]
    t = 1_700_000_000_000
    with path.open("w") as f:
        chunk = []
        for _ in range(n):
            t += rng.randrange(3)
            chunk.append('{"ts": %d, "gender": "%s"}\n' % (t, genders[rng.randrange(4)]))
            if len(chunk) == 100_000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))


def warm_page_cache(path: Path) -> None:
    """Reads `path` once, so that the runs measured find it in memory."""
    with path.open("rb", buffering=0) as f:
        while f.read(8 << 20):
            pass


def tree(root: int) -> set:
    """`root` and all its descendants, from /proc."""
    parents = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
                parents[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, grew = {root}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in found} - found
        grew, found = bool(more), found | more
    return found


def high_water_kib(pid: int) -> int:
    """The peak RSS (VmHWM) of a live process so far, 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(cmd, cwd, log=None):
    """Wall seconds and peak RSS (MiB) of `cmd` and every process it starts
    (Spark's JVM is a grandchild of its Python driver). Each process's own
    peak (VmHWM) is read every 250 ms by a second thread, rarely because
    walking /proc takes CPU from the measured job, and the peaks are
    summed: an upper bound of the tree's peak, exact for a single process.
    wait4's peak of `cmd` itself covers a process that ends between two
    looks. The wall time comes from the blocking wait4, so it is not
    rounded up to the next look (it was, before 2026-12-04: to steps of
    about 0.25 s)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=log)
    peaks = {}
    done = threading.Event()

    def sample():
        while not done.wait(0.25):
            for p in tree(proc.pid):
                peaks[p] = max(peaks.get(p, 0), high_water_kib(p))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}); see {log.name if log else 'above'}")
    peaks[proc.pid] = max(peaks.get(proc.pid, 0), usage.ru_maxrss)
    return wall, sum(peaks.values()) / 1024


def counted(paths):
    """Events counted across JSON result lines (Weir and Spark layouts)."""
    total = 0
    for p in paths:
        for line in p.read_text().splitlines():
            row = json.loads(line)
            total += sum(row["counts"].values()) if "counts" in row else row["count"]
    return total


def main():
    n, work = int(sys.argv[1]), Path(sys.argv[2]).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = work / "input"
    data.mkdir(exist_ok=True)
    events = data / f"events-{n}.jsonl"
    if not events.exists():
        print(f"writing {n} events to {events} ...", flush=True)
        for old in data.glob("events-*.jsonl"):
            old.unlink()
        partial = events.with_suffix(".partial")
        write_events(partial, n)
        partial.rename(events)  # an interrupted run leaves no short file

    weir = os.environ.get("WEIR", str(ROOT / "target/release/weir"))
    plugin = ROOT / "target/wasm32-wasip2/plugin/gender_count.wasm"
    (work / "weir-counts.jsonl").unlink(missing_ok=True)
    (work / "pipeline.toml").write_text(f'''
[sources.events]
type = "replay"
path = "{events}"
format = "jsonl"
timestamp = "ts"

[transforms.count]
type = "wasm"
inputs = ["events"]
plugin = "{plugin}"
config = {{ key = "gender", window = "1s", time = "event" }}

[sinks.out]
type = "file"
inputs = ["count"]
path = "weir-counts.jsonl"
''')
    warm_page_cache(events)
    print("weir ...", flush=True)
    with (work / "weir.log").open("w") as log:
        weir_wall, weir_rss = measure(
            [weir, "run", "--log-level", "warn", "pipeline.toml"], work, log
        )
    weir_n = counted([work / "weir-counts.jsonl"])
    assert weir_n == n, f"weir counted {weir_n} of {n}"

    job = work / "spark_job.py"
    job.write_text(SPARK_JOB)
    out, ckpt = work / "spark-out", work / "spark-ckpt"
    subprocess.run(["rm", "-rf", str(out), str(ckpt)], check=True)
    print("spark ...", flush=True)
    with (work / "spark.log").open("w") as log:
        spark_wall, spark_rss = measure(
            [sys.executable, str(job), str(data), str(out), str(ckpt)], work, log
        )
    spark_n = counted(sorted(out.glob("part-*.json")))
    # Append mode holds the window the watermark has not passed (the last
    # one) when the input ends; every earlier event must be there.
    assert n - 5_000 <= spark_n <= n, f"spark counted {spark_n} of {n}"

    result = {
        "events": n,
        "weir": {"seconds": weir_wall, "peak_rss_mib": weir_rss, "counted": weir_n},
        "spark": {"seconds": spark_wall, "peak_rss_mib": spark_rss, "counted": spark_n},
        "time_ratio": spark_wall / weir_wall,
        "memory_ratio": spark_rss / weir_rss,
    }
    (work / "spark-result.json").write_text(json.dumps(result, indent=2))
    print()
    print(f"| {n:,} events, gender counts per 1 s event-time window | wall time | events/s | peak RSS |")
    print("|---|---|---|---|")
    for name, r in (("Weir (`weir run`, wasm plugin)", result["weir"]),
                    ("Spark Structured Streaming local[2]", result["spark"])):
        print(f"| {name} | {r['seconds']:.2f} s | {n / r['seconds']:,.0f} | {r['peak_rss_mib']:,.1f} MiB |")
    print(f"| Spark / Weir | {result['time_ratio']:.1f}x | | {result['memory_ratio']:.1f}x |")


if __name__ == "__main__":
    main()
