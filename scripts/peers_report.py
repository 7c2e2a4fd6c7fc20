"""The last step of `cargo xtask bench peers`: gathers what this invocation measured (bench/peers-*)
into bench/results.json, docs/benchmarks.md and docs/benchmarks-convergence.png.

A ratio is printed only from runs interleaved in this invocation: every file must carry the
invocation's id (bench/peers-run.json), and a native ratio needs both sides in every round.
"""
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH, DOCS = ROOT / "bench", ROOT / "docs"
PLOT = DOCS / "benchmarks-convergence.png"


def load(name):
    path = BENCH / name
    return json.loads(path.read_text()) if path.exists() else None


def kiln_curve(log):
    """`kiln train`'s evaluation lines: step N: train loss X, val loss Y, ..."""
    pattern = re.compile(r"step\s+(\d+): train loss ([\d.]+), val loss ([\d.]+)")
    return [{"step": int(s), "train_loss": float(t), "val_loss": float(v)} for s, t, v in pattern.findall(log)]


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "os": platform.platform(), "rustc": rustc}


def native(rounds):
    """Kiln's and PyTorch's ms/step per round, and the ratio when both ran in every round."""
    per_round = []
    for r in range(1, rounds + 1):
        kiln = load(f"peers-kiln-time-{r}.json")
        torch = load(f"peers-pytorch-time-{r}.json")
        if kiln is None or torch is None:
            return per_round, None
        per_round.append({"round": r, "kiln_ms": kiln[0]["ms_per_step"], "pytorch_ms": torch["ms_per_step"],
                          "kiln_tokens_per_sec": kiln[0]["tokens_per_sec"],
                          "pytorch_tokens_per_sec": torch["tokens_per_sec"]})
    kiln_ms = statistics.median(r["kiln_ms"] for r in per_round)
    torch_ms = statistics.median(r["pytorch_ms"] for r in per_round)
    return per_round, {"kiln_ms": kiln_ms, "pytorch_ms": torch_ms,
                       "kiln_over_pytorch_tokens_per_sec": torch_ms / kiln_ms}


def plot(kiln, torch):
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, curve in [("Kiln (CPU, native)", kiln), ("PyTorch nanoGPT (CPU)", torch)]:
        ax.plot([p["step"] for p in curve], [p["val_loss"] for p in curve], marker="o", label=name)
    ax.set(xlabel="step", ylabel="validation loss (nats/char)", title="shakespeare-baby, same corpus, split and schedule")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def browser_section(browser):
    if browser is None:
        return ["The browser comparison did not run in this invocation (`node bench/peers/browser.js`).", ""]
    c = browser["config"]
    lines = [f"Chromium {browser.get('chromium_version', '?')}, WebGPU adapter: {browser.get('adapter', '?')}. "
             f"GPT: vocabulary {c['vocab']}, width {c['n_embd']}, {c['n_layer']} layers, {c['n_head']} heads, "
             f"context {c['block_size']}, batch {c['batch']}; medians of steady steps, {len(set(r['round'] for r in browser['rounds']))} "
             "interleaved rounds.", "", "| contestant | ms/step (median) | per round |", "|---|---|---|"]
    for s in browser["summary"]:
        rounds = " / ".join("failed" if x is None else f"{x:,.0f}" for x in s["per_round"])
        median = "failed" if s.get("median_ms") is None else f"{s['median_ms']:,.0f}"
        lines.append(f"| {s['contestant']} | {median} | {rounds} |")
    failures = [r for r in browser["rounds"] if r.get("failed")]
    lines += [f"- round {r['round']}, {r['contestant']} failed: {r['failed']}" for r in failures]
    lines += ["", "| comparison | Kiln ms/step | TF.js ms/step | TF.js ms ÷ Kiln ms |", "|---|---|---|---|"]
    lines += [f"| {r['compared']} | {r['kiln_ms']:,.0f} | {r['tfjs_ms']:,.0f} | **{r['ratio']:.2f}×** |"
              for r in browser["ratios"]]
    lines += [f"- no ratio for {r['kiln']} vs {r['tfjs']}: {r['reason']}" for r in browser["ratios_refused"]]
    return lines + [""]


def main():
    run = load("peers-run.json")
    if run is None:
        raise SystemExit("bench/peers-run.json is missing: run `cargo xtask bench peers`")
    torch_train = load("peers-pytorch-train.json")
    kiln_log = BENCH / "peers-kiln-train.log"
    kiln = kiln_curve(kiln_log.read_text()) if kiln_log.exists() else []
    per_round, ratio = native(run["rounds"])
    browser = load("peers-browser.json")
    if browser is not None and browser.get("run_id") != run["id"]:
        print("bench/peers-browser.json is from another invocation: left out")
        browser = None

    host = machine()
    lines = ["# Benchmarks against the peers", "",
             f"Written by `cargo xtask bench peers` on {run['date']} ({host['cpu']}, "
             f"{host['cores']} cores). Every ratio below comes from runs interleaved in that one invocation.", "",
             "## In the browser: Kiln against TF.js", ""]
    lines += browser_section(browser)
    lines += ["## Native CPU: Kiln against PyTorch (nanoGPT)", "",
              "`shakespeare-baby` (0.8M parameters, batch 12 × 64 characters) on the CPU, "
              f"{run['rounds']} interleaved rounds of `kiln bench` and `scripts/nanogpt_reference.py time` "
              "(PyTorch with 2 threads).", "", "| round | Kiln ms/step | PyTorch ms/step | Kiln tokens/s | PyTorch tokens/s |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['round']} | {r['kiln_ms']:.1f} | {r['pytorch_ms']:.1f} | {r['kiln_tokens_per_sec']:,.0f} | "
              f"{r['pytorch_tokens_per_sec']:,.0f} |" for r in per_round]
    if ratio:
        lines += ["", f"Kiln's native CPU throughput is **{ratio['kiln_over_pytorch_tokens_per_sec']:.2f}×** PyTorch's "
                  f"(medians {ratio['kiln_ms']:.1f} vs {ratio['pytorch_ms']:.1f} ms/step). "
                  "Where Kiln's step goes: `docs/cpu.md`.", ""]
    else:
        lines += ["", "No ratio: a round is missing one side.", ""]
    lines += ["## Convergence: the same model trained by both", ""]
    if kiln and torch_train:
        plot(kiln, torch_train["curve"])
        torch_by_step = {p["step"]: p["val_loss"] for p in torch_train["curve"]}
        lines += [f"Both train `shakespeare-baby` for {kiln[-1]['step']} steps on the bundled Shakespeare with "
                  "Kiln's split (first 90% trains) and schedule. Validation loss is the mean over "
                  f"{torch_train['eval_steps']} batches of 12 windows, each side drawing its batches once and "
                  "reusing them at every evaluation (2,400 windows: the draw moves the mean by ~0.01).", "",
                  f"![validation loss]({PLOT.name})", "", "| step | Kiln val loss | PyTorch val loss | gap |", "|---|---|---|---|"]
        for p in kiln:
            t = torch_by_step.get(p["step"])
            if t is not None:
                lines.append(f"| {p['step']} | {p['val_loss']:.4f} | {t:.4f} | {100 * (p['val_loss'] - t) / t:+.1f}% |")
        lines.append("")
    else:
        lines += ["The convergence runs did not both finish in this invocation.", ""]
    DOCS.joinpath("benchmarks.md").write_text("\n".join(lines))
    results = {"id": run["id"], "date": run["date"], "machine": host,
               "torch": (torch_train or {}).get("torch"), "browser": browser,
               "native": {"rounds": per_round, "summary": ratio},
               "convergence": {"kiln": kiln, "pytorch": (torch_train or {}).get("curve")}}
    BENCH.joinpath("results.json").write_text(json.dumps(results, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
