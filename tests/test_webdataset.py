"""Streaming img2dataset output (webdataset tars and parquet) through HF datasets: shard patterns,
stats-based length, exactly-once splitting over ranks x workers, epoch-seeded order, dirty samples."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from fixtures_realdata import (
    expected_web,
    web_samples,
    write_coco_karpathy,
    write_img2dataset_parquet,
    write_img2dataset_webdataset,
    write_tiny_overrides,
)

from twostream.cli import run
from twostream.data import SKIPPED, WebDatasetDataModule, expand_shards
from twostream.data.formats.webdataset_shards import count_samples, sample_index

ROOT = Path(__file__).resolve().parents[1]


def web_dm(shards, **kwargs) -> WebDatasetDataModule:
    args = dict(batch_size=3, image_size=32, num_workers=0, seed=0)
    return WebDatasetDataModule(shards=shards, **{**args, **kwargs})


def epoch_keys(dm: WebDatasetDataModule, rank: int, world: int, epochs: int) -> list[list[int]]:
    """Keys per epoch from one persistent loader, the epoch coming from a stand-in trainer."""
    dm.trainer = SimpleNamespace(global_rank=rank, world_size=world, current_epoch=0)
    loader = dm.train_dataloader()
    out = []
    for epoch in range(epochs):
        dm.trainer.current_epoch = epoch
        batches = list(loader)
        assert len(batches) == len(loader) and all(b["image"].shape[0] == dm.batch_size for b in batches)
        out.append([k for b in batches for k in b["image_index"].tolist()])
    return out


@pytest.fixture(scope="module")
def clean_shards(tmp_path_factory) -> tuple[Path, set[int]]:
    out = tmp_path_factory.mktemp("clean")
    shards = web_samples(4, 6, dirty=False)
    write_img2dataset_webdataset(out, shards)
    return out, {int(s.key) for shard in shards for s in shard}


def test_shard_patterns_and_stats_length(clean_shards, tmp_path):
    out, keys = clean_shards
    tars = [str(out / f"{i:05d}.tar") for i in range(4)]
    assert expand_shards(str(out / "*.tar")) == tars
    assert expand_shards(str(out / "{00000..00003}.tar")) == tars
    assert expand_shards(str(out / "{00000,00002}.tar")) == tars[::2]
    assert expand_shards(tars[:2]) == tars[:2]
    assert count_samples(tars) == len(keys) == web_dm(str(out / "*.tar")).total_samples()
    assert web_dm(str(out / "*.tar"), num_samples=9).total_samples() == 9
    with pytest.raises(FileNotFoundError, match=r"no files match .*nothing\*\.tar"):
        expand_shards(str(tmp_path / "nothing*.tar"))
    (tmp_path / "00000.tar").write_bytes((out / "00000.tar").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"00000_stats\.json; set num_samples"):
        count_samples([str(tmp_path / "00000.tar")])


def test_every_sample_once_over_two_ranks_and_two_workers_and_epochs_reshuffle(clean_shards):
    out, keys = clean_shards
    per_rank = [epoch_keys(web_dm(str(out / "*.tar"), num_workers=2), rank, 2, epochs=2) for rank in (0, 1)]
    for epoch in (0, 1):
        seen = Counter(k for rank in per_rank for k in rank[epoch])
        assert set(seen) == keys and set(seen.values()) == {1}  # 24 samples, each exactly once
    assert per_rank[0][0] != per_rank[0][1]  # the epoch reseeds the order (persistent workers see it)
    resumed = web_dm(str(out / "*.tar"), num_workers=2)
    resumed.trainer = SimpleNamespace(global_rank=0, world_size=2, current_epoch=1)
    assert [k for b in resumed.train_dataloader() for k in b["image_index"].tolist()] == per_rank[0][1]


def test_short_ranks_refill_so_batch_counts_match(tmp_path):
    write_img2dataset_webdataset(tmp_path, web_samples(3, 9))  # 3 shards for 2 ranks, dirty: uneven
    lengths = [[len(e) for e in epoch_keys(web_dm(str(tmp_path / "*.tar"), batch_size=4), r, 2, 1)] for r in (0, 1)]
    assert lengths == [[12], [12]]  # 27 // 2 // 4 = 3 batches per rank, although rank 1 has fewer good ones


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_dirty_samples_are_skipped_and_counted_exactly(fmt, tmp_path):
    shards = web_samples(2, 10)
    writer = write_img2dataset_webdataset if fmt == "webdataset" else write_img2dataset_parquet
    pattern = str(tmp_path / ("*.tar" if fmt == "webdataset" else "*.parquet"))
    writer(tmp_path, shards)
    bad = expected_web(shards, parquet=fmt == "parquet")
    good = [s for shard in shards for s in shard if s.kind == "good" and s.caption.strip()]
    dm = web_dm(pattern, batch_size=len(good) // 3, num_samples=len(good), shuffle_buffer=0)  # read all, once
    batches = list(dm.train_dataloader())
    skipped = [s for b in batches for s in b.get(SKIPPED, [])]
    assert Counter(reason for reason, _ in skipped) == bad
    assert sorted(k for b in batches for k in b["image_index"].tolist()) == sorted(int(s.key) for s in good)
    assert all(c.startswith("web caption") for b in batches for c in b["caption"])
    assert ("missing_file", "000010014") in skipped or fmt == "parquet"


def test_sample_index_is_stable_for_any_key():
    assert sample_index("000120045") == 120045
    assert sample_index("abc/def") == sample_index("abc/def") != sample_index("abc/deg")
    assert 0 <= sample_index("x" * 40) < 2**63


def test_eval_needs_annotations(clean_shards):
    out, _ = clean_shards
    dm = web_dm(str(out / "*.tar"))
    assert dm.val_dataloader() == []
    with pytest.raises(ValueError, match="no 'test' split: set eval_root and eval_annotations"):
        dm.test_dataloader()
    with pytest.raises(ValueError, match="eval_root and eval_annotations go together"):
        web_dm(str(out / "*.tar"), eval_root="data/coco")


def test_cli_fit_and_test_streaming_with_coco_eval(tmp_path, capsys):
    write_img2dataset_webdataset(tmp_path / "cc", web_samples(2, 10))
    annotations, _ = write_coco_karpathy(tmp_path / "coco")
    overrides = write_tiny_overrides(tmp_path / "tiny.yaml", tmp_path / "runs")
    cli = run(["fit", "--config", str(ROOT / "experiments" / "finetune" / "coco.yaml"), "--config", str(overrides),
               "--data=twostream.data.WebDatasetDataModule",
               f"--data.init_args.shards={tmp_path}/cc/{{00000..00001}}.tar",
               f"--data.init_args.eval_root={tmp_path / 'coco'}", f"--data.init_args.eval_annotations={annotations}",
               "--data.init_args.image_size=64", "--data.init_args.batch_size=4", "--data.init_args.eval_batch_size=8",
               "--data.init_args.num_workers=0", "--data.init_args.shuffle_buffer=0",
               "--data.init_args.num_samples=14"])
    out = capsys.readouterr().out
    metrics = json.loads((Path(cli.trainer.logger.log_dir) / "metrics.json").read_text())
    assert {"i2t_r1", "rsum", "t2i_medr"} <= set(metrics)
    # 3 batches of 4, shards in order: shard 0 rows 0-4 and 7-9 good, 5-6 corrupt; shard 1 rows 0-3 good
    assert "epoch 0: skipped 2 of 14 samples (14.3%) — corrupt_image 2" in out


def test_all_bad_shards_fail_naming_them(tmp_path):
    shards = web_samples(1, 4, dirty=False)
    for row in shards[0]:
        row.caption = " "
    write_img2dataset_webdataset(tmp_path, shards)
    with pytest.raises(RuntimeError, match=r"no usable sample in its part of 1 shards .*\*\.tar"):
        list(web_dm(str(tmp_path / "*.tar"), batch_size=2).train_dataloader())
