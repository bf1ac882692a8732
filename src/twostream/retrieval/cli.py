"""``twostream embed | index | search | serve``: the retrieval commands (argparse; ``fit``/``test`` stay LightningCLI).

``twostream.cli.main`` hands these four subcommands here. User mistakes (:class:`ConfigError`,
:class:`DataQualityError`) print one ``twostream <command>: error: ...`` line and exit 2, without a
traceback: the message says what to change.
"""
from __future__ import annotations

import argparse
import json
import sys

COMMANDS = ("embed", "index", "search", "serve")


def _embed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", help="a TwoStreamEncoder checkpoint or run folder (default: newest runs/default one)")
    p.add_argument("--config", action="append", help="YAML(s) to build the model/data from instead of the run's "
                                                     "config.yaml (repeat to stack, as for `twostream fit`)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--split", choices=("train", "val", "test"), help="a split of the run's datamodule")
    src.add_argument("--source", help="a folder of images/videos, or a .txt/.csv/.tsv/.parquet file of captions")
    p.add_argument("--modality", choices=("image", "video", "text"), help="what to embed (default: the source's)")
    p.add_argument("--caption-column", default="caption")
    p.add_argument("--path-column", help="column of file paths in a .csv/.parquet (default: path/image/filepath/...)")
    p.add_argument("--out", required=True, help="output folder (shards + metadata); re-run to resume")
    p.add_argument("--shard-size", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="1", help="number of devices, or 'auto' (more than 1: DDP)")
    p.add_argument("--precision", default=None, help="Lightning precision, e.g. 16-mixed on a GPU")
    p.add_argument("--max-bad-fraction", type=float, default=0.05, help="stop when more rows than this are unreadable")
    p.add_argument("--overwrite", action="store_true", help="replace embeddings of another model/source in --out")
    p.add_argument("--no-progress", action="store_true")


def _index_args(p: argparse.ArgumentParser) -> None:
    from twostream.retrieval.index import EXACT_BELOW, IVFPQ_FROM, KINDS

    p.add_argument("--embeddings", required=True, help="a folder written by `twostream embed`")
    p.add_argument("--out", required=True)
    p.add_argument("--kind", choices=KINDS, default="auto",
                   help=f"auto: flat below --exact-below, HNSW below --ivfpq-from, IVF-PQ from there")
    p.add_argument("--factory", help="any FAISS index_factory string instead of --kind (e.g. 'IVF1024,PQ16')")
    p.add_argument("--exact-below", type=int, default=EXACT_BELOW)
    p.add_argument("--ivfpq-from", type=int, default=IVFPQ_FROM)
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=80)
    p.add_argument("--ef-search", type=int, default=128)
    p.add_argument("--nlist", type=int)
    p.add_argument("--pq-m", type=int)
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument("--recall-queries", type=int, default=1000, help="held-out queries for the recall@10 measurement")
    p.add_argument("--threads", type=int, help="FAISS threads (default: all cores)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def _retriever_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="a folder written by `twostream index`")
    p.add_argument("--ckpt", help="the index's model (default: the checkpoint it recorded; a copy works)")
    p.add_argument("--config", action="append")
    p.add_argument("--rerank", help="a SingleStreamModel checkpoint: re-rank the first --k-test hits")
    p.add_argument("--ef-search", type=int)
    p.add_argument("--nprobe", type=int)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twostream", description="retrieval with a trained two-stream model")
    sub = parser.add_subparsers(dest="command", required=True)
    _embed_args(sub.add_parser("embed", help="embed a gallery into float16 shards + parquet metadata"))
    _index_args(sub.add_parser("index", help="build a FAISS index from embedded shards"))
    search = sub.add_parser("search", help="top-k of an index for a text or an image")
    _retriever_args(search)
    search.add_argument("query", nargs="?", help="the text query")
    search.add_argument("--image", help="an image file as the query")
    search.add_argument("-k", type=int, default=10)
    search.add_argument("--k-test", type=int, default=16)
    search.add_argument("--json", action="store_true", help="print the result as JSON")
    serve = sub.add_parser("serve", help="a JSON API and search page (FastAPI + uvicorn)")
    _retriever_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0: any free port")
    return parser


def _run(a: argparse.Namespace) -> None:
    if a.command == "embed":
        from twostream.retrieval.embedding import embed

        devices = a.devices if a.devices == "auto" else int(a.devices)
        embed(a.out, a.ckpt, source=a.source, split=a.split, modality=a.modality, configs=a.config,
              caption_column=a.caption_column, path_column=a.path_column, shard_size=a.shard_size,
              batch_size=a.batch_size, num_workers=a.num_workers, accelerator=a.accelerator, devices=devices,
              precision=a.precision, max_bad_fraction=a.max_bad_fraction, overwrite=a.overwrite,
              progress=not a.no_progress)
    elif a.command == "index":
        from twostream.retrieval.index import build_index

        build_index(a.embeddings, a.out, a.kind, factory=a.factory, exact_below=a.exact_below,
                    ivfpq_from=a.ivfpq_from, hnsw_m=a.hnsw_m, ef_construction=a.ef_construction,
                    ef_search=a.ef_search, nlist=a.nlist, pq_m=a.pq_m, nprobe=a.nprobe,
                    recall_queries=a.recall_queries, threads=a.threads, overwrite=a.overwrite,
                    progress=not a.no_progress)
    else:
        from twostream.retrieval.retriever import Retriever

        sock = None
        if a.command == "serve":  # a port in use fails before the seconds of loading the model
            from twostream.retrieval.serve import bind

            sock = bind(a.host, a.port)
        retriever = Retriever.from_index(a.index, a.ckpt, a.config, rerank=a.rerank, ef_search=a.ef_search,
                                         nprobe=a.nprobe)
        if a.command == "search":
            _search(retriever, a)
        else:
            from twostream.retrieval.serve import serve

            serve(retriever, sock=sock)


def _search(retriever, a: argparse.Namespace) -> None:
    result = retriever.search(text=a.query, image=a.image, k=a.k, k_test=a.k_test)
    if a.json:
        print(json.dumps(result.as_dict(), indent=1))
        return
    t = result.timings_ms
    print(f"{len(result.hits)} hits · encode {t['encode']:.1f} ms · search {t['search']:.1f} ms"
          + (f" · re-rank {t['rerank']:.1f} ms ({result.reranked} re-scored)" if "rerank" in t else "")
          + f" · total {t['total']:.1f} ms")
    for h in result.hits:
        extra = f"  x-enc {h.rerank_score:7.3f}" if h.rerank_score is not None else ""
        print(f"{h.rank:3d}  {h.score:7.4f}{extra}  {h.path or '-'}  {h.caption or ''}")


def _quiet_lightning() -> None:
    """Lightning's per-Trainer banners (GPU available, seed set, tips) would repeat for every shard."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default ``sys.argv[1:]``, starting with the subcommand) and run it."""
    from twostream.data.health import DataQualityError
    from twostream.errors import ConfigError

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    _quiet_lightning()
    try:
        _run(args)
    except (ConfigError, DataQualityError) as err:
        print(f"twostream {args.command}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
