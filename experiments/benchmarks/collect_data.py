"""Merge the two data-loading benchmarks into experiments/results/bench_data.{md,json}.

    python experiments/benchmarks/collect_data.py

Images (webdataset streaming vs a plain PIL loop) and video (sampled vs full decoding) are measured
by their own scripts, data_images.py and data_video.py, each writing its own files; this page puts
both results in one place without re-measuring anything.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for report.py
from report import write_report  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
PARTS = {"images": "bench_data_images", "video": "bench_data_video"}


def main() -> None:
    merged, sections = {}, ["# Data loading benchmarks", "",
                            "Collected by `python experiments/benchmarks/collect_data.py` from the two files below "
                            "(each produced by its own script, command inside).", ""]
    for key, stem in PARTS.items():
        md, js = RESULTS / f"{stem}.md", RESULTS / f"{stem}.json"
        if not (md.exists() and js.exists()):
            raise SystemExit(f"{md} or {js} missing: run experiments/benchmarks/data_{key}.py first")
        merged[key] = json.loads(js.read_text())
        body = md.read_text().splitlines()
        sections += [f"## {body[0].lstrip('# ')} (`{md.name}`)", *body[1:], ""]
    write_report(RESULTS / "bench_data", merged, sections)
    print(f"wrote {RESULTS / 'bench_data.md'} and .json")


if __name__ == "__main__":
    main()
