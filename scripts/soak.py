#!/usr/bin/env python3
"""Soak test: the shop-log and sensor pipelines through a real Kafka broker
for MINUTES minutes under a steady load, with a plugin reload every 10 s, a
pipeline edit every minute and a broker restart every 5 minutes.

Two weir processes run:
  producer  replays data/user_log.csv (gender column) and
            data/room_sensors.csv (rows as text) in a loop, at a set rate,
            into the topics soak-sex and soak-test;
  worker    reads them: gender-count (1 s windows) -> soak-result, and
            window-stats (5 s batches, with a row count) -> soak-results;
            dead letters -> soak-dead.

Every 10 s the worker's gender-count component file is replaced by a copy
that differs only in a custom section (a new digest: the plugin is swapped
in place, state carried) and POST /reload is called; every minute the
worker's pipeline file gains or loses a file sink on the counts (a stage
started, or drained and removed); every 5 minutes the broker is stopped and
started again on its data.

Each minute it records, for both processes: RSS, open descriptors,
threads, plugin linear memory, events its sources read, and consumer lag.
At the end it stops the producer, lets the worker drain, stops it, reads
every topic back and checks that no record was lost: every record written
to soak-sex is counted in some soak-result window, every row of soak-test
is counted in a soak-results `rows` window or dead-lettered. It fails when
a check fails or when a resource grows past its bound (see BOUNDS), and
writes OUT/soak.csv and OUT/soak.png.

Usage: scripts/soak MINUTES [--out DIR] [--shop-rate N] [--sensor-rate N]
"""

import argparse
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIR = os.path.join(REPO, "target", "release", "weir")
PLUGINS = os.path.join(REPO, "target", "wasm32-wasip2", "plugin")

# Growth allowed between the warm value (the largest of minutes 3-8) and
# the largest of the last 10 minutes.
BOUNDS = {
    "rss_mib": lambda warm: warm * 1.25 + 16,
    "fds": lambda warm: warm + 16,
    "threads": lambda warm: warm + 8,
    "plugin_mib": lambda warm: warm * 1.25 + 8,
}

SENSOR_COLUMNS = '["id", "date", "Temperature", "Humidity", "Light", "CO2", "HumidityRatio", "Occupancy"]'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, method="GET", timeout=120):
    req = urllib.request.Request(url, method=method, headers={"Host": "127.0.0.1"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode()


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


class Weir:
    """One `weir run` process with its admin endpoint."""

    def __init__(self, name, work, toml_text):
        self.name = name
        self.port = free_port()
        self.file = os.path.join(work, f"{name}.toml")
        self.write(toml_text)
        self.log = open(os.path.join(work, f"{name}.log"), "w")
        self.proc = subprocess.Popen(
            [WEIR, "run", self.file], cwd=work, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.wait_ready()

    def write(self, toml_text):
        text = f'admin = "127.0.0.1:{self.port}"\n' + toml_text
        tmp = self.file + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.file)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self):
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.proc.returncode}; see {self.log.name}")
            try:
                http(self.url("/status"), timeout=5)
                return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"{self.name} did not answer on its admin endpoint")

    def reload(self, expect_swapped=None, swaps_before=0):
        try:
            status, body = http(self.url("/reload"), method="POST")
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read().decode()
        report = json.loads(body)
        if status != 200 or not report.get("ok"):
            raise SystemExit(f"{self.name}: reload failed ({status}): {body}")
        # The file watcher may have seen the new file and swapped it first;
        # then this reload has nothing left to do, and the log shows the swap.
        if (
            expect_swapped
            and expect_swapped not in report.get("swapped", [])
            and self.swaps(expect_swapped) <= swaps_before
        ):
            raise SystemExit(f"{self.name}: reload did not swap {expect_swapped}: {body}")
        return report

    def swaps(self, stage):
        """How many applied reloads have swapped `stage`, from the log."""
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return sum(
                1
                for line in f
                if "reload applied" in line
                and stage in (re.search(r"swapped (.*?), restarted", line) or [None, ""])[1].split(", ")
            )

    def metrics(self):
        """Sums of each metric over its labels, and per stage kind."""
        _, text = http(self.url("/metrics"), timeout=30)
        out = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            m = re.match(r"^([a-z_]+)(\{[^}]*\})?\s+(\S+)$", line)
            if not m:
                continue
            name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
            out[name] = out.get(name, 0.0) + value
            kind = re.search(r'kind="([^"]*)"', labels)
            if kind:
                key = f"{name}[{kind.group(1)}]"
                out[key] = out.get(key, 0.0) + value
        return out

    def proc_figures(self):
        pid = self.proc.pid
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        rss_kib = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return rss_kib / 1024.0, fds, threads

    def stop(self, timeout=120):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise SystemExit(f"{self.name} did not stop within {timeout} s")
        if self.proc.returncode != 0:
            raise SystemExit(f"{self.name} exited with {self.proc.returncode}; see {self.log.name}")


def kafka_source(name, boot, topic, group, extra=""):
    return f"""
[sources.{name}]
type = "kafka"
brokers = "{boot}"
topic = "{topic}"
group = "{group}"
start = "earliest"
{extra}
"""


def kafka_sink(name, boot, topic, inputs=None):
    wired = f"inputs = [\"{inputs}\"]" if inputs else ""
    return f"""
[sinks.{name}]
type = "kafka"
brokers = "{boot}"
topic = "{topic}"
create_topic = {{ partitions = 2, replication = 1 }}
{wired}
"""


def replay(name, csv_file, rate, extra):
    return f"""
[sources.{name}]
type = "replay"
path = "{REPO}/data/{csv_file}"
rate = {rate}
loop = true
{extra}
"""


def producer_toml(boot, shop_rate, sensor_rate):
    return (
        replay("shop_log", "user_log.csv", shop_rate, 'select = "gender"')
        + kafka_sink("sex", boot, "soak-sex", "shop_log")
        + replay("sensors", "room_sensors.csv", sensor_rate, 'row = "text"')
        + kafka_sink("test", boot, "soak-test", "sensors")
    )


def worker_toml(boot, extra_sink):
    checked = 'format = "text"\ndead_letter = "dead"'
    text = (
        kafka_source("sex_reader", boot, "soak-sex", "soak-gender", checked)
        + """
[transforms.count]
type = "wasm"
inputs = ["sex_reader"]
plugin = "gender_count.wasm"
config = { window = "1s", time = "processing" }
dead_letter = "dead"
"""
        + kafka_sink("result", boot, "soak-result", "count")
        + kafka_source("rows", boot, "soak-test", "soak-sensor", checked)
        + f"""
[transforms.stats]
type = "wasm"
inputs = ["rows"]
plugin = "window_stats.wasm"
dead_letter = "dead"
config = {{ input = "csv", columns = {SENSOR_COLUMNS}, time = "processing", batch = "5s", stats = [
  {{ name = "rows", field = "Temperature", fn = "count", window = "batch" }},
  {{ name = "Average temperature", field = "Temperature", fn = "mean", window = "batch" }},
  {{ name = "Average temperature", field = "Temperature", fn = "mean", window = "since_start" }},
  {{ name = "Average luminosity", field = "Light", fn = "mean", window = "45s", slide = "15s" }},
] }}
"""
        + kafka_sink("results", boot, "soak-results", "stats")
        + kafka_sink("dead", boot, "soak-dead")
    )
    if extra_sink:
        text += f"""
[sinks.extra]
type = "file"
inputs = ["count"]
path = "extra-{extra_sink}.jsonl"
"""
    return text


def verify_toml(boot):
    text = ""
    for topic in ["soak-sex", "soak-result", "soak-test", "soak-results", "soak-dead"]:
        name = topic.replace("-", "_")
        text += kafka_source(name, boot, topic, "soak-verify", "exit_at_end = true")
        text += f"""
[sinks.{name}_file]
type = "file"
inputs = ["{name}"]
path = "read/{topic}.txt"
"""
    return text


def swap_plugin(src, dst, n):
    """Copies component `src` to `dst` with a custom section holding `n`."""
    with open(src, "rb") as f:
        data = f.read()
    name = b"weir-soak"
    payload = bytes([len(name)]) + name + str(n).encode()
    section = bytes([0, len(payload)]) + payload
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data + section)
    os.replace(tmp, dst)


def kafka(*args, check=True):
    return subprocess.run(
        [os.path.join(REPO, "scripts", "kafka"), *args],
        check=check,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout.strip()


def lines(path):
    """The records a file sink wrote, one a line; an empty value is an
    empty line, so only the final newline's empty tail is dropped."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    return data.split(b"\n")[:-1] if data else []


def chart(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["minute"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    panels = [
        ("RSS (MiB)", "rss_mib"),
        ("open descriptors", "fds"),
        ("threads", "threads"),
        ("events read per minute (thousands)", "read_per_min"),
    ]
    for ax, (title, key) in zip(axes.flat, panels):
        for proc in ["producer", "worker"]:
            values = [r[f"{proc}_{key}"] for r in rows]
            if key == "read_per_min":
                values = [v / 1000 for v in values]
            ax.plot(minutes, values, label=proc)
        if key == "rss_mib":
            ax.plot(minutes, [r["worker_plugin_mib"] for r in rows], label="worker plugins' memory")
        for r in rows:
            if r["broker_restart"]:
                ax.axvline(r["minute"], color="grey", alpha=0.3, linewidth=1)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("minute (grey: broker restarted)")
    fig.suptitle("weir soak: reload every 10 s, pipeline edit every minute, broker restart every 5 min")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main():
    global WEIR, PLUGINS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("minutes", type=int)
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "soak"))
    ap.add_argument("--shop-rate", type=int, default=2000)
    ap.add_argument("--sensor-rate", type=int, default=500)
    ap.add_argument("--work", default=os.path.join(REPO, "target", "soak"))
    args = ap.parse_args()

    for f in ["gender_count.wasm", "window_stats.wasm"]:
        if not os.path.exists(os.path.join(PLUGINS, f)) or not os.path.exists(WEIR):
            raise SystemExit("build first: cargo build --release -p weir and the plugins (scripts/soak does)")
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    os.makedirs(args.out, exist_ok=True)
    work = args.work
    # Run a copy of the build, so rebuilding during a long soak changes
    # nothing under it (the plugin swaps copy gender_count.wasm again).
    build = os.path.join(work, "build")
    os.makedirs(build)
    for f in ["gender_count.wasm", "window_stats.wasm"]:
        shutil.copy(os.path.join(PLUGINS, f), build)
    shutil.copy(WEIR, build)
    WEIR, PLUGINS = os.path.join(build, "weir"), build
    shutil.copy(os.path.join(PLUGINS, "window_stats.wasm"), work)
    swap_plugin(os.path.join(PLUGINS, "gender_count.wasm"), os.path.join(work, "gender_count.wasm"), 0)

    kdir = os.path.join(work, "kafka")
    boot = kafka("start", kdir, "--parent", str(os.getpid())).splitlines()[-1]
    log(f"broker at {boot}")
    producer = worker = None
    rows = []
    try:
        producer = Weir("producer", work, producer_toml(boot, args.shop_rate, args.sensor_rate))
        worker = Weir("worker", work, worker_toml(boot, None))
        log(f"producer admin :{producer.port}, worker admin :{worker.port}")
        start = time.time()
        reloads = edits = restarts = 0
        last_read = {"producer": 0.0, "worker": 0.0}
        restarted_this_minute = False
        next_reload = start + 10
        for minute in range(1, args.minutes + 1):
            minute_end = start + 60 * minute
            while True:
                now = time.time()
                if now >= minute_end:
                    break
                if now >= next_reload:
                    reloads += 1
                    before = worker.swaps("count")
                    swap_plugin(
                        os.path.join(PLUGINS, "gender_count.wasm"),
                        os.path.join(work, "gender_count.wasm"),
                        reloads,
                    )
                    worker.reload(expect_swapped="count", swaps_before=before)
                    next_reload += 10
                time.sleep(max(0.0, min(next_reload, minute_end) - time.time()))
            # Minute boundary: record, then edit and maybe restart the broker.
            sample = {"minute": minute, "broker_restart": restarted_this_minute}
            for proc in (producer, worker):
                rss, fds, threads = proc.proc_figures()
                m = proc.metrics()
                read = m.get("weir_events_in_total[source]", 0)
                sample[f"{proc.name}_rss_mib"] = round(rss, 1)
                sample[f"{proc.name}_fds"] = fds
                sample[f"{proc.name}_threads"] = threads
                sample[f"{proc.name}_plugin_mib"] = round(m.get("weir_plugin_memory_bytes", 0) / 2**20, 1)
                sample[f"{proc.name}_read"] = int(read)
                sample[f"{proc.name}_read_per_min"] = int(read - last_read[proc.name])
                sample[f"{proc.name}_lag"] = int(m.get("weir_kafka_consumer_lag", 0))
                last_read[proc.name] = read
            sample["reloads"] = reloads
            sample["edits"] = edits
            sample["broker_restarts"] = restarts
            rows.append(sample)
            log(
                "minute {minute}: producer {producer_rss_mib} MiB {producer_fds} fds {producer_threads} thr; "
                "worker {worker_rss_mib} MiB {worker_fds} fds {worker_threads} thr, plugins {worker_plugin_mib} MiB, "
                "read {worker_read}, lag {worker_lag}".format(**sample)
            )
            restarted_this_minute = False
            if minute == args.minutes:
                break
            edits += 1
            worker.write(worker_toml(boot, edits if edits % 2 else None))
            worker.reload()
            if minute % 5 == 0:
                log("restarting the broker")
                kafka("stop", kdir)
                time.sleep(5)
                kafka("start", kdir, "--parent", str(os.getpid()))
                restarts += 1
                restarted_this_minute = True

        log("stopping the producer, letting the worker drain")
        producer.stop()
        deadline = time.time() + 300
        while time.time() < deadline:
            time.sleep(5)
            lag = worker.metrics().get("weir_kafka_consumer_lag", 0)
            if lag == 0:
                break
        time.sleep(5)
        worker.stop()
        log("reading every topic back")
        with open(os.path.join(work, "verify.toml"), "w") as f:
            f.write(verify_toml(boot))
        verify = subprocess.run(
            [WEIR, "run", os.path.join(work, "verify.toml")],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if verify.returncode != 0:
            raise SystemExit(f"reading the topics back failed:\n{verify.stderr[-3000:]}")
    finally:
        for p in (producer, worker):
            if p and p.proc.poll() is None:
                p.proc.kill()
        kafka("stop", kdir, check=False)

    # What the producer replayed, from its last log lines.
    with open(os.path.join(work, "producer.log")) as f:
        plog = f.read()
    replayed = {}
    for stage in ["shop_log", "sensors"]:
        m = re.findall(r'stage="' + stage + r'".*replay stopped events=(\d+)', plog)
        replayed[stage] = int(m[-1]) if m else -1
    dropped = len(re.findall(r"record rejected and dropped", plog))
    read = lambda t: lines(os.path.join(work, "read", f"{t}.txt"))
    sex = read("soak-sex")
    counted = 0
    for line in read("soak-result"):
        counted += sum(json.loads(line)["counts"].values())
    test = read("soak-test")
    rows_counted = 0
    for line in read("soak-results"):
        v = json.loads(line)
        if v.get("stat") == "rows":
            rows_counted += int(v["value"])
    dead = read("soak-dead")
    figures = {
        "minutes": args.minutes,
        "reloads": reloads,
        "edits": edits,
        "broker_restarts": restarts,
        "shop_replayed": replayed["shop_log"],
        "shop_records": len(sex),
        "shop_counted": counted,
        "sensor_replayed": replayed["sensors"],
        "sensor_records": len(test),
        "producer_dropped": dropped,
        "sensor_counted": rows_counted,
        "dead_letters": len(dead),
    }
    failures = []
    if dropped or len(sex) < replayed["shop_log"] or len(test) < replayed["sensors"]:
        failures.append(f"producer lost records: replayed {replayed}, topics hold {len(sex)} / {len(test)}, {dropped} dropped")
    if counted < len(sex):
        failures.append(f"lost shop records: {len(sex)} written, {counted} counted")
    if rows_counted + len(dead) < len(test):
        failures.append(f"lost sensor rows: {len(test)} written, {rows_counted} counted + {len(dead)} dead-lettered")
    if len(sex) == 0 or len(test) == 0:
        failures.append("nothing went through")
    if len(rows) >= 18:
        for proc in ["producer", "worker"]:
            for key, bound in BOUNDS.items():
                col = f"{proc}_{key}"
                warm = max(r[col] for r in rows[2:8])
                end = max(r[col] for r in rows[-10:])
                figures[f"{col}_warm"] = warm
                figures[f"{col}_end"] = end
                if end > bound(warm):
                    failures.append(f"{col} grew from {warm} to {end} (bound {bound(warm):.1f})")
    with open(os.path.join(args.out, "soak.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(args.out, "soak-summary.json"), "w") as f:
        json.dump({"figures": figures, "failures": failures}, f, indent=1)
    chart(rows, os.path.join(args.out, "soak.png"))
    print(json.dumps(figures, indent=1))
    if failures:
        print("SOAK FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("soak passed")


if __name__ == "__main__":
    main()
