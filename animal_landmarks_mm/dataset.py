"""The mmpose dataset type of this plugin."""
from __future__ import annotations

from mmpose.datasets.datasets.base import BaseCocoStyleDataset
from mmpose.registry import DATASETS

from .schema import dataset_info


@DATASETS.register_module()
class AnimalCharacterFaceDataset(BaseCocoStyleDataset):
    """28-point face landmarks of anime and animal characters.

    The layout is anime_face_detector's; its metainfo (names, flip pairs, skeleton, colours) is
    :func:`animal_landmarks_mm.schema.dataset_info`, built from the one table of the schema, as
    mmpose's own datasets point ``METAINFO`` at their one metainfo definition. Annotation files
    are the COCO-style files that :mod:`animal_landmarks_mm.converter` writes: one ``face``
    category, 28 keypoints per face, a face box per annotation, ``file_name`` relative to the
    dataset root. Use ``data_mode='topdown'`` (one sample per face, cropped by its box), as
    every config of the plugin does: its models and :class:`~.metrics.LandmarkMetric` take one
    face per sample. ``'bottomup'`` (one sample per image, all its faces) loads, as for every
    :class:`BaseCocoStyleDataset`, but the metric refuses its samples of several faces.

    Args are those of :class:`mmpose.datasets.BaseCocoStyleDataset` (``ann_file``, ``data_root``,
    ``data_prefix``, ``data_mode``, ``pipeline``, ``test_mode``, ...).
    """

    METAINFO: dict = dataset_info()
