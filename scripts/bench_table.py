"""Prints the table of issue 20's targets from the outputs scripts/bench
saved: the three plugin benchmarks (WebAssembly vs native in one run each),
the Spark comparison, one instance against two, and both cores against one.

    python3 scripts/bench_table.py DIR
"""

import json
import re
import sys
from pathlib import Path


def blocks(text):
    """{heading: {label: number}} from a benchmark's printed figures."""
    out, current = {}, None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith(":"):
            current = out.setdefault(line.rstrip(":"), {})
        elif current is not None and line.startswith("  "):
            m = re.match(r"\s+(.*?)\s{2,}([\d.]+)", line)
            if m:
                current[m.group(1)] = float(m.group(2))
    return out


def find(bs, prefix):
    return next((v for k, v in bs.items() if k.startswith(prefix)), None)


def main():
    d = Path(sys.argv[1])
    gc = blocks((d / "gender_count.txt").read_text())
    ws = blocks((d / "window_stats.txt").read_text())
    gs = blocks((d / "grayscale.txt").read_text())
    spark = json.loads((d / "spark-result.json").read_text())
    rows = []
    # In each round the first run compiles the plugin (the compile cache
    # is empty) and the second loads it from the cache, as every later run
    # does; the best round of each is judged against the targets.
    # (Outputs from before 2026-12-06 had one run each, headed "first run"
    # and "second run".)
    for how, prefix, old in (("plugin compiled", "end to end through `weir run` (plugin compiled",
                              "end to end through `weir run` (first"),
                             ("plugin cached", "end to end through `weir run` (plugin from",
                              "end to end through `weir run` (second")):
        e2e = find(gc, prefix) or find(gc, old)
        if e2e is None:
            sys.exit(f"no end-to-end figures in {d / 'gender_count.txt'}")
        rows += [
            (f"end to end, replay -> gender-count -> file ({how}), events/s",
             f"{e2e['throughput']:,.0f}", ">= 6,000,000", e2e["throughput"] >= 6e6),
            (f"the same ({how}), peak RSS", f"{e2e['peak RSS']:.1f} MiB", "<= 64 MiB",
             e2e["peak RSS"] <= 64),
        ]
    for name, bs, prefix, target in (
        ("gender-count", gc, "plugin alone", 0.9),
        ("window-stats", ws, "", 0.8),
        ("grayscale, decode + convert + encode, all samples", gs, "decode + convert + encode PNG, all", 0.8),
    ):
        b = find(bs, prefix) if prefix else next(v for v in bs.values() if "wasm / native" in v)
        r = b["wasm / native"]
        # The rounds' own ratios (median, range) show how far the machine's
        # spells move the figure; the target is judged on the best rounds.
        m = b.get("wasm / native within a round")
        spread = f" (within a round: median {m:.2f})" if m is not None else ""
        rows.append((f"{name}: WebAssembly (deadlines on) / native", f"{r:.2f}{spread}",
                     f">= {target}", r >= target))
    n = spark["events"]
    rows += [
        (f"Spark local[2] / Weir wall time, {n:,} events",
         f"{spark['time_ratio']:.1f} ({spark['spark']['seconds']:.1f} s / {spark['weir']['seconds']:.1f} s)",
         ">= 4", spark["time_ratio"] >= 4),
        ("Spark / Weir peak memory",
         f"{spark['memory_ratio']:.0f} ({spark['spark']['peak_rss_mib']:,.0f} / {spark['weir']['peak_rss_mib']:.0f} MiB)",
         ">= 20", spark["memory_ratio"] >= 20),
    ]
    inst = d / "instances-result.json"
    if inst.exists():
        r = json.loads(inst.read_text())
        for name, key in (("grayscale job (route = \"batch\")", "images"), ("gender-count end to end", "gender_count")):
            one, two = r[key]["1"]["seconds"], r[key]["2"]["seconds"]
            rows.append((f"{name}: 2 instances / 1 (speed-up)", f"{one / two:.2f}",
                         "close to 2 on 2 cores", one / two >= 1.8))
            # What the second core adds: the better of 1 and 2 instances
            # on both cores against 1 instance held to one core (runs
            # before this measure was added have no "1-core" entry).
            if "1-core" in r[key]:
                alone = r[key]["1-core"]["seconds"]
                best, how = min((one, "1 instance"), (two, "2 instances"))
                rows.append((f"{name}: both cores ({how}) / one core (speed-up)",
                             f"{alone / best:.2f}", "close to 2", alone / best >= 1.8))
    print("| measure | this run | target | met |")
    print("|---|---|---|---|")
    for what, got, target, ok in rows:
        print(f"| {what} | {got} | {target} | {'yes' if ok else '**no**'} |")


if __name__ == "__main__":
    main()
