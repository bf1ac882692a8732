"""The LightningDataModules and the torch Datasets they load.

- ``retrieval``: ``RetrievalDataModule``, the base of every source (batch contract, loaders).
- ``retrieval_datasets``: its train / eval Datasets and the epoch-keyed sampler.
- ``transforms``: image and video-clip transforms (resize, crop, normalise).
- ``coco_flickr``: ``CocoDataModule``, ``Flickr30kDataModule``.
- ``webdataset``: ``WebDatasetDataModule`` and its streaming IterableDataset.
- ``msrvtt``: ``MSRVTTDataModule`` and the video Datasets.
- ``synthetic_shapes``, ``synthetic_video``: the DataModules of the generated data.
"""
