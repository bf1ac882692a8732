"""Benchmark image decoding + augmentation per dataloader worker: webdataset shards streamed through
twostream's HF-datasets reader vs. a plain PIL + torchvision loop over the same JPEG files.

    python experiments/benchmarks/data_images.py            # 512 images, 3 rounds (make bench)
    python experiments/benchmarks/data_images.py --quick    # 64 images, 1 round

Generates its own data in a temp dir (JPEGs of 256-400 px, photo-like, img2dataset shard layout).
Both paths run in this process with one torch thread, which is what one DataLoader worker does,
so images/s here is per worker. Rounds alternate the two paths so load from other processes on a
shared machine hits both alike; the best round of each is reported.
Writes experiments/results/bench_data_images.{md,json} (or --out).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from twostream.data import CLIP_MEAN, CLIP_STD, WebDatasetDataModule, build_image_transform
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for report.py
from report import command, machine, machine_line, write_report  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
SIZE = 224


def photo_like_jpeg(rng: np.random.Generator) -> bytes:
    """A 256-400 px JPEG whose content compresses like a photo (smooth shapes + mild noise)."""
    w, h = (int(x) for x in rng.integers(256, 401, 2))
    low = rng.integers(0, 256, (h // 32 + 2, w // 32 + 2, 3)).astype(np.uint8)
    image = Image.fromarray(low, "RGB").resize((w, h), Image.BICUBIC)
    pixels = np.clip(np.asarray(image, np.int16) + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_data(root: Path, num_images: int, num_shards: int, seed: int) -> tuple[list[Path], str]:
    """The same JPEGs as plain files and as img2dataset webdataset shards (+ _stats.json)."""
    rng = np.random.default_rng(seed)
    files_dir, shards_dir = root / "files", root / "shards"
    files_dir.mkdir()
    shards_dir.mkdir()
    files = []
    per_shard = -(-num_images // num_shards)
    for s in range(num_shards):
        rows = range(s * per_shard, min(num_images, (s + 1) * per_shard))
        with tarfile.open(shards_dir / f"{s:05d}.tar", "w") as tar:
            for i in rows:
                key, data = f"{s:05d}{i - s * per_shard:04d}", photo_like_jpeg(rng)
                (files_dir / f"{key}.jpg").write_bytes(data)
                files.append(files_dir / f"{key}.jpg")
                for ext, payload in (("json", json.dumps({"key": key, "status": "success"}).encode()),
                                     ("jpg", data), ("txt", f"caption {key}".encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        stats = {"count": len(rows), "successes": len(rows), "failed_to_download": 0}
        (shards_dir / f"{s:05d}_stats.json").write_text(json.dumps(stats))
    return files, str(shards_dir / "*.tar")


def plain_loop(files: list[Path], transform) -> int:
    n = 0
    for path in files:
        with Image.open(path) as image:
            tensor = transform(image.convert("RGB"))
        n += tensor.shape[0] > 0
    return n


def make_stream(shards: str):
    """Built once (HF resolves the builder here); each round is one epoch of it."""
    dm = WebDatasetDataModule(shards=shards, batch_size=1, image_size=SIZE, train_augment=True,
                              shuffle_buffer=256, seed=0, num_workers=0)
    return dm.train_stream(rank=0, world_size=1)


def stream_loop(stream, epoch: int) -> int:
    stream.set_epoch(epoch)
    return sum(item["image"].shape[0] > 0 for item in stream)


def timed(fn, *args) -> tuple[float, int]:
    start = time.perf_counter()
    n = fn(*args)
    return time.perf_counter() - start, n


def libraries() -> dict:
    """The versions besides torch that decide this benchmark's speed."""
    import datasets
    import torchvision

    return {"torchvision": torchvision.__version__, "datasets": datasets.__version__, "Pillow": Image.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="64 images, 1 round")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_data_images", help="output stem (.md, .json)")
    args = parser.parse_args()
    if args.quick:
        args.num_images, args.rounds = 64, 1
    torch.set_num_threads(1)  # what a DataLoader worker runs with
    transform = build_image_transform(SIZE, CLIP_MEAN, CLIP_STD, augment=True)
    with tempfile.TemporaryDirectory() as tmp:
        files, shards = write_data(Path(tmp), args.num_images, args.shards, seed=0)
        source = make_stream(shards)
        stream_loop(source, 0)  # warm-up: page cache, first-use imports
        plain, stream = [], []
        for epoch in range(1, args.rounds + 1):
            plain.append(timed(plain_loop, files, transform))
            stream.append(timed(stream_loop, source, epoch))
    assert all(n == args.num_images for _, n in plain + stream), "a path did not see every image"
    plain_ips = args.num_images / min(t for t, _ in plain)
    stream_ips = args.num_images / min(t for t, _ in stream)
    result = {"command": command(), "machine": machine(**libraries()), "num_images": args.num_images,
              "shards": args.shards, "rounds": args.rounds, "image_size": SIZE,
              "plain_images_per_s": plain_ips, "stream_images_per_s": stream_ips,
              "ratio_stream_over_plain": stream_ips / plain_ips,
              "plain_round_s": [t for t, _ in plain], "stream_round_s": [t for t, _ in stream]}
    write_results(result, args.out)
    print(json.dumps(result, indent=1))


def write_results(r: dict, out: Path) -> None:
    rounds = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    m = r["machine"]
    write_report(out, r, f"""# Image decoding + augmentation per dataloader worker

| item | value |
|---|---|
| command | `{r['command']}` |
| machine | {machine_line(m)} |
| data | {r['num_images']} JPEGs, 256-400 px, quality 90; {r['shards']} img2dataset webdataset shards |
| work per image | decode, RGB, RandomResizedCrop {r['image_size']} (bicubic) + ColorJitter, ToTensor, Normalize |
| (a) plain PIL + torchvision loop over the files | **{r['plain_images_per_s']:.1f} images/s** (rounds: {rounds(r['plain_round_s'])} s) |
| (b) WebDatasetDataModule stream (HF datasets, shuffle buffer 256) | **{r['stream_images_per_s']:.1f} images/s** (rounds: {rounds(r['stream_round_s'])} s) |
| ratio (b) / (a) | **{r['ratio_stream_over_plain']:.2f}** |

One torch thread, in-process: the rate of one DataLoader worker; with W workers expect up to W
times as much while cores last. Best round of {r['rounds']}, rounds alternate (a) and (b).
Absolute rates depend on what else the machine runs ({m['nproc']} cores; load average when the run ended in the
machine row): the ratio, from rounds run side by side, is the meaningful number. (b) pays for tar parsing,
Arrow conversion and the shuffle buffer on top of (a)'s work; (a) pays for opening one file per image.
""")


if __name__ == "__main__":
    main()
