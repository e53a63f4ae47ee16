"""Prediction error of `corral plan --predict` against `corral bench --rate` (see plan.sh):
the same layout, rates, CV and seed, measured and predicted, side by side; prints Markdown
tables of throughput and p99 with the error of each prediction.

usage: plan.py SECONDS [cpu]
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

seconds = sys.argv[1]
# `cpu` as a second argument: only the real cores' part (its p99 wants longer runs).
only_cpu = sys.argv[2:] == ["cpu"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORRAL = os.path.join(ROOT, "target/release/corral")
LOCKS = tempfile.mkdtemp(prefix="corral-plan-bench-")
ENV = dict(os.environ, CORRAL_LOCK_DIR=LOCKS)


def corral(*args):
    out = subprocess.run([CORRAL, *args], env=ENV, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"corral {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def rows(report):
    return {m["name"]: m for m in json.loads(report)["models"]}


def compare(title, repo, device, rates, cvs, repeats=1):
    """With `repeats` 2, each measured run is made twice (same seed), and the second run's
    difference from the first says how far the machine itself lets a p99 repeat."""
    print(f"\n### {title}\n")
    again = " | measured again | run to run" if repeats > 1 else ""
    print(f"| CV | model | measured calls/s | predicted | error | measured p99 ms{again} | predicted | error |")
    print("| --- " * (8 + 2 * (repeats > 1)) + "|")
    worst, spread = (0.0, 0.0), 0.0
    for cv in cvs:
        load = ["--rate", rates, "--cv", str(cv), "--seed", "1", "--duration", seconds, "--json"]
        runs = [rows(corral("bench", "--model-repository", repo, "--device", device, *load)) for _ in range(repeats)]
        measured = runs[0]
        predicted = rows(corral("plan", "--predict", "--model-repository", repo, "--device", device, *load))
        for name in sorted(measured):
            m, p = measured[name], predicted[name]
            if m["requests"] == 0:
                continue
            t_err = (p["throughput_per_s"] - m["throughput_per_s"]) / m["throughput_per_s"]
            p_err = (p["p99_ms"] - m["p99_ms"]) / m["p99_ms"]
            worst = (max(worst[0], abs(t_err)), max(worst[1], abs(p_err)))
            second = ""
            if repeats > 1:
                m2 = runs[1][name]["p99_ms"]
                spread = max(spread, abs(m2 - m["p99_ms"]) / m["p99_ms"])
                second = f" | {m2:.2f} | {(m2 - m['p99_ms']) / m['p99_ms']:+.1%}"
            print(f"| {cv} | {name} | {m['throughput_per_s']:.1f} | {p['throughput_per_s']:.1f} | {t_err:+.1%} "
                  f"| {m['p99_ms']:.2f}{second} | {p['p99_ms']:.2f} | {p_err:+.1%} |")
    print(f"\nWorst error: throughput {worst[0]:.1%}, p99 {worst[1]:.1%}.")
    if repeats > 1:
        print(f"Worst run-to-run p99 difference of the same measured run: {spread:.1%}.")


work = tempfile.mkdtemp(prefix="corral-plan-repos-")
flexeg = os.path.join(ROOT, "examples/flexeg")
good = os.path.join(work, "good")
shutil.copytree(flexeg, good)
bad = os.path.join(work, "bad")
shutil.copytree(flexeg, bad)
with open(os.path.join(bad, "C/config.toml")) as f:
    text = f.read()
with open(os.path.join(bad, "C/config.toml"), "w") as f:
    f.write(text.replace("start = 6", "start = 5"))
optimised = os.path.join(work, "optimised")
shutil.copytree(flexeg, optimised)
rates = "A=150,B=40,C=30,D=40"
corral("plan", "--model-repository", optimised, "--device", "sim:inf1.6xlarge", "--optimize", "--rate", rates, "--write")

print(f"## Prediction error: plan --predict vs bench --rate, {seconds} s per run, seed 1\n")
if not only_cpu:
    print(f"Rates {rates} calls/s on sim:inf1.6xlarge (FlexEG A B C D, K 2 4 3 4, 10 ms, switch 5 ms).")
    compare("The seeds' good layout (starts 0, 2, 6, 9)", good, "sim:inf1.6xlarge", rates, [1, 4])
    compare("The seeds' bad layout (C at 5: B and C share nc5)", bad, "sim:inf1.6xlarge", rates, [1, 4])
    compare("The optimised layout (plan --optimize --write)", optimised, "sim:inf1.6xlarge", rates, [1, 4])

site = subprocess.run([os.path.join(ROOT, ".venv/bin/python"), "-c", "import onnx, magika, os; print(os.path.dirname(os.path.dirname(onnx.__file__)))"],
                      capture_output=True, text=True, check=True).stdout.strip()
cpu = os.path.join(work, "cpu")
for name, path in [("squeezenet", "onnx/backend/test/data/light/light_squeezenet.onnx"),
                   ("magika", "magika/models/standard_v3_3/model.onnx")]:
    os.makedirs(os.path.join(cpu, name, "1"))
    shutil.copy(os.path.join(site, path), os.path.join(cpu, name, "1/model.onnx"))
    with open(os.path.join(cpu, name, "config.toml"), "w") as f:
        f.write("[placement]\nstart = %d\n" % (0 if name == "squeezenet" else 1))
print("\n" + corral("plan", "--profile", "--model-repository", cpu, "--device", "cpu").strip())
medians = {}
for name in ("squeezenet", "magika"):
    with open(os.path.join(cpu, name, "profile.json")) as f:
        samples = json.load(f)["samples_ms"]
    medians[name] = samples[len(samples) // 2]
# About 60% of each core.
cpu_rates = ",".join(f"{name}={0.6 * 1000 / ms:.0f}" for name, ms in medians.items())
print(f"\nOn this machine's cores (cpu): one instance each, rates {cpu_rates} calls/s (60% of a core).")
compare("Real cores, profiled ONNX models", cpu, "cpu", cpu_rates, [1, 4], repeats=2)
