"""Per-round ratios from a bench/pairs.sh run: the n-th quarc record of a workload is paired with its n-th PyTorch
record (the same round), ratio = quarc / PyTorch throughput. Standard library only: `python3 bench/pairs.py FILE`.
"""

import json
import statistics
import sys


def main(path):
    runs, machine = {}, {}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("side") == "machine":
                machine = r
            elif r.get("side") in ("quarc", "torch"):
                runs.setdefault(r["workload"], {}).setdefault(r["side"], []).append(r["value"])
    print(f"CPU: {machine.get('cpu', '?')}; threads: {machine.get('threads', '?')}; date: {machine.get('date', '?')}")
    print("| workload | quarc (median) | PyTorch (median) | ratio per round | median ratio |")
    print("|---|---|---|---|---|")
    for w, sides in runs.items():
        q, t = sides.get("quarc", []), sides.get("torch", [])
        ratios = [a / b for a, b in zip(q, t)]
        if not ratios:
            continue
        per_round = ", ".join(f"{x:.2f}" for x in ratios)
        print(f"| {w} | {statistics.median(q):.1f} | {statistics.median(t):.1f} | {per_round} | "
              f"**{statistics.median(ratios):.2f}×** |")


if __name__ == "__main__":
    main(sys.argv[1])
