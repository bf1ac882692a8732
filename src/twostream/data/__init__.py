"""Image-text and text-video retrieval data.

Sub-packages by what a thing is: ``formats`` (readers/writers of on-disk dataset formats),
``datamodules`` (LightningDataModules and their torch Datasets), ``synthetic`` (generators of the
embedded synthetic datasets); ``health`` (bad-data accounting) is shared by all. Configs name the
DataModules by the names exported here (``twostream.data.SyntheticShapesDataModule``).
"""
from twostream.data.datamodules.coco_flickr import CocoDataModule, Flickr30kDataModule
from twostream.data.datamodules.msrvtt import MSRVTTDataModule
from twostream.data.datamodules.retrieval import RetrievalDataModule
from twostream.data.datamodules.retrieval_datasets import (
    RetrievalCaptionDataset,
    RetrievalImageDataset,
    RetrievalTrainDataset,
)
from twostream.data.datamodules.synthetic_shapes import SyntheticShapesDataModule
from twostream.data.datamodules.synthetic_video import SyntheticVideoDataModule
from twostream.data.datamodules.transforms import CLIP_MEAN, CLIP_STD, build_image_transform
from twostream.data.datamodules.webdataset import WebDatasetDataModule, WebImageTextStream
from twostream.data.formats.albef_json import AnnotationSource, read_albef
from twostream.data.formats.karpathy import read_karpathy, read_karpathy_all, write_karpathy
from twostream.data.formats.retrieval_split import VALID_SPLITS, RetrievalSplit, screen_split
from twostream.data.formats.webdataset_shards import expand_shards
from twostream.data.health import (
    SKIPPED,
    DataQualityError,
    SkipReason,
    check_bad_fraction,
    collate_with_skips,
)
from twostream.data.synthetic.shapes import Scene, ShapeObject, ShapesConfig, render_scene
from twostream.data.synthetic.shapes_dataset import ensure_shapes_dataset
from twostream.data.synthetic.video_dataset import ensure_video_dataset

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
