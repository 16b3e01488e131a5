"""Benchmark the data pipeline: a no-op `dvc repro`, and fetch over the samples against a plain copy.

Run from the repository root after `make run` (so the pipeline is up to date):
    .venv/bin/python bench/pipeline.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reprolab.data.corpus import FetchConfig, build_corpus  # noqa: E402
from reprolab.data.snapshot import update_snapshot  # noqa: E402
from reprolab.data.sources import LocalSource  # noqa: E402

REPEATS = 3


def best_of(fn, repeats=REPEATS) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def dvc_repro_noop() -> tuple[float, float, str]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    dvc = str(Path(sys.executable).parent / "dvc")
    warm = subprocess.run([dvc, "repro"], capture_output=True, text=True, env=env)
    if "Running stage" in warm.stdout:
        print("note: the pipeline was not up to date; the first `dvc repro` ran stages before timing")
    last = {}

    def run():
        last["out"] = subprocess.run([dvc, "repro"], capture_output=True, text=True, env=env, check=True).stdout

    best, median = best_of(run)
    verdict = "up to date" if "Data and pipelines are up to date" in last["out"] else "RAN STAGES"
    return best, median, verdict


def main() -> None:
    samples = Path("samples")
    files = [p for p in samples.rglob("*") if p.is_file()]
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def plain_copy():
            shutil.rmtree(tmp / "copy", ignore_errors=True)
            shutil.copytree(samples, tmp / "copy")

        def snapshot_fresh():
            shutil.rmtree(tmp / "snap", ignore_errors=True)
            update_snapshot(LocalSource(samples), tmp / "snap")

        copy_best, copy_median = best_of(plain_copy)
        rows.append(("plain copy of samples/ (baseline)", copy_best, copy_median, 1.0))
        best, median = best_of(snapshot_fresh)
        rows.append(("snapshot: first mirror of samples/", best, median, best / copy_best))
        best, median = best_of(lambda: update_snapshot(LocalSource(samples), tmp / "snap"))
        rows.append(("snapshot: nothing new upstream", best, median, best / copy_best))
        cfg = FetchConfig()
        best, median = best_of(lambda: build_corpus(tmp / "snap", tmp / "corpus", cfg))
        rows.append(("fetch stage: validate + dedup + write corpus", best, median, best / copy_best))

    noop_best, noop_median, verdict = dvc_repro_noop()
    print(f"\nsamples/: {len(files)} files, {size_mb:.1f} MB; best and median of {REPEATS} runs\n")
    print(f"| {'step':46s} | best s | median s | x plain copy |")
    print(f"|{'-' * 48}|--------|----------|--------------|")
    for name, best, median, ratio in rows:
        print(f"| {name:46s} | {best:6.2f} | {median:8.2f} | {ratio:12.1f} |")
    print(f"| {'no-op `dvc repro` (' + verdict + ')':46s} | {noop_best:6.2f} | {noop_median:8.2f} | {'-':>12s} |")


if __name__ == "__main__":
    main()
