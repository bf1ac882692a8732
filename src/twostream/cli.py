"""``twostream fit|validate|test --config ...``: LightningCLI, so YAML keys are constructor arguments.

After ``fit`` the test split is evaluated with the trained weights (``--test_after_fit false`` to
skip), so one command trains, evaluates and writes metrics.json.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download implicitly (explicit local paths always work)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import warnings  # noqa: E402

import lightning as L  # noqa: E402
from lightning.pytorch.cli import LightningCLI  # noqa: E402

# Tokenizing in the model's on_before_batch_transfer is deliberate (see TwoStreamEncoder).
warnings.filterwarnings("ignore", message=".*overridden `on_before_batch_transfer`.*")
# Frozen modules (the MVM visual tokenizer) stay in eval mode on purpose.
warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training.*")
# Imported so configs may name these classes by their short name (``class_path: InBatchContrastive``).
import twostream.callbacks  # noqa: E402,F401
import twostream.contrastive  # noqa: E402,F401
import twostream.data  # noqa: E402,F401
import twostream.encoder  # noqa: E402,F401
import twostream.methods.cookie  # noqa: E402,F401
import twostream.methods.cots  # noqa: E402,F401
import twostream.methods.cots.tokenizer  # noqa: E402,F401
import twostream.methods.vldeformer  # noqa: E402,F401
import twostream.towers  # noqa: E402,F401
from twostream import cli_faults  # noqa: E402
from twostream.config_hints import HintingArgumentParser  # noqa: E402
from twostream.cpu_memory import keep_freed_memory  # noqa: E402
from twostream.precision_check import warn_precision  # noqa: E402


class TwoStreamCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="evaluate the test split with the final weights after fit")
        parser.add_argument("--max_nonfinite_steps", type=int, default=0,
                            help="optimizer steps with a NaN/Inf loss or gradient to skip (and count) before "
                                 "stopping; 0: stop at the first (twostream.callbacks.NonFiniteGuard)")
        parser.add_argument("--cpu_malloc_tuning", type=bool, default=True,
                            help="on CPU, keep freed memory in the process between steps (glibc mallopt; "
                                 "twostream.cpu_memory: ~6%% faster ViT-B steps, docs/performance.md)")
        # values that must agree in two places are given once: the images the data yields are the
        # images the vision tower is built for; the towers' output size is the shared embedding size
        # (links whose target the chosen class lacks, e.g. HFTextTower's embed_dim, are skipped)
        parser.link_arguments("data.init_args.image_size", "model.init_args.vision.init_args.image_size")
        parser.link_arguments("model.init_args.embed_dim", "model.init_args.vision.init_args.embed_dim")
        parser.link_arguments("model.init_args.embed_dim", "model.init_args.text.init_args.embed_dim")

    def _parse_ckpt_path(self) -> None:
        """Keep the config as given. Lightning would overwrite it with the hyperparameters stored in
        ``--ckpt_path``, so ``twostream test --ckpt_path X --model.init_args.eval_mode=rerank`` would
        silently evaluate with the training-time value. Here the YAML + command line is the experiment
        and the checkpoint supplies weights (towers are not in the stored hyperparameters anyway)."""

    def before_instantiate_classes(self) -> None:
        """Impossible numbers are rejected now; ``--ckpt_path last`` / a run folder resumes in place."""
        note = cli_faults.prepare(self.subcommand, self.config[self.subcommand])
        if note:
            print(f"twostream: {note}")

    def instantiate_trainer(self, **kwargs):
        """Every trainer stops cleanly on SIGTERM/SIGINT and on NaN, and writes checkpoints atomically; a
        16-bit precision this CPU would emulate is warned about; CPU runs keep freed memory (cpu_memory)."""
        trainer = super().instantiate_trainer(**kwargs)
        config = self.config[self.subcommand]
        cli_faults.install(trainer, config.get("max_nonfinite_steps", 0))
        warn_precision(trainer)
        if config.get("cpu_malloc_tuning", True) and getattr(trainer.strategy.root_device, "type", "") == "cpu":
            keep_freed_memory()
        return trainer

    def after_fit(self) -> None:
        signalled = cli_faults.finished_despite_signal(self.trainer)
        if signalled is not None:
            raise signalled
        if self.config[self.subcommand].get("test_after_fit") and not self.trainer.fast_dev_run:
            self.trainer.test(self.model, datamodule=self.datamodule, verbose=False)


def run(args: list[str] | None = None) -> TwoStreamCLI:
    """Parse ``args`` (default: sys.argv), run the subcommand, return the CLI (trainer, model, config)."""
    return TwoStreamCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True,
                        subclass_mode_data=True, args=args, parser_class=HintingArgumentParser, save_config_kwargs={"overwrite": True},
                        auto_configure_optimizers=False)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    import sys

    from twostream.retrieval import cli as retrieval  # embed/index/search/serve are argparse commands there

    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in retrieval.COMMANDS:
        return retrieval.main(args)
    cli_faults.run_to_exit_status(lambda: run(None if argv is None else args), args)


if __name__ == "__main__":
    main()
