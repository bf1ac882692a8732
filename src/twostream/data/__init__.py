"""Image-text retrieval data: the Karpathy split format, shared datasets/DataModule, synthetic shapes."""
from twostream.data.karpathy import VALID_SPLITS, RetrievalSplit, read_karpathy, write_karpathy
from twostream.data.retrieval_datamodule import (
    CLIP_MEAN,
    CLIP_STD,
    RetrievalCaptionDataset,
    RetrievalDataModule,
    RetrievalImageDataset,
    RetrievalTrainDataset,
    build_image_transform,
)
from twostream.data.synthetic_datamodule import SyntheticShapesDataModule, ensure_shapes_dataset
from twostream.data.synthetic_shapes import Scene, ShapeObject, ShapesConfig, render_scene

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "VALID_SPLITS",
    "RetrievalCaptionDataset",
    "RetrievalDataModule",
    "RetrievalImageDataset",
    "RetrievalSplit",
    "RetrievalTrainDataset",
    "Scene",
    "ShapeObject",
    "ShapesConfig",
    "SyntheticShapesDataModule",
    "build_image_transform",
    "ensure_shapes_dataset",
    "read_karpathy",
    "render_scene",
    "write_karpathy",
]
