"""The mmpose dataset type of this plugin, and the rules its COCO files must follow."""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from mmpose.datasets.datasets.base import BaseCocoStyleDataset
from mmpose.registry import DATASETS

from .annotation import WARP_MAX_SIDE, AnnotationError, read_regular_file
from .converter import MAX_IMAGE_SIDE, OUTSIDE_TOLERANCE, too_long_to_crop
from .errors import printable, shown_value
from .schema import ABSENT, NUM_KEYPOINTS, VISIBILITY_FLAGS, dataset_info


@DATASETS.register_module()
class AnimalCharacterFaceDataset(BaseCocoStyleDataset):
    """28-point face landmarks of anime and animal characters.

    The layout is anime_face_detector's; its metainfo (names, flip pairs, skeleton, colours) is
    :func:`animal_landmarks_mm.schema.dataset_info`, built from the one table of the schema, as
    mmpose's own datasets point ``METAINFO`` at their one metainfo definition. Annotation files
    are the COCO-style files that :mod:`animal_landmarks_mm.converter` writes: one ``face``
    category, 28 keypoints per face, a face box per annotation, ``file_name`` relative to the
    dataset root (:func:`check_coco` states what a file must hold). Use ``data_mode='topdown'``
    (one sample per face, cropped by its box), as every config of the plugin does: its models
    and :class:`~.metrics.LandmarkMetric` take one face per sample. ``'bottomup'`` (one sample
    per image, all its faces) loads, as for every :class:`BaseCocoStyleDataset`, but the metric
    refuses its samples of several faces.

    Args are those of :class:`mmpose.datasets.BaseCocoStyleDataset` (``ann_file``, ``data_root``,
    ``data_prefix``, ``data_mode``, ``pipeline``, ``test_mode``, ...).
    """

    METAINFO: dict = dataset_info()

    def _load_annotations(self):
        # every runner's dataset reads its file as data first (mim train, mmpose's own tools,
        # the inference API): tools/train.py's check (read_coco_file) ran in this project's
        # tools only, and mmpose trained a NaN box to NaN losses, exit status 0
        from mmengine.fileio import exists, get_local_path

        from .schedule import kept_faces
        if exists(self.ann_file):  # (else mmpose's own assertion names it)
            with get_local_path(self.ann_file) as local_path:  # as mmpose reads it
                coco = read_coco_file(local_path)
            faces = kept_faces(coco)
            if self.data_mode == 'topdown' and not faces:
                # mmengine then fails on the empty list ("need at least one array to
                # concatenate"), a traceback naming no file
                raise AnnotationError(f'{self.ann_file}: holds no face mmpose keeps (no '
                                      'annotations, or each is crowd, or has an empty box or '
                                      'no labelled point): nothing to train on or measure')
            check_croppable(coco, faces, self.ann_file)
        return super()._load_annotations()


#: The largest COCO file read (bytes): the converter writes under a kilobyte per face.
COCO_FILE_MAX_BYTES = 1 << 30

#: The deepest nesting of JSON arrays and objects taken in a COCO file, counting the file's own
#: object: a real file nests 5 deep (a polygon of an annotation's ``segmentation``:
#: file > "annotations" > annotation > polygons > polygon). mmpose deep-copies every
#: annotation, keys this module does not check included, two Python frames a level: a
#: ``segmentation`` 500 deep raised RecursionError while the dataset was built.
COCO_MAX_NESTING = 100

#: the largest coordinate, box or area value taken: mmpose loads them as float32, where a
#: larger one (1e308 is a finite float) becomes inf
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def read_coco_file(path: str | os.PathLike) -> dict:
    """A COCO keypoints file of this dataset, read and checked as data (:func:`check_coco`):
    training's pre-check and plan and ``tools/evaluate.py --ann-file`` read every COCO file
    here, before mmpose or a model meets it.

    Read as a file from outside: a regular file (a FIFO is never waited on, a device never
    read), of at most :data:`COCO_FILE_MAX_BYTES`, UTF-8 JSON nested at most
    :data:`COCO_MAX_NESTING` deep, in keys :func:`check_coco` does not look at too.

    Raises:
        AnnotationError: one line naming the file and, for a bad entry, the entry.
    """
    shown = os.fsdecode(path)
    try:
        raw = read_regular_file(path, COCO_FILE_MAX_BYTES)
    except AnnotationError:  # not a regular file, or too large: one line naming it
        raise
    except (OSError, ValueError) as e:  # ValueError: a NUL in the name
        raise AnnotationError(f'{shown}: cannot read ({e})') from None
    try:
        coco = json.loads(raw.decode('utf-8'))
    except RecursionError:
        raise AnnotationError(f'{shown}: cannot read (JSON nested too deeply)') from None
    except ValueError as e:  # not UTF-8, not JSON
        raise AnnotationError(f'{shown}: cannot read ({e})') from None
    deep = _nested_too_deeply(coco)
    if deep is not None:  # before mmpose deep-copies it (RecursionError): see COCO_MAX_NESTING
        raise AnnotationError(f'{shown}: JSON nested more than {COCO_MAX_NESTING} deep, in '
                              f'{deep} (a COCO file nests 5 deep)')
    try:
        check_coco(coco)
    except AnnotationError as e:
        raise AnnotationError(f'{shown}: {e}') from None
    return coco


def check_croppable(coco: dict, faces: list[dict], path: str | os.PathLike) -> None:
    """Refuse a checked COCO file (:func:`check_coco`) of which mmpose's runners would crop a
    face of a picture with a side of :data:`~.annotation.WARP_MAX_SIDE` or more: OpenCV's warp
    (``TopdownAffine``) refuses it, and training failed mid-run at that face. Evaluation, whose
    predictors crop such a picture, does not ask.

    Args:
        coco: the file.
        faces: the faces mmpose keeps of it (:func:`~.schedule.kept_faces`).
        path: the file, for the message.

    Raises:
        AnnotationError: naming the file and the image.
    """
    long_images = {image['id']: image for image in coco['images']
                   if max(image['width'], image['height']) >= WARP_MAX_SIDE}
    for face in faces if long_images else ():
        image = long_images.get(face['image_id'])
        if image is not None:
            raise AnnotationError(f'{os.fsdecode(path)}: image {image["id"]} '
                                  f'({shown_value(image["file_name"])}): '
                                  f'{too_long_to_crop((image["width"], image["height"]))}')


def check_coco(coco: Any) -> None:
    """Refuse a decoded COCO file that mmpose's ``BaseCocoStyleDataset`` (and the xtcocotools
    index under it) would fail on once the runner has started, or would train on wrongly.

    Each image needs a whole-number ``id`` of its own (mmpose takes it modulo its sample
    interval), a ``file_name`` and a positive whole ``width`` and ``height`` of at most
    :data:`~.converter.MAX_IMAGE_SIDE` (a larger one is no image's, and overflows a float where
    mmpose and :func:`~.schedule.kept_faces` clip a box to the image); each annotation a
    whole-number ``id`` of its own (xtcocotools indexes by it), an ``image_id`` naming an image
    of the file, a whole-number ``category_id``, 28 x 3 ``keypoints`` (mmpose's flip and
    heatmaps index all 28 points), each a finite x and y and a flag of
    :data:`~.schema.VISIBILITY_FLAGS` (mmpose weighs a point by ``min(1, v)``: a -1 would be a
    negative weight), each placed point on its image or off it by at most
    :data:`~.converter.OUTSIDE_TOLERANCE` of its side (the converter's bound), a ``bbox`` of 4
    finite numbers and, when it has them, a finite ``area``, a ``num_keypoints`` that is 0 only
    for a face of no labelled point, and an ``iscrowd`` of 0 or 1 (mmpose keeps a face by these
    two whatever its points).
    Finite means finite in float32, as mmpose loads them: a NaN box is kept by mmpose and trains
    on NaN targets at full weight. Well-formed faces mmpose leaves out on its own (crowd faces,
    empty boxes, faces without labelled points) are not refused here; training counts them out
    (:func:`~.schedule.training_faces`). An annotation without a box, or of an image the file
    does not list, is refused although mmpose would skip it: the converter never writes one,
    so the file was made or edited elsewhere, and the face it meant would be lost unseen.

    Raises:
        AnnotationError: one line naming the entry (``image 3``, ``annotation 7``, or its place
            ``annotations[2]`` before its id is known), without the file name.
    """
    if not isinstance(coco, dict) or not all(
            isinstance(coco.get(key), list) for key in ('images', 'annotations')):
        raise AnnotationError('not a COCO keypoints file (an object with "images" and '
                              '"annotations" lists)')
    categories = coco.get('categories', [])
    if not isinstance(categories, list) or not all(
            isinstance(category, dict) and _is_whole(category.get('id'))
            for category in categories):
        raise AnnotationError(f'"categories" must be a list of objects with a whole-number '
                              f'"id": {shown_value(categories)}')
    images = _checked_ids(coco['images'], 'image')
    for image_id, image in images.items():
        file_name = image.get('file_name')
        if not isinstance(file_name, str) or not file_name:
            raise _refusal(f'image {image_id}', image, 'file_name', 'a file name')
        for key in ('width', 'height'):
            if not (_is_whole(image.get(key)) and image[key] > 0):
                raise _refusal(f'image {image_id} ({shown_value(file_name)})', image, key,
                               'a positive whole number')
            # the converter's limit (tools/evaluate.py refuses by it too): a side no float
            # holds (10**400) would raise OverflowError where the box is clipped to the image
            if image[key] > MAX_IMAGE_SIDE:  # not shown: it may have hundreds of digits
                raise AnnotationError(f'image {image_id} ({shown_value(file_name)}): "{key}" '
                                      f'is too large: no image has a side over '
                                      f'{MAX_IMAGE_SIDE} pixels')
    for ann_id, ann in _checked_ids(coco['annotations'], 'annotation').items():
        _check_coco_annotation(ann, f'annotation {ann_id}', images)


def _check_coco_annotation(ann: dict, where: str, images: dict[int, dict]) -> None:
    """:func:`check_coco` for one annotation, named ``where``."""
    image_id = ann.get('image_id')
    if not (_is_whole(image_id) and image_id in images):
        raise _refusal(where, ann, 'image_id', 'the id of an image of the file')
    if not _is_whole(ann.get('category_id')):
        raise _refusal(where, ann, 'category_id', 'a whole number')
    keypoints = ann.get('keypoints')
    if not isinstance(keypoints, list) or len(keypoints) != 3 * NUM_KEYPOINTS:
        rule = (f'{3 * NUM_KEYPOINTS} numbers (x, y, v of each of the {NUM_KEYPOINTS} '
                'points)')
        if isinstance(keypoints, list):
            raise AnnotationError(f'{where}: "keypoints" must be {rule}, got '
                                  f'{len(keypoints)}')
        raise _refusal(where, ann, 'keypoints', rule)
    for k, value in enumerate(keypoints):
        point, what = divmod(k, 3)
        if not _is_finite(value):
            raise AnnotationError(f'{where}: point {point} {"xyv"[what]} is not a finite number '
                                  f'(in float32, as mmpose reads it): {shown_value(value)}')
        if what == 2 and value not in VISIBILITY_FLAGS:  # 2.0 is the flag 2, as mmpose takes it
            flags = ', '.join(f'{flag} ({name})' for flag, name in VISIBILITY_FLAGS.items())
            raise AnnotationError(f'{where}: point {point} visibility must be one of {flags}, '
                                  f'got {shown_value(value)}')
    bbox = ann.get('bbox')
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_finite, bbox)):
        raise _refusal(where, ann, 'bbox', '4 finite numbers [x, y, width, height]')
    if 'area' in ann and not _is_finite(ann['area']):
        raise _refusal(where, ann, 'area', 'a finite number')
    # mmpose keeps a face by these two, whatever its points: a "num_keypoints" of 0 (or an
    # "iscrowd" of "no") dropped a face of 28 placed points from training and validation unseen
    # (a count off by some, from a file edited by hand, changes nothing mmpose does)
    labelled = sum(1 for v in keypoints[2::3] if v != ABSENT)
    count = ann.get('num_keypoints', labelled)
    if not (_is_finite(count) and (count == 0) == (labelled == 0)):
        raise _refusal(where, ann, 'num_keypoints',
                       f'the number of its labelled points ({labelled}, v > 0)')
    if ann.get('iscrowd', 0) not in (0, 1):  # (False and True are 0 and 1)
        raise _refusal(where, ann, 'iscrowd', '0 or 1')
    # the converter's bound on a placed point: an eye corner at x = 1e6 made the inter-ocular
    # distance, and so the face's NME, a millionth of what it was (a failed face scored good)
    image = images[image_id]
    width, height = image['width'], image['height']
    margin_x, margin_y = OUTSIDE_TOLERANCE * width, OUTSIDE_TOLERANCE * height
    for point in range(NUM_KEYPOINTS):
        x, y, v = keypoints[3 * point:3 * point + 3]
        if v != ABSENT and not (-margin_x <= x <= width + margin_x
                                and -margin_y <= y <= height + margin_y):
            raise AnnotationError(f'{where}: point {point} ({x:g}, {y:g}) is far outside its '
                                  f'{width}x{height} image')


def _nested_too_deeply(coco: Any) -> str | None:
    """Where a decoded JSON file nests arrays and objects more than :data:`COCO_MAX_NESTING`
    deep, as a place in the file (``annotations[3] "segmentation"``: named down to the key of
    an entry), or None."""
    if not _deeper_than(coco, COCO_MAX_NESTING):
        return None
    # the entry found again one level down at a time, each step deeper than the levels left
    # (so never short of an entry below, for 3 steps)
    place, value, left = '', coco, COCO_MAX_NESTING
    for _ in range(3):
        items = value.items() if type(value) is dict else enumerate(value)
        key, value = next((key, item) for key, item in items if _deeper_than(item, left - 1))
        left -= 1
        if isinstance(key, int):
            place += f'[{key}]'
        else:
            name = printable(key, one_line=True, limit=40)
            place += f' "{name}"' if place else name
    return place


def _deeper_than(value: Any, levels: int) -> bool:
    """Whether a decoded JSON value nests arrays and objects more than ``levels`` deep (it
    counts as one when it is one).

    Walked level by level, without recursion (the nesting is the file's): each array and
    object is met once, one holding none (keypoints, a polygon) passed over by a test of its
    items' types run in C, and nothing is built per item but the list of the next level, so
    that a file of tens of megabytes takes a fraction of the time its decoding takes.
    """
    containers = {dict, list}  # json.loads makes no subclass of them
    level = [value] if type(value) in containers else []
    for _ in range(levels):
        deeper = []
        for container in level:
            items = container.values() if type(container) is dict else container
            if not containers.isdisjoint(map(type, items)):
                deeper += [item for item in items if type(item) in containers]
        if not deeper:
            return False
        level = deeper
    return True


def _checked_ids(entries: list, kind: str) -> dict[int, dict]:
    """The images or annotations of a COCO file by their ids, each an object with a
    whole-number id no other entry of its list has.

    Raises:
        AnnotationError: naming the entry by its place (``images[3]``).
    """
    by_id: dict[int, dict] = {}
    for i, entry in enumerate(entries):
        where = f'{kind}s[{i}]'
        if not isinstance(entry, dict):
            raise AnnotationError(f'{where} is not an object: {shown_value(entry)}')
        entry_id = entry.get('id')
        if not _is_whole(entry_id):
            raise _refusal(where, entry, 'id', 'a whole number')
        if entry_id in by_id:
            raise AnnotationError(f'{where}: "id" {entry_id} is that of another {kind} too')
        by_id[entry_id] = entry
    return by_id


def _refusal(where: str, entry: dict, key: str, rule: str) -> AnnotationError:
    """The error for a key of an entry that breaks its rule: ``annotation 7: no "bbox" (4
    finite numbers ...)``, or ``annotation 7: "bbox" must be 4 finite numbers ..., got
    [1, 2, nan, 4]``."""
    if key not in entry:
        return AnnotationError(f'{where}: no "{key}" ({rule})')
    return AnnotationError(f'{where}: "{key}" must be {rule}, got {shown_value(entry[key])}')


def _is_whole(value: Any) -> bool:
    """An int of JSON (not a bool, which Python counts as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    """A number finite in float32 (NaN compares false; an int of hundreds of digits is
    compared, never converted)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and -_FLOAT32_MAX <= value <= _FLOAT32_MAX)

