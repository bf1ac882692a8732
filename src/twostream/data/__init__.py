"""Image-text retrieval data: the Karpathy split format, shared datasets/DataModule, synthetic shapes."""
from twostream.data.albef_json import AnnotationSource, read_albef
from twostream.data.coco_flickr import CocoDataModule, Flickr30kDataModule
from twostream.data.health import (
    SKIPPED,
    DataQualityError,
    SkipReason,
    check_bad_fraction,
    collate_with_skips,
)
from twostream.data.karpathy import (
    VALID_SPLITS,
    RetrievalSplit,
    read_karpathy,
    read_karpathy_all,
    screen_split,
    write_karpathy,
)
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
from twostream.data.msrvtt import MSRVTTDataModule
from twostream.data.synthetic_video_datamodule import SyntheticVideoDataModule, ensure_video_dataset
from twostream.data.webdataset_stream import WebDatasetDataModule, WebImageTextStream, expand_shards

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "SKIPPED",
    "VALID_SPLITS",
    "AnnotationSource",
    "CocoDataModule",
    "DataQualityError",
    "Flickr30kDataModule",
    "MSRVTTDataModule",
    "RetrievalCaptionDataset",
    "RetrievalDataModule",
    "RetrievalImageDataset",
    "RetrievalSplit",
    "RetrievalTrainDataset",
    "Scene",
    "ShapeObject",
    "ShapesConfig",
    "SkipReason",
    "SyntheticShapesDataModule",
    "SyntheticVideoDataModule",
    "WebDatasetDataModule",
    "WebImageTextStream",
    "build_image_transform",
    "check_bad_fraction",
    "collate_with_skips",
    "ensure_shapes_dataset",
    "ensure_video_dataset",
    "expand_shards",
    "read_albef",
    "read_karpathy",
    "read_karpathy_all",
    "render_scene",
    "screen_split",
    "write_karpathy",
]
