"""Rows/s into one Cassandra table: weir's cassandra sink against the
DataStax Python driver's concurrent execution, on the same node, table and
rows, in one run (called by scripts/bench-cassandra).

The rows: readings of 10 devices, one a second each, as JSON lines. The
table: PRIMARY KEY ((device), time), as the sensor pipeline's. Each
contender starts on an empty table (TRUNCATE) and is checked afterwards by
COUNT(*). Weir's time is its whole run (start, connecting, reading the
file); the driver's starts after it has connected, prepared and parsed the
rows.
"""

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster
from cassandra.concurrent import execute_concurrent_with_args

hosts, rows, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host, port = hosts.split(":")
weir = os.environ["WEIR"]
os.makedirs(workdir, exist_ok=True)

base = 1_780_000_000_000
data = os.path.join(workdir, "readings.jsonl")
with open(data, "w") as f:
    for i in range(rows):
        f.write(json.dumps({
            "device": f"pi-{i % 10}",
            "time": base + (i // 10) * 1000,
            "temperature": round(15 + (i % 200) / 10, 1),
            "humidity": round(40 + (i % 300) / 10, 1),
        }) + "\n")

cluster = Cluster([host], port=int(port))
session = cluster.connect()
session.default_timeout = 60
session.execute("CREATE KEYSPACE IF NOT EXISTS bench WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 1}")
session.execute("CREATE TABLE IF NOT EXISTS bench.readings (device text, time timestamp, "
                "temperature float, humidity float, PRIMARY KEY ((device), time))")


def count():
    return session.execute("SELECT COUNT(*) FROM bench.readings", timeout=120).one()[0]


def run_weir(label, extra):
    session.execute("TRUNCATE bench.readings")
    pipeline = os.path.join(workdir, "pipeline.toml")
    with open(pipeline, "w") as f:
        f.write(f"""
[sources.in]
type = "replay"
path = "{os.path.abspath(data)}"
format = "jsonl"
timestamp = "time"

[sinks.store]
type = "cassandra"
inputs = ["in"]
hosts = ["{hosts}"]
keyspace = "bench"
table = "readings"
columns = {{ device = "device", time = "@timestamp", temperature = "temperature", humidity = "humidity" }}
{extra}
""")
    t0 = time.monotonic()
    subprocess.run([weir, "run", pipeline], check=True, stderr=subprocess.DEVNULL)
    elapsed = time.monotonic() - t0
    assert count() == rows, "weir wrote every row"
    return label, elapsed


def run_driver(concurrency):
    session.execute("TRUNCATE bench.readings")
    insert = session.prepare("INSERT INTO bench.readings (device, time, temperature, humidity) "
                             "VALUES (?, ?, ?, ?)")
    insert.consistency_level = ConsistencyLevel.LOCAL_QUORUM
    params = []
    with open(data) as f:
        for line in f:
            r = json.loads(line)
            params.append((r["device"], datetime.fromtimestamp(r["time"] / 1000, timezone.utc),
                           r["temperature"], r["humidity"]))
    t0 = time.monotonic()
    results = execute_concurrent_with_args(session, insert, params, concurrency=concurrency,
                                           raise_on_first_error=True)
    elapsed = time.monotonic() - t0
    assert all(ok for ok, _ in results)
    assert count() == rows, "the driver wrote every row"
    return f"Python driver, execute_concurrent (concurrency {concurrency})", elapsed


results = [
    run_driver(100),
    run_weir("weir cassandra sink (defaults: 64 in flight, 20 rows of a partition per batch)", ""),
    run_weir("weir cassandra sink, batch_rows = 1 (every row on its own)", "batch_rows = 1"),
]
driver_rate = rows / results[0][1]
print(f"\n{rows} rows into one table of Cassandra at {hosts}\n")
print(f"| {'writer':<82} | {'seconds':>7} | {'rows/s':>9} | vs driver |")
print(f"|{'-' * 84}|{'-' * 9}|{'-' * 11}|-----------|")
for label, elapsed in results:
    rate = rows / elapsed
    print(f"| {label:<82} | {elapsed:7.2f} | {rate:9.0f} | {rate / driver_rate:8.2f}x |")
cluster.shutdown()
