"""Prints the side-by-side table (Markdown) from a results JSONL written by bench/run.sh.

ratio = quarc throughput / PyTorch throughput (for times and memory: PyTorch / quarc), so > 1 means quarc is better.
Standard library only: `python3 bench/report.py bench/results/<run>.jsonl`.
"""

import json
import sys


def main(path):
    latest, machine = {}, {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r.get("side") == "machine":
                machine = r
                continue
            latest[(r["side"], r["workload"])] = r
    workloads = []
    for side, w in latest:
        if w not in workloads:
            workloads.append(w)
    gemm = {s: latest[(s, "gemm/2048")]["value"] for s in ("quarc", "torch") if (s, "gemm/2048") in latest}
    cap = machine.get("isa_cap", "none")
    held = f"; both sides held to {cap.upper()} (ISA={cap})" if cap != "none" else ""
    print(f"CPU: {machine.get('cpu', '?')}; threads: {machine.get('threads', '?')}; date: {machine.get('date', '?')}{held}")
    candle = latest.get(("quarc", "gemm/2048-candle"), {}).get("value", float("nan"))
    print(f"fp32 GEMM 2048³: quarc {gemm.get('quarc', float('nan')):.1f} GFLOP/s (candle's matmul {candle:.1f}), "
          f"PyTorch {gemm.get('torch', float('nan')):.1f} GFLOP/s\n")
    print("| workload | unit | quarc | PyTorch | ratio | PyTorch hand-written bwd | ratio | quarc % of GEMM |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = {}
    for w in workloads:
        q, t, h = latest.get(("quarc", w)), latest.get(("torch", w)), latest.get(("torch-handwritten", w))
        if q is None:
            continue

        def ratio(peer):
            if peer is None or peer["value"] == 0 or q["value"] == 0:
                return None
            return q["value"] / peer["value"] if q["higher_is_better"] else peer["value"] / q["value"]

        r, rh = ratio(t), ratio(h)
        if r is not None:
            ratios[w] = r
        pct = f"{100 * q['value'] / gemm['quarc']:.0f} %" if q["unit"] == "GFLOP/s" and "quarc" in gemm else ""
        fmt = lambda x: "" if x is None else f"{x['value']:.2f}"
        fr = lambda x: "" if x is None else f"**{x:.2f}×**" if x < 1 else f"{x:.2f}×"
        print(f"| {w} | {q['unit']} | {q['value']:.2f} | {fmt(t)} | {fr(r)} | {fmt(h)} | {fr(rh)} | {pct} |")
    # aggregates for the convolution engine: total FLOPs / total time per pass
    print()
    for kind in ("fwd", "grad_input", "grad_weight"):
        rows = [w for w in workloads if w.startswith("conv/") and w.endswith("/" + kind)]
        tq = sum(latest[("quarc", w)]["median_s"] for w in rows if ("quarc", w) in latest)
        tt = sum(latest[("torch", w)]["median_s"] for w in rows if ("torch", w) in latest)
        if tq > 0 and tt > 0:
            worst = min((ratios[w], w) for w in rows if w in ratios)
            print(f"conv {kind}: aggregate ratio (total PyTorch time / total quarc time over {len(rows)} layers) "
                  f"{tt / tq:.2f}×; lowest layer {worst[0]:.2f}× ({worst[1]})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/latest.jsonl")
