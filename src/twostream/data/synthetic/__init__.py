"""Generators of the embedded synthetic datasets (no download, reproducible from a seed).

- ``shapes``, ``shapes_captions``: compositional shape scenes, their captions and meanings.
- ``shapes_dataset``: writes them as a Karpathy file plus PNGs (``ensure_shapes_dataset``).
- ``video``: moving-shapes clips and captions; ``video_dataset`` writes them as MSR-VTT files.
- ``generated``: ``generate_once``, the atomic write-then-rename every generator uses.
"""
