"""Benchmark video reading per dataloader worker: twostream's sampled decoding (12 frames per clip,
seek + decode forward from the keyframe before each) vs. decoding every frame of the same videos.

    python experiments/benchmarks/data_video.py            # 20 videos, GOP 60 and 250, 3 rounds (make bench)
    python experiments/benchmarks/data_video.py --quick    # 4 videos, GOP 60, 1 round

Generates its own videos in a temp dir: 10 s at 30 fps, 224 x 224, H.264 (libx264, crf 23,
B-frames, a keyframe every GOP frames), photo-like moving content. Every path runs in this process
with one codec thread and one torch thread, which is what one DataLoader worker does, so the rates
are per worker. Rounds alternate the paths so load from other processes hits all alike; the best
round of each is reported. Writes experiments/results/bench_data_video.{md,json} (or --out).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from twostream.data.formats.video_io import DecodeStats, decode_all_frames, read_clip, sample_frame_indices
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for report.py
from report import command, machine, machine_line, write_report  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
SIZE, FPS, SECONDS, NUM_FRAMES = 224, 30, 10, 12


def write_video(path: Path, gop: int, rng: np.random.Generator) -> None:
    """A detailed random texture panning under two moving squares, plus mild noise: compresses like
    real footage (neither flat colour nor pure noise; ~0.5 MB per 10 s clip)."""
    big = rng.integers(0, 256, (SIZE // 4 + 8, SIZE // 2 + 16, 3)).astype(np.uint8)
    texture = np.asarray(Image.fromarray(big).resize((2 * SIZE, SIZE + 32), Image.BICUBIC), np.int16)
    options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "crf": "23", "preset": "veryfast"}
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options=options)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for k in range(FPS * SECONDS):
            frame = texture[16:16 + SIZE, k // 2: k // 2 + SIZE].copy()
            for j, colour in enumerate(((230, 40, 40), (40, 60, 230))):
                cx, cy = (40 + 3 * k + 60 * j) % SIZE, 60 + 80 * j
                frame[max(0, cy - 18):cy + 18, max(0, cx - 18):cx + 18] = colour
            frame = np.clip(frame + rng.normal(0, 5, frame.shape), 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def full_decode(paths: list[Path]) -> tuple[int, list[np.ndarray]]:
    """(a) decode every frame to RGB, then take the 12 centred ones (what naive loaders do)."""
    clips = []
    for path in paths:
        frames = decode_all_frames(path)
        clips.append(frames[sample_frame_indices(len(frames), NUM_FRAMES)])
    return len(paths) * FPS * SECONDS, clips


def decode_all_convert_sampled(paths: list[Path]) -> tuple[int, list[np.ndarray]]:
    """(a') decode every frame, convert only the 12 centred ones to RGB (isolates the conversion cost)."""
    clips = []
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            wanted = sample_frame_indices(stream.frames, NUM_FRAMES)
            frames = {i: f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(stream)) if i in wanted}
        clips.append(np.stack([frames[i] for i in wanted]))
    return len(paths) * FPS * SECONDS, clips


def sampled(paths: list[Path], train: bool) -> tuple[int, list[np.ndarray]]:
    """(b) twostream: read_clip with segment sampling (random offsets seeded per video, or centred)."""
    stats = DecodeStats()
    clips = [read_clip(p, NUM_FRAMES, random.Random(i) if train else None, stats) for i, p in enumerate(paths)]
    return stats.decoded, clips


PATHS = {"full": lambda p: full_decode(p), "full_convert_12": decode_all_convert_sampled,
         "sampled_eval": lambda p: sampled(p, False), "sampled_train": lambda p: sampled(p, True)}


def run_gop(root: Path, gop: int, num_videos: int, rounds: int) -> dict:
    rng = np.random.default_rng(gop)
    paths = [root / f"gop{gop}_{i:03d}.mp4" for i in range(num_videos)]
    for path in paths:
        write_video(path, gop, rng)
    best = {name: float("inf") for name in PATHS}
    decoded, clips = {}, {}
    for _ in range(rounds):
        for name, fn in PATHS.items():
            start = time.perf_counter()
            decoded[name], clips[name] = fn(paths)
            best[name] = min(best[name], time.perf_counter() - start)
    identical = all(np.array_equal(a, b) for a, b in zip(clips["full"], clips["sampled_eval"]))
    mb = sum(p.stat().st_size for p in paths) / len(paths) / 2**20
    return {"gop": gop, "num_videos": num_videos, "mean_file_mb": round(mb, 3), "best_s": best,
            "clips_per_s": {k: num_videos / v for k, v in best.items()},
            "frames_decoded_per_video": {k: v / num_videos for k, v in decoded.items()},
            "speedup_sampled_train_vs_full": best["full"] / best["sampled_train"],
            "speedup_sampled_eval_vs_full": best["full"] / best["sampled_eval"],
            "sampled_eval_frames_identical_to_full_decode": identical}


def write_results(results: list[dict], command: str, load: str, where: dict, out: Path) -> Path:
    """``out``.json and .md; returns the .md path."""
    blob = {"command": command, "machine": where, "load_before": load, "fps": FPS, "seconds": SECONDS,
            "size": SIZE, "num_frames": NUM_FRAMES, "results": results}
    lines = ["# Video reading per dataloader worker: sampled decoding vs. decoding every frame", "",
             "| item | value |", "|---|---|", f"| command | `{command}` |", f"| machine | {machine_line(where)} |",
             f"| load average before the run | {load} |",
             f"| videos | {SECONDS} s at {FPS} fps ({SECONDS * FPS} frames), {SIZE} x {SIZE}, H.264 crf 23 with "
             f"B-frames, a keyframe every GOP frames |",
             f"| work per clip | {NUM_FRAMES} frames as RGB uint8 arrays (segment sampling; no resize/normalise) |"]
    for r in results:
        lines += _gop_rows(r)
    r = results[0]
    best, decoded = r["best_s"], r["frames_decoded_per_video"]["sampled_train"]
    lines += ["", "One codec thread and one torch thread, in-process: the rate of one DataLoader worker. Best round "
              "of the rounds run; rounds alternate the paths. \"Frames/s\" counts the 12 frames per clip a loader "
              "delivers.", "",
              f"Where the gain comes from (GOP {r['gop']}): (a') decodes every frame but converts only the 12 it "
              f"keeps, so {100 * (1 - best['full_convert_12'] / best['full']):.0f}% of (a)'s time is converting "
              "frames to RGB that are then thrown away. (b) also seeks over whole GOPs between targets and stops at "
              f"the last one ({decoded:.0f} of {FPS * SECONDS} frames decoded per clip), which is worth "
              f"{best['full_convert_12'] / best['sampled_train']:.2f}x over (a') on these short 224 px clips: "
              "decoding a small frame costs little next to a seek and decoder flush. Seeking can only gain more "
              "where it skips more decoding — longer videos (whole GOPs between the sampled frames) and larger "
              "frames (not measured here); with keyframes rarer than the spacing of the sampled frames (GOP 250) "
              "nearly every frame is decoded anyway.",
              "", f"Absolute rates depend on what else the machine runs ({where['nproc']} cores; load averages "
              "before the run and, in the machine row, when it ended): the ratios, from rounds run side by side, are "
              "the meaningful numbers."]
    return write_report(out, blob, lines)[0]


def _gop_rows(r: dict) -> list[str]:
    rate, per, g = r["clips_per_s"], r["frames_decoded_per_video"], r["gop"]
    return [f"| **GOP {g}** ({g / FPS:.1f} s), {r['num_videos']} videos, {r['mean_file_mb']:.2f} MB each | |",
            f"| (a) decode every frame to RGB, keep 12 | {rate['full']:.2f} clips/s = "
            f"{NUM_FRAMES * rate['full']:.0f} frames/s ({per['full']:.0f} frames decoded per clip) |",
            f"| (a') decode every frame, convert only the 12 | {rate['full_convert_12']:.2f} clips/s = "
            f"{NUM_FRAMES * rate['full_convert_12']:.0f} frames/s |",
            f"| (b) sampled decoding, training (random offset per segment) | {rate['sampled_train']:.2f} clips/s = "
            f"{NUM_FRAMES * rate['sampled_train']:.0f} frames/s ({per['sampled_train']:.0f} decoded per clip) |",
            f"| (b') sampled decoding, evaluation (centred) | {rate['sampled_eval']:.2f} clips/s = "
            f"{NUM_FRAMES * rate['sampled_eval']:.0f} frames/s ({per['sampled_eval']:.0f} decoded per clip) |",
            f"| speed-up (b)/(a), training / evaluation | **{r['speedup_sampled_train_vs_full']:.2f}x** / "
            f"**{r['speedup_sampled_eval_vs_full']:.2f}x** |",
            f"| (b') frames bit-identical to (a)'s | {r['sampled_eval_frames_identical_to_full_decode']} |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-videos", type=int, default=20)
    parser.add_argument("--gops", default="60,250", help="keyframe intervals to test (frames), comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="4 videos, GOP 60, 1 round")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_data_video", help="output stem (.md, .json)")
    args = parser.parse_args()
    if args.quick:
        args.num_videos, args.gops, args.rounds = 4, "60", 1
    torch.set_num_threads(1)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_gop(Path(tmp), int(g), args.num_videos, args.rounds) for g in args.gops.split(",")]
    pyav = f"{av.__version__} (FFmpeg {av.library_versions['libavcodec']})"
    print(write_results(results, command(), load, machine(PyAV=pyav), args.out).read_text())


if __name__ == "__main__":
    main()
