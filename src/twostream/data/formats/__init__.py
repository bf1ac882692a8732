"""Readers and writers of on-disk dataset formats; each returns (or takes) a ``RetrievalSplit``.

- ``retrieval_split``: the in-memory split every reader produces, and its screening.
- ``karpathy``: Karpathy ``dataset_*.json`` (COCO, Flickr30K, the synthetic shapes).
- ``albef_json``: ALBEF / BLIP / LAVIS retrieval JSON, and ``AnnotationSource`` (which format a file is).
- ``msrvtt``: MSR-VTT's ``MSRVTT_data.json`` and split csv files.
- ``webdataset_shards``: img2dataset shards (webdataset tar / parquet), their sizes, the HF stream.
- ``video_io``: sampled frame decoding from mp4s or frame folders; writing mp4s.

No torch Dataset or DataModule here (those are in ``twostream.data.datamodules``).
"""
