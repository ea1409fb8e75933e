"""The mmpose dataset type of this plugin."""
from __future__ import annotations

from pathlib import Path

from mmpose.datasets.datasets.base import BaseCocoStyleDataset
from mmpose.registry import DATASETS

#: The project's ``configs/`` folder, found from this package's location so that the metainfo
#: resolves whatever the working directory is (the package is installed editable by setup).
CONFIG_ROOT = Path(__file__).resolve().parent.parent / 'configs'
METAINFO_FILE = CONFIG_ROOT / '_base_' / 'datasets' / 'animal_character_face.py'


@DATASETS.register_module()
class AnimalCharacterFaceDataset(BaseCocoStyleDataset):
    """28-point face landmarks of anime and animal characters.

    The layout is anime_face_detector's (see :mod:`animal_landmarks_mm.schema`). Annotation files
    are the COCO-style files that :mod:`animal_landmarks_mm.converter` writes: one ``face``
    category, 28 keypoints per face, a face box per annotation, ``file_name`` relative to the
    dataset root. Both ``data_mode='topdown'`` (one sample per face, cropped by its box) and
    ``'bottomup'`` (one sample per image) work, as for every :class:`BaseCocoStyleDataset`.

    Args are those of :class:`mmpose.datasets.BaseCocoStyleDataset` (``ann_file``, ``data_root``,
    ``data_prefix``, ``data_mode``, ``pipeline``, ``test_mode``, ...).
    """

    METAINFO: dict = dict(from_file=str(METAINFO_FILE))
