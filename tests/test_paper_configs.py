"""The paper-scale configs (experiments/pretrain/*_cc3m.yaml, experiments/finetune/{coco,flickr30k,msrvtt}.yaml)
parse against the constructors, each on its own, and say what they are.

`--print_config` checks every key against the classes' signatures without instantiating anything, so the
local weights and data these configs name need not exist. It runs in-process, one `twostream.cli.run` per
file (a subprocess per file costs ~13 s of interpreter and import start-up on the shared CPU; one
subprocess checks the `python -m twostream` entry point itself).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from twostream.cli import run
from twostream.methods.vldeformer.near_miss import load_word_groups

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN, FINETUNE = ROOT / "experiments" / "pretrain", ROOT / "experiments" / "finetune"
WORDS = PRETRAIN / "vldeformer_words.txt"

T = "twostream."
TWO_STREAM = [T + "encoder.TwoStreamEncoder", T + "towers.OpenCLIPVisionTower", T + "towers.HFTextTower",
              T + "data.WebDatasetDataModule"]
COTS, COOKIE, VLD = T + "methods.cots.", T + "methods.cookie.", T + "methods.vldeformer."
EXPECTED = {
    "clip_cc3m.yaml": TWO_STREAM + [T + "contrastive.InBatchContrastive"],
    "cots_cc3m.yaml": TWO_STREAM + [COTS + "MomentumQueue", COTS + "AdaptiveMomentumFilter",
                                    COTS + "MomentumContrastive", COTS + "MaskedLanguageModeling",
                                    COTS + "MaskedVisionModeling", COTS + "KLAlignment"],
    "cookie_cc3m.yaml": TWO_STREAM + [COOKIE + "SharedTransformer", T + "contrastive.InBatchContrastive",
                                      COOKIE + "VisualKnowledgeSharing", COOKIE + "TextualKnowledgeSharing"],
    "single_stream_cc3m.yaml": [VLD + "SingleStreamModel", VLD + "VLTransformer", T + "data.WebDatasetDataModule"],
    "vldeformer_cc3m.yaml": [VLD + "DecomposedEncoder", VLD + "VLTransformer", VLD + "BimodalHardNegatives",
                             T + "data.WebDatasetDataModule"],
}
FINETUNE_EXPECTED = {
    "coco.yaml": [T + "encoder.TwoStreamEncoder", T + "towers.OpenCLIPVisionTower", T + "towers.OpenCLIPTextTower",
                  T + "data.CocoDataModule"],
    "flickr30k.yaml": [T + "encoder.TwoStreamEncoder", T + "towers.OpenCLIPVisionTower", T + "towers.OpenCLIPTextTower",
                       T + "data.Flickr30kDataModule"],
    "msrvtt.yaml": [T + "encoder.TwoStreamEncoder", T + "towers.VideoTower", T + "towers.OpenCLIPVisionTower",
                    T + "towers.OpenCLIPTextTower", T + "data.MSRVTTDataModule"],
}
CONFIGS = [PRETRAIN / name for name in EXPECTED] + [FINETUNE / name for name in FINETUNE_EXPECTED]


def print_config(path: Path, capsys) -> tuple[str, dict]:
    with pytest.raises(SystemExit) as exit_info:
        run(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    text = capsys.readouterr().out
    return text, yaml.safe_load(text)


def class_paths(node) -> set[str]:
    if isinstance(node, dict):
        found = {node["class_path"]} if isinstance(node.get("class_path"), str) else set()
        return found.union(*(class_paths(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(class_paths(v) for v in node))
    return set()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses_alone_with_expected_classes(path, capsys):
    _, cfg = print_config(path, capsys)
    expected = {**EXPECTED, **FINETUNE_EXPECTED}[path.name]
    missing = sorted(set(expected) - class_paths(cfg))
    assert not missing, f"{path.name}: printed config lacks {missing}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cc3m_configs_gpu_scale_and_documented(name, capsys):
    path = PRETRAIN / name
    _, cfg = print_config(path, capsys)
    trainer, data = cfg["trainer"], cfg["data"]["init_args"]
    assert (trainer["accelerator"], trainer["devices"], trainer["precision"]) == ("gpu", "auto", "bf16-mixed")
    assert data["shards"] == "data/cc3m/{00000..00331}.tar"
    assert (data["eval_root"], data["eval_annotations"]) == ("data/coco", "data/coco/dataset_coco.json")
    text = path.read_text()
    prose = " ".join(w for w in text.split() if w != "#")  # comment lines joined
    assert "No number in this repository was produced with" in prose
    assert "Expected cost" in text and "[choice]" in text
    assert len(text.splitlines()) <= 110, f"{name}: keep it ~100 lines"


def test_cots_and_vldeformer_hyperparameters(capsys):
    cots = print_config(PRETRAIN / "cots_cc3m.yaml", capsys)[1]["model"]["init_args"]
    assert cots["embed_dim"] == 256 and cots["state"]["momentum"]["init_args"]["queue_size"] == 65536
    vld = print_config(PRETRAIN / "vldeformer_cc3m.yaml", capsys)[1]
    model = vld["model"]["init_args"]
    assert (model["temperature"], model["lr"], model["warmup_steps"], model["weight_decay"]) == (0.005, 7.5e-6, 200, 0.05)
    assert vld["data"]["init_args"]["batch_size"] * 8 == 1800  # per GPU x 8 GPUs = the code's global batch
    head = model["heads"][0]["init_args"]
    assert (ROOT / head["words"]).resolve() == WORDS.resolve()
    assert model["transformer"]["init_args"]["pretrained"] == "data/models/vilt-b32-mlm"


def test_word_list_loads():
    groups = load_word_groups(WORDS)
    assert len(groups) >= 3
    words = [w for entries in groups.values() for e in entries for w in e.split("|")]
    assert 100 <= len(words) <= 250
    assert {"colour", "count", "size"} <= set(groups)


def test_entry_point_print_config_subprocess():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "twostream", "fit", "--config", str(PRETRAIN / "vldeformer_cc3m.yaml"),
                          "--print_config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "twostream.methods.vldeformer.DecomposedEncoder" in out.stdout
