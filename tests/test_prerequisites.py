"""`twostream.prerequisites`: a config's tokenizer / teacher / stage-1 files found from its values, built on demand."""
import importlib
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from twostream import config_files
from twostream import prerequisites as prq

ROOT = Path(__file__).resolve().parents[1]
FAKE = "fake_prereq_classes"  # the module the fake classes live in (written by the fixture)


def _cmd(code: str) -> str:
    """A shell command running ``code`` with this interpreter."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def _writes(path: str) -> str:
    """A build command that creates ``path`` and appends a line to build.log (so tests count the builds)."""
    return _cmd("import pathlib; p = pathlib.Path(%r); p.parent.mkdir(parents=True, exist_ok=True); p.write_text('x'); "
                "open('build.log', 'a').write(%r + '\\n')" % (path, path))


FAKE_SOURCE = f'''
from typing import ClassVar

from twostream.prerequisites import Artifact


class Head:
    def __init__(self, weight: float = 1.0):
        pass


class TokenizerHead(Head):
    artifacts: ClassVar[dict[str, Artifact]] = {{"tokenizer": Artifact({_writes("fake/tok.pt")!r}, "the fake tokenizer")}}

    def __init__(self, tokenizer: str | None = "fake/tok.pt", weight: float = 1.0, extra: int = 0):
        pass


class Tower:
    def __init__(self, width: int = 8):
        pass


class Stage2Tower(Tower):
    artifacts: ClassVar[dict[str, Artifact]] = {{"init_from": Artifact("make stage1", "the stage-1 checkpoint")}}

    def __init__(self, init_from: str | None = "fake/stage1.ckpt", width: int = 8):
        pass


class TeacherHead(Head):
    artifacts: ClassVar[dict[str, Artifact]] = {{"teacher_checkpoint": Artifact({_writes("fake/teacher.ckpt")!r}, "the teachers")}}

    def __init__(self, teacher_checkpoint: str | None = None, teacher: Tower | None = None, weight: float = 1.0):
        pass


class NoOutputHead(Head):  # its command succeeds but writes nothing
    artifacts: ClassVar[dict[str, Artifact]] = {{"path": Artifact({_cmd("pass")!r}, "a file nobody writes")}}

    def __init__(self, path: str = "fake/never.pt"):
        pass


class FailingHead(Head):
    artifacts: ClassVar[dict[str, Artifact]] = {{"path": Artifact({_cmd("raise SystemExit(3)")!r}, "a file whose build fails")}}

    def __init__(self, path: str = "fake/fails.pt"):
        pass


class Model:
    def __init__(self, heads: list[Head] = (), tower: Tower | None = None, options: dict | None = None, lr: float = 1e-3):
        pass
'''


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fake_classes")
    (d / f"{FAKE}.py").write_text(FAKE_SOURCE)
    sys.path.insert(0, str(d))
    importlib.invalidate_caches()
    yield d
    sys.path.remove(str(d))
    sys.modules.pop(FAKE, None)
    for key in [k for k in config_files._CLASSES if k.startswith(FAKE) or "." not in k]:
        config_files._CLASSES.pop(key)


@pytest.fixture
def work(tmp_path, monkeypatch, fake_dir):
    """cwd = a fresh tmp dir (relative artifact paths live there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, content) -> Path:
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return path


def model(heads=None, **init_args) -> dict:
    args = {**({"heads": heads} if heads is not None else {}), **init_args}
    return {"trainer": {"max_epochs": 1}, "model": {"class_path": f"{FAKE}.Model", "init_args": args}}


def head(name: str, **init_args) -> dict:
    return {"class_path": f"{FAKE}.{name}", **({"init_args": init_args} if init_args else {})}


def test_missing_file_is_reported_with_its_command(work, capsys):
    cfg = write(work / "c.yaml", model([head("Head"), head("TokenizerHead", tokenizer="runs/tok.pt", weight=0.5)]))
    [m] = prq.missing_prerequisites(cfg)
    assert m.path == "runs/tok.pt" and m.what == "the fake tokenizer" and "fake/tok.pt" in m.command
    assert m.keys == ("model.init_args.heads[1].init_args.tokenizer",) and m.class_path == f"{FAKE}.TokenizerHead"
    assert prq.main([str(cfg)]) == 2
    out, err = capsys.readouterr()
    assert "1 file(s) missing" in out and "runs/tok.pt: the fake tokenizer" in out and "build it with:" in out
    assert "--build" in err


def test_present_file_and_null_value_need_nothing(work, capsys):
    (work / "runs").mkdir()
    (work / "runs" / "tok.pt").write_text("x")
    cfg = write(work / "c.yaml", model([head("TokenizerHead", tokenizer="runs/tok.pt"), head("TeacherHead", teacher_checkpoint=None)]))
    assert prq.missing_prerequisites(cfg) == []
    assert prq.main([str(cfg)]) == 0
    assert "1 prerequisite file(s), all present" in capsys.readouterr().out


def test_constructor_default_is_used_when_init_args_omit_it(work):
    cfg = write(work / "c.yaml", model([head("TokenizerHead", weight=2.0), head("TeacherHead")]))  # TeacherHead: default None
    [m] = prq.missing_prerequisites(cfg)
    assert m.path == "fake/tok.pt" and "(the default of" in m.keys[0]


def test_comments_and_unrelated_values_play_no_part(work):
    text = ("# needs runs/teacher/teacher.ckpt and MaskedVisionModeling, says the comment\n"
            + yaml.safe_dump(model([head("Head")], options={"tokenizer": "nope.pt"})))
    assert prq.missing_prerequisites(write(work / "c.yaml", text)) == []


def test_nested_class_paths_in_lists_and_dicts(work):
    teacher = head("TeacherHead", teacher_checkpoint="t.ckpt", teacher=head("Stage2Tower", init_from="s1.ckpt"))
    cfg = write(work / "c.yaml", model([head("Head"), teacher], tower=head("Stage2Tower"),
                                       options={"deep": [{"x": head("TokenizerHead", tokenizer="deep.pt")}]}))
    missing = prq.missing_prerequisites(cfg)
    assert [m.path for m in missing] == ["t.ckpt", "s1.ckpt", "fake/stage1.ckpt", "deep.pt"]  # document order
    assert missing[1].keys == ("model.init_args.heads[1].init_args.teacher.init_args.init_from",)
    assert missing[3].keys == ("model.init_args.options.deep[0].x.init_args.tokenizer",)


def test_one_entry_per_file_named_twice(work):
    cfg = write(work / "c.yaml", model([head("TeacherHead", teacher_checkpoint="t.ckpt"),
                                        head("TeacherHead", teacher_checkpoint="t.ckpt")]))
    [m] = prq.missing_prerequisites(cfg)
    assert m.keys == ("model.init_args.heads[0].init_args.teacher_checkpoint",
                      "model.init_args.heads[1].init_args.teacher_checkpoint")


def test_overlays_merge_like_the_cli(work):
    base = write(work / "base.yaml", model([head("TokenizerHead", tokenizer="a.pt")], tower=head("Stage2Tower", init_from="s.ckpt")))
    no_heads = write(work / "no_heads.yaml", {"model": {"init_args": {"heads": [{"class_path": f"{FAKE}.Head"}]}}})
    tower_args = write(work / "tower.yaml", {"model": {"init_args": {"tower": {"init_args": {"width": 4}}}}})
    plain_tower = write(work / "plain.yaml", {"model": {"init_args": {"tower": {"class_path": f"{FAKE}.Tower"}}}})
    assert [m.path for m in prq.missing_prerequisites(base)] == ["a.pt", "s.ckpt"]
    assert [m.path for m in prq.missing_prerequisites(base, [no_heads])] == ["s.ckpt"]  # lists are replaced
    assert [m.path for m in prq.missing_prerequisites(base, [tower_args])] == ["a.pt", "s.ckpt"]  # init_args merge
    assert [m.path for m in prq.missing_prerequisites(base, [plain_tower])] == ["a.pt"]  # another class: its own args


def test_merge_agrees_with_jsonargparse(work):
    """The files named after merging are the ones jsonargparse's own merge of the same --config files names."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    fake = importlib.import_module(FAKE)
    base = write(work / "base.yaml", {"model": model(
        [head("TokenizerHead", tokenizer="a.pt", extra=3), head("TeacherHead", teacher_checkpoint="t.ckpt")],
        tower=head("Stage2Tower", init_from="s.ckpt", width=16))["model"]})
    over = write(work / "over.yaml", {"model": {"init_args": {
        "heads": [head("TokenizerHead", weight=2.0)],  # a new list: a.pt and t.ckpt are gone, the default comes back
        "tower": {"class_path": f"{FAKE}.Stage2Tower", "init_args": {"width": 4}}}}})
    swap = write(work / "swap.yaml", {"model": {"init_args": {"heads": [head("TeacherHead")],  # default: None
                                                              "tower": {"class_path": f"{FAKE}.Tower"}}}})
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_subclass_arguments(fake.Model, "model")
    for overlays in ([], [over], [swap], [over, swap], [swap, over]):
        args = [a for f in [base, *overlays] for a in ("--config", str(f))]
        theirs = yaml.safe_load(parser.dump(parser.parse_args(args)))
        ours = prq.load_config(base, overlays)
        # same files (the order differs: ours follows the YAML, jsonargparse's dump the signature)
        assert sorted(u[0] for u in prq.artifact_uses(ours)) == sorted(u[0] for u in prq.artifact_uses(theirs)), overlays


def test_build_runs_the_command_once_and_rechecks(work, capsys):
    cfg = write(work / "c.yaml", model([head("TokenizerHead"), head("TeacherHead", teacher_checkpoint="fake/teacher.ckpt"),
                                        head("TokenizerHead", tokenizer="fake/tok.pt")]))
    assert prq.main([str(cfg), "--build"]) == 0
    assert (work / "fake" / "tok.pt").exists() and (work / "fake" / "teacher.ckpt").exists()
    assert (work / "build.log").read_text().splitlines() == ["fake/tok.pt", "fake/teacher.ckpt"]  # each built once
    out = capsys.readouterr().out
    assert "fake/tok.pt does not exist (the fake tokenizer): running" in out and "built" in out
    assert prq.main([str(cfg), "--build"]) == 0 and (work / "build.log").read_text().count("\n") == 2  # nothing to do now


def test_build_that_writes_nothing_fails_clearly(work, capsys):
    cfg = write(work / "c.yaml", model([head("NoOutputHead")]))
    assert prq.main([str(cfg), "--build"]) == 2
    err = capsys.readouterr().err.strip()
    assert "finished but fake/never.pt still does not exist" in err and len(err.splitlines()) == 1


def test_failing_build_command_fails_clearly(work, capsys):
    cfg = write(work / "c.yaml", model([head("FailingHead")]))
    assert prq.main([str(cfg), "--build"]) == 2
    assert "failed (exit 3) while building fake/fails.pt" in capsys.readouterr().err


def test_each_resolves_every_row_on_top_of_the_base(work, capsys):
    base = write(work / "base.yaml", model([head("Head")]))
    rows = [write(work / "r1.yaml", {}), write(work / "r2.yaml", {"model": {"init_args": {"heads": [head("TokenizerHead")]}}})]
    assert prq.main(["--base", str(base), "--each", *map(str, rows)]) == 2
    out = capsys.readouterr().out
    assert "base.yaml + " in out and "r1.yaml: no prerequisite files" in out and "r2.yaml: 1 file(s) missing" in out


def test_short_class_names_resolve_through_the_cli_imports(work, monkeypatch):
    registry = work / "fake_registry_mod.py"
    registry.write_text(f"import {FAKE}  # noqa: F401\n")
    monkeypatch.syspath_prepend(str(work))
    monkeypatch.setattr(config_files, "SHORT_NAME_MODULE", "fake_registry_mod")
    cfg = write(work / "c.yaml", {"model": {"class_path": f"{FAKE}.Model", "init_args": {"heads": [{"class_path": "TokenizerHead"}]}}})
    assert [m.path for m in prq.missing_prerequisites(cfg)] == ["fake/tok.pt"]
    cfg = write(work / "d.yaml", {"model": {"class_path": "NoSuchClassAnywhere"}})
    with pytest.raises(prq.PrerequisiteError, match=r"d.yaml: model.class_path: .*no class named 'NoSuchClassAnywhere'"):
        prq.missing_prerequisites(cfg)


def test_unimportable_class_is_a_one_line_error_naming_file_and_key(work, capsys):
    cfg = write(work / "c.yaml", model([head("Head"), {"class_path": f"{FAKE}.Nope"}]))
    over = write(work / "o.yaml", {"model": {"init_args": {"tower": {"class_path": "no_such_pkg_xyz.Tower"}}}})
    assert prq.main([str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "c.yaml: model.init_args.heads[1].class_path" in err and "has no attribute 'Nope'" in err
    good = write(work / "g.yaml", model([head("Head")]))
    assert prq.main([str(good), str(over)]) == 2
    err = capsys.readouterr().err.strip()
    assert "o.yaml: model.init_args.tower.class_path" in err and "no module named 'no_such_pkg_xyz'" in err


@pytest.mark.parametrize("content, message", [(None, "not found"), ("a: [1, 2\n", "not valid YAML"),
                                              ("- 1\n- 2\n", "expected a mapping")])
def test_bad_config_is_a_one_line_error_exit_2(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "twostream.prerequisites", str(path)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr and "Traceback" not in proc.stderr
    assert "bad.yaml" in proc.stderr


def test_latest_checkpoint_is_the_highest_version_not_the_newest_file(tmp_path, capsys):
    root = tmp_path / "runs" / "default"
    for n, mtime in [(9, 2_000_000_000), (10, 1_000_000_000), (2, 2_100_000_000)]:
        ckpt = root / f"version_{n}" / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_text("x")
        os.utime(ckpt, (mtime, mtime))
    (root / "version_11" / "checkpoints").mkdir(parents=True)  # a run that wrote no checkpoint (yet)
    (root / "version_x").mkdir()
    assert prq.latest_checkpoint(root) == root / "version_10" / "checkpoints" / "last.ckpt"
    assert prq.main(["--latest", str(root)]) == 0
    assert capsys.readouterr().out.strip() == str(root / "version_10" / "checkpoints" / "last.ckpt")
    assert prq.latest_checkpoint(tmp_path / "none") is None
    assert prq.main(["--latest", str(tmp_path / "none")]) == 2
    assert "run `make pretrain` first" in capsys.readouterr().err


# --- the real configs: which file each needs, from the classes' own declarations ------------------

REAL = [  # config, overlays, the class that declares it, missing file, its command
    ("experiments/pretrain/cots.yaml", [], "twostream.methods.cots.MaskedVisionModeling", "runs/tokenizer/vqvae.pt", "make tokenizer"),
    ("experiments/pretrain/cookie.yaml", [], "twostream.methods.cookie.VisualKnowledgeSharing", "runs/teacher/teacher.ckpt", "make teacher"),
    ("experiments/pretrain/vldeformer.yaml", [], "twostream.methods.vldeformer.DecomposedEncoder", "runs/single_stream/last.ckpt",
     "make pretrain CONFIG=experiments/pretrain/single_stream.yaml"),
]


def _declares(class_path: str) -> bool:
    return bool(prq.declared_artifacts(prq.resolve_class(class_path)))


@pytest.mark.parametrize("config, overlays, declarer, path, command", REAL, ids=[Path(r[0]).stem for r in REAL])
def test_real_config_names_its_prerequisite(tmp_path, monkeypatch, config, overlays, declarer, path, command):
    monkeypatch.chdir(tmp_path)  # nothing built here
    if not _declares(declarer):
        pytest.xfail(f"{declarer} does not declare `artifacts` yet")
    missing = prq.missing_prerequisites(ROOT / config, [ROOT / o for o in overlays])
    assert [(m.path, m.command) for m in missing] == [(path, command)]


@pytest.mark.parametrize("config", ["default.yaml", "single_stream.yaml", "video.yaml"])
def test_real_configs_without_prerequisites(tmp_path, monkeypatch, config):
    monkeypatch.chdir(tmp_path)
    assert prq.missing_prerequisites(ROOT / "experiments" / "pretrain" / config) == []


def test_ablation_rows_that_keep_mvm_need_the_tokenizer(tmp_path, monkeypatch):
    """make ablate: cots.yaml + mini.yaml + each row, merged as run_ablation.py's --config files are."""
    monkeypatch.chdir(tmp_path)
    if not _declares("twostream.methods.cots.MaskedVisionModeling"):
        pytest.xfail("MaskedVisionModeling does not declare `artifacts` yet")
    base = [ROOT / "experiments" / "pretrain" / "cots.yaml", ROOT / "experiments" / "testbed" / "mini.yaml"]
    needs = {row.stem: [m.path for m in prq.missing_prerequisites(base[0], [base[1], row])]
             for row in sorted((ROOT / "experiments" / "ablations" / "cots").glob("*.yaml"))}
    assert {k for k, v in needs.items() if v} == {"4_mvm", "7_full"}
    assert needs["4_mvm"] == needs["7_full"] == ["runs/tokenizer/vqvae.pt"]


def test_entry_point_as_the_makefile_calls_it(tmp_path, fake_dir):
    """The entry point as the Makefile calls it: missing -> exit 2 and a message, --build -> built, exit 0."""
    cfg = write(tmp_path / "c.yaml", model([head("TokenizerHead")]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(fake_dir), os.environ.get("PYTHONPATH", "")])}
    run = lambda *a: subprocess.run([sys.executable, "-m", "twostream.prerequisites", *a], cwd=tmp_path, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    first = run(str(cfg))
    assert first.returncode == 2 and "fake/tok.pt" in first.stdout and "Traceback" not in first.stderr
    built = run(str(cfg), "--build")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "fake" / "tok.pt").exists()
    assert run(str(cfg)).returncode == 0
