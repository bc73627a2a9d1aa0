"""Prints the median, minimum, maximum and spread of the headline figures of a scenario's
reports: bench/summary.py SCENARIO RUNS (reads bench/results/SCENARIO-N.json)."""
import json, statistics, sys
scenario, runs = sys.argv[1], int(sys.argv[2])
reports = [json.load(open(f"bench/results/{scenario}-{n}.json")) for n in range(1, runs + 1)]
def line(name, values, unit):
    med = statistics.median(values)
    spread = (max(values) - min(values)) / med * 100 if med else 0
    print(f"  {name:<40} median {med:>10.1f} {unit:<5} (min {min(values):.1f}, max {max(values):.1f}, spread {spread:.0f}%)")
print(f"{scenario}: {runs} runs, params {reports[0]['params']}")
for key in reports[0]["rates"]:
    line(f"{key}/s", [r["rates"][key] for r in reports], "/s")
for key in reports[0]["latencies"]:
    for q in ("p50_ms", "p99_ms"):
        line(f"{key} {q}", [r["latencies"][key][q] for r in reports if key in r["latencies"]], "ms")
for key in ("errors", "gaps", "duplicates_or_out_of_order", "incomplete", "dropped_while_idle", "connect_failures", "webhook errors"):
    if key in reports[0]["counts"]:
        print(f"  {key:<40} {[r['counts'][key] for r in reports]}")
if all(r.get("server") for r in reports):
    line("server CPU % of a core", [r["server"]["cpu_percent"] for r in reports], "%")
    if all("generator_cpu_percent" in r["server"] for r in reports):
        line("load generator CPU % of a core", [r["server"]["generator_cpu_percent"] for r in reports], "%")
    line("server RSS after (MiB)", [r["server"]["rss_after_kib"] / 1024 for r in reports], "MiB")
for r in reports:
    for note in r.get("notes", []):
        print(f"  note: {note}")
