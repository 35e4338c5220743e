"""Per-round ratios from a bench/pairs.sh run: the n-th quarc record of a workload is paired with its n-th PyTorch
record (the same round), ratio = quarc / PyTorch throughput. A run with TORCH_ALLOCATOR=both has two PyTorch sides,
`torch` (glibc's defaults) and `torch+retained` (quarc's allocator settings): each gets its own row.
Standard library only: `python3 bench/pairs.py FILE`.
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
            elif r.get("side") in ("quarc", "torch", "torch+retained"):
                runs.setdefault(r["workload"], {}).setdefault(r["side"], []).append(r["value"])
    print(f"CPU: {machine.get('cpu', '?')}; threads: {machine.get('threads', '?')}; date: {machine.get('date', '?')}")
    print(f"PyTorch's allocator: {machine.get('torch_allocator', 'default')}")
    print("| workload | against | quarc (median) | PyTorch (median) | ratio per round | median ratio |")
    print("|---|---|---|---|---|---|")
    for w, sides in runs.items():
        for against in ("torch", "torch+retained"):
            q, t = sides.get("quarc", []), sides.get(against, [])
            ratios = [a / b for a, b in zip(q, t)]
            if not ratios:
                continue
            per_round = ", ".join(f"{x:.2f}" for x in ratios)
            print(f"| {w} | {against} | {statistics.median(q):.1f} | {statistics.median(t):.1f} | {per_round} | "
                  f"**{statistics.median(ratios):.2f}×** |")


if __name__ == "__main__":
    main(sys.argv[1])
