"""Annotation folders -> validated records -> train/val/test splits -> COCO-style files.

Three parts, each usable alone:

- :class:`AnnotationReader`: a folder of annotation files -> validated :class:`Record` s (each
  checked against its image) and the reasons the other files were left out. Evaluation and
  training read annotation folders through it too;
- :func:`split_records`: a pure, seeded split;
- :func:`coco_dict` / :func:`write_coco`: records -> a COCO keypoints file for
  :class:`~animal_landmarks_mm.dataset.AnimalCharacterFaceDataset`.

:func:`convert` puts them together for ``tools/dataset.py``. Output layout (``output_dir``)::

    annotations/train.json  annotations/val.json  annotations/test.json   (COCO keypoints)
    train.txt  val.txt  test.txt      (the annotation files of each split, one per line,
                                       relative to their annotation folder)
    splits.json                       (the split record: seed, ratios, the split of every
                                       annotation file, its picture's SHA-256 and the size
                                       and modification time it had, and the split of the
                                       pictures no file shows now and of the validation
                                       folder's; see :class:`SplitRecord`)

A later conversion into the same ``output_dir`` keeps every file in the split the record gives
it (found by its picture when moved or renamed), so that a model fine-tuned on more
annotations is never validated on pictures an earlier round trained on; another seed or other
ratios are refused unless the split is made afresh on purpose (``reshuffle``). The outputs
and the record are replaced as one set (:func:`replace_as_one_set`): a conversion that fails
to write one leaves the earlier set as it was; one killed while they are moved into place
leaves the new record, which the next conversion follows.

``file_name`` in the COCO files is the image path relative to ``output_dir`` (links not
resolved), so a config needs only ``data_root=output_dir`` and ``data_prefix=dict(img='')``
whatever folder the images are in.
Inputs are never modified, and no output is ever written where an input is read.
"""
from __future__ import annotations

import json
import math
import os
import random
import stat
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from .annotation import (
    STATUS_PREDICTED,
    STATUS_SKIPPED,
    WARP_MAX_SIDE,
    AnnotationError,
    Face,
    ImageAnnotation,
    NotRegularFileError,
    check_face_count,
    file_choice_key,
    file_sha256,
    image_key,
    image_size,
    is_annotation_name,
    is_hidden,
    is_models_prediction,
    is_sha256_hex,
    is_utf8_name,
    json_bytes,
    lies_in_folder,
    load_annotation,
    move_into_place,
    read_image,
    read_regular_file,
    read_sidecar,
    recorded_image_sha256,
    remove_stale_temporaries,
    unholdable_name,
    write_bytes_atomic,
    write_temporary,
)
from .errors import AnimalLandmarksError, printable, shown_value
from .schema import ABSENT, KEYPOINT_NAMES, SKELETON

SPLITS = ('train', 'val', 'test')

#: A face box made from the points is their bounding box grown by this share of its width
#: (height) on the left and right (top and bottom), then clipped to the image.
BOX_MARGIN = 0.1

#: A point may lie outside the image (a face cut by the border, an occluded point placed by
#: estimate) by at most this share of the image's width (height).
OUTSIDE_TOLERANCE = 0.1

#: An annotated face box must hold at least half of the face's placed points once grown by this
#: share of its width (height) on each side: generous, for contour points a tight box cuts off,
#: but an ``[x, y, w, h]`` box typed as corners holds few of them.
BOX_POINTS_MARGIN = 0.25

#: No image format the tools read stores a side longer than this (PNG's limit; JPEG's is 65535).
MAX_IMAGE_SIDE = 2**31 - 1

#: A PNG's IEND chunk or a JPEG's end-of-image marker must lie within this many bytes of the
#: file's end: some writers and uploads pad a file, or append a little after it.
IMAGE_END_WINDOW = 4096

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_END = b'\x00\x00\x00\x00IEND\xaeB`\x82'  # the IEND chunk: no data, its fixed CRC
_JPEG_START, _JPEG_END = b'\xff\xd8', b'\xff\xd9'
#: A BMP's file header (14 bytes) and the common part of its info header (40 bytes).
_BMP_HEAD = 54
#: BMP compressions storing the pixel rows whole (BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS);
#: OS/2's 64-byte info header gives 3 another meaning (Huffman 1D).
_BMP_ROWS, _BMP_OS2_HEADER = (0, 3, 6), 64

#: The validation share of the annotation folder unless given (0 with a validation folder).
DEFAULT_VAL_RATIO = 0.2


#: The split record's file name in the output folder, and its format marker and version.
SPLIT_RECORD = 'splits.json'
SPLIT_RECORD_FORMAT = 'animal_landmarks_mm.splits'
SPLIT_RECORD_VERSION = 1
#: What the error of a split record or list that cannot be followed says of --reshuffle.
_MAY_CHANGE_SPLIT = '(files of earlier conversions may then change split)'

#: An image changed this recently before its stamp was taken may change again within its file
#: system's timestamp resolution (2 s on FAT) without its modification time changing: its
#: digest is not reused on the next run (:meth:`ImageStamp.trusted`).
RECENT_CHANGE_NS = 2 * 10**9


class ConversionError(AnimalLandmarksError, ValueError):
    """The conversion cannot go on (bad ratios, an empty split, a problem under --strict)."""


# geometry -----------------------------------------------------------------------------------

def face_box(face: Face, width: int, height: int,
             margin: float = BOX_MARGIN) -> tuple[float, float, float, float]:
    """The face's box ``(x, y, w, h)``, clipped to the image as mmpose clips it: its own box if
    annotated, else the extent of its points grown by ``margin``."""
    if face.bbox is not None:
        x0, y0, x1, y1 = face.bbox
    else:
        xs = [p[0] for p in face.placed_points()]
        ys = [p[1] for p in face.placed_points()]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
        x0, x1, y0, y1 = x0 - dx, x1 + dx, y0 - dy, y1 + dy
    # clipped as mmpose's COCO-style datasets clip a loaded box (to [0, size - 1]), so that
    # tools/evaluate.py crops a face exactly as training and tools/test.py do
    x0, x1 = (min(max(0.0, v), width - 1.0) for v in (x0, x1))
    y0, y1 = (min(max(0.0, v), height - 1.0) for v in (y0, y1))
    return (x0, y0, x1 - x0, y1 - y0)


def face_box_xyxy(face: Face, width: int, height: int) -> tuple[float, float, float, float]:
    """:func:`face_box` as corners ``(x0, y0, x1, y1)``, the form inference takes."""
    x, y, w, h = face_box(face, width, height)
    return (x, y, x + w, y + h)


def coco_keypoints(face: Face) -> tuple[list[float], int]:
    """The 84 COCO keypoint numbers ``x, y, v`` of a face and how many points are labelled.

    ``v`` keeps the annotation's visibility flags (:data:`~.schema.VISIBILITY_FLAGS`); an
    absent point is ``0, 0, 0``.
    """
    values: list[float] = []
    for point, vis in zip(face.landmarks, face.visibility):
        if vis == ABSENT or point is None:
            values += [0.0, 0.0, ABSENT]
        else:
            values += [point[0], point[1], int(vis)]
    return values, sum(1 for v in face.visibility if v != ABSENT)


def coco_categories() -> list[dict]:
    """The single ``face`` category with its keypoint names and skeleton (1-based, as COCO)."""
    return [dict(id=1, name='face', supercategory='face', keypoints=list(KEYPOINT_NAMES),
                 skeleton=[[a + 1, b + 1] for a, b in SKELETON])]


# reading ------------------------------------------------------------------------------------

@dataclass
class Record:
    """A usable annotation file: where it is and what it says."""

    ann_path: Path
    ann_dir: Path
    image_path: Path | None  # None when the folder is read without its images
    annotation: ImageAnnotation

    # cached: a conversion asks for them many times per file, and recomputing them was a
    # fifth of a rerun's time
    @cached_property
    def name(self) -> str:
        """The file relative to its annotation folder, as the split listings give it."""
        return self.ann_path.relative_to(self.ann_dir).as_posix()

    @cached_property
    def picture(self) -> Path:
        """What :class:`ClaimedImages` knows its picture by: the image's real path (links
        resolved), or its ``image`` name when read without images."""
        if self.image_path is None:
            return Path(self.annotation.image)
        return self.image_path.resolve()


@dataclass
class FolderContents:
    """What :meth:`AnnotationReader.read` found in a folder.

    Attributes:
        records: the usable files, sorted by path.
        problems: one line per file left out for a defect (naming the file and the reason).
        skipped: files the annotator marked ``skipped`` (no usable face): left out quietly.
        predicted: files of unreviewed model predictions, left out unless asked for.
        files: every annotation file read, usable or not.
        sidecars: the crawler's metadata sidecars found among them, not read as annotations.
        changed_pictures: one line per file kept whose picture has other bytes than those its
            points were placed on (:func:`changed_pictures`).
    """

    records: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    sidecars: list[Path] = field(default_factory=list)
    changed_pictures: list[str] = field(default_factory=list)

    def extend(self, other: FolderContents) -> None:
        self.records += other.records
        self.problems += other.problems
        self.skipped += other.skipped
        self.predicted += other.predicted
        self.files += other.files
        self.sidecars += other.sidecars
        self.changed_pictures += other.changed_pictures


def is_crawler_sidecar(path: Path) -> bool:
    """Whether a ``.json`` file is the crawler's metadata sidecar of an image: named after the
    image plus ``.json`` (``x.png.json``, ``x.gif.json``: whatever the crawler saved) and
    marked as the crawler's (:func:`~.annotation.read_sidecar`). Only files so named are
    opened, so
    most annotation files (``x.json``) cost nothing here; one that cannot be read, or is no
    regular file (a FIFO would block the reading), is no sidecar (the reader then says what
    is wrong with it)."""
    return bool(Path(path.stem).suffix) and read_sidecar(path) is not None


def scan_annotation_folder(ann_dir: Path, exclude: Iterable[Path] = ()
                           ) -> tuple[list[Path], list[Path]]:
    """The annotation files under ``ann_dir`` (``*.json`` in any case:
    :func:`~.annotation.is_annotation_name`) and the crawler sidecars found beside them.

    Hidden files and folders (the tools' own: drafts, temporary files) are left out, and so
    are the folders of ``exclude`` (a validation folder inside the annotation folder is read
    on its own). Linked subfolders are followed, each real folder once, under its first name
    (folders are walked in name order), so that a link back up the tree ends the walk. Both
    lists are sorted by relative path, so the order never depends on the file system. A
    ``*.json`` that is no regular file (a FIFO, a device) is listed with the files, unread:
    the reader says what it is.

    Raises:
        ConversionError: the folder does not exist.
    """
    if not ann_dir.is_dir():
        raise ConversionError(f'annotation folder not found: {ann_dir}')
    root = ann_dir.resolve()
    # a folder holding the annotation folder would exclude all of it (convert refuses that)
    excluded = [folder for folder in (Path(f).resolve() for f in exclude)
                if not root.is_relative_to(folder)]
    visited = {_folder_identity(ann_dir)}
    files, sidecars = [], []
    for folder, subfolders, names in os.walk(ann_dir, followlinks=True):
        kept = []  # pruned in place: os.walk enters only these
        for name in sorted(subfolders):
            subfolder = os.path.join(folder, name)
            if is_hidden(name) or any(lies_in_folder(subfolder, f) for f in excluded):
                continue
            identity = _folder_identity(subfolder)
            if identity is not None and identity not in visited:
                visited.add(identity)
                kept.append(name)
        subfolders[:] = kept
        for name in names:
            if is_annotation_name(name):
                path = Path(folder, name)
                (sidecars if is_crawler_sidecar(path) else files).append(path)
    return (sorted(files, key=lambda p: p.relative_to(ann_dir).as_posix()),
            sorted(sidecars, key=lambda p: p.relative_to(ann_dir).as_posix()))


def _folder_identity(folder: str | os.PathLike) -> tuple[int, int] | None:
    """A folder's device and inode, links followed (None if it cannot be read): one real
    folder under several names has one."""
    try:
        stat = os.stat(folder)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def list_annotation_files(ann_dir: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """All ``*.json`` under ``ann_dir`` but the crawler's sidecars, leaving out hidden files
    and folders and those of ``exclude``, sorted by relative path
    (:func:`scan_annotation_folder`).

    Raises:
        ConversionError: the folder does not exist.
    """
    return scan_annotation_folder(ann_dir, exclude)[0]


def too_long_to_crop(size: tuple[int, int]) -> str:
    """Why a picture of ``size`` cannot be trained on: a side OpenCV's warp refuses."""
    return (f'the image is {size[0]}x{size[1]}, a side of {WARP_MAX_SIDE:,} pixels or more, '
            'which OpenCV\'s warp (training\'s crop of each face) refuses: cut it into parts '
            'to train on it (inference takes it as it is)')


def _croppable_only(records: list[Record], problems: list[str]) -> list[Record]:
    """The records of pictures training can crop; each other one left out with a line
    (:func:`too_long_to_crop`): training failed mid-run at its first face."""
    kept = []
    for record in records:
        size = (record.annotation.width, record.annotation.height)
        if max(size) >= WARP_MAX_SIDE:
            problems.append(f'{record.ann_path}: {too_long_to_crop(size)}')
        else:
            kept.append(record)
    return kept


def check_image_size(ann: ImageAnnotation) -> None:
    """Refuse an ``image_size`` no image has (the geometry's floats could not even hold it).

    Raises:
        AnnotationError: one line, without the file name (callers add it).
    """
    for what, side in (('width', ann.width), ('height', ann.height)):
        if side > MAX_IMAGE_SIDE:  # not shown: it may have hundreds of digits
            raise AnnotationError(f'image_size {what} is too large: no image has a side over '
                                  f'{MAX_IMAGE_SIDE} pixels')


def check_face_geometry(ann: ImageAnnotation, derived_boxes: bool = False) -> None:
    """Refuse points far outside the image, boxes with nothing inside it, and boxes that miss
    most of their face's points.

    Args:
        ann: the annotation.
        derived_boxes: the boxes were made from the points, not annotated (a COCO file's:
            :func:`face_box`, cut to the image, misses points just off it), so they are not
            checked for holding them.

    Raises:
        AnnotationError: one line, without the file name (callers add it).
    """
    check_image_size(ann)
    tol_x, tol_y = OUTSIDE_TOLERANCE * ann.width, OUTSIDE_TOLERANCE * ann.height
    for f, face in enumerate(ann.faces):
        for i, (p, vis) in enumerate(zip(face.landmarks, face.visibility)):
            if vis == ABSENT or p is None:  # coordinates left over from before it was marked
                continue  # absent are never used (COCO has 0, 0, 0)
            if not (-tol_x <= p[0] <= ann.width + tol_x and -tol_y <= p[1] <= ann.height + tol_y):
                raise AnnotationError(
                    f'face {f} point {i} ({p[0]:g}, {p[1]:g}) is far outside the '
                    f'{ann.width}x{ann.height} image')
        _, _, w, h = face_box(face, ann.width, ann.height)
        if w <= 0 or h <= 0:
            where = 'bbox' if face.bbox is not None else 'box of its points'
            raise AnnotationError(
                f'face {f} {where} has no area inside the {ann.width}x{ann.height} image')
        if face.bbox is not None and not derived_boxes:
            check_box_holds_points(face, f)


def check_box_holds_points(face: Face, index: int) -> None:
    """Refuse an annotated box that holds fewer than half of its face's placed points, even
    grown by :data:`BOX_POINTS_MARGIN` on each side: the box is of something else (an
    ``[x, y, w, h]`` box typed as corners, another face's box).

    Raises:
        AnnotationError: one line naming the face, without the file name (callers add it).
    """
    x0, y0, x1, y1 = face.bbox
    dx, dy = BOX_POINTS_MARGIN * (x1 - x0), BOX_POINTS_MARGIN * (y1 - y0)
    placed = face.placed_points()
    inside = sum(1 for x, y in placed if x0 - dx <= x <= x1 + dx and y0 - dy <= y <= y1 + dy)
    if 2 * inside < len(placed):
        raise AnnotationError(
            f'face {index} bbox [{x0:g}, {y0:g}, {x1:g}, {y1:g}] holds only {inside} of its '
            f'{len(placed)} placed points; a bbox is [x0, y0, x1, y1] corners around the face '
            '(not [x, y, width, height])')


#: Two faces whose every point placed in both lies within this share of the face's size (the
#: larger side of its points' extent) of the other's are one face: a pasted copy nudged by a
#: drag. Two characters' faces never coincide so closely at every point (2% of a 300 px face is
#: 6 px).
SAME_FACE_SHARE = 0.02
#: At most this many points placed in one of two faces only still leave them comparable (a
#: pasted copy with a point or two marked absent, or placed, since), when they place more
#: points both than one only.
SAME_FACE_UNSHARED_POINTS = 2


def check_distinct_faces(ann: ImageAnnotation) -> None:
    """Refuse a face annotated twice, which would train as two faces: every point both faces
    place within :data:`SAME_FACE_SHARE` of the face's size of the other's (a pasted copy,
    maybe moved a little), when at most :data:`SAME_FACE_UNSHARED_POINTS` points are placed
    in one of them only and more are placed in both (a point of the copy marked absent since).

    Each face is compared with all the faces before it at once: the
    :data:`~.annotation.ANNOTATION_MAX_FACES` a file may hold take a fraction of a second
    (a loop over every pair took seconds for a thousand faces). More faces are refused
    unchecked: the annotator's page is checked here, not read from a file.

    Raises:
        AnnotationError: one line naming both faces, or more faces than
            :data:`~.annotation.ANNOTATION_MAX_FACES`; without the file name (callers add it).
    """
    import numpy as np
    check_face_count(len(ann.faces))
    if len(ann.faces) < 2:
        return
    placed = np.array([[p is not None and v != ABSENT
                        for p, v in zip(face.landmarks, face.visibility)] for face in ann.faces])
    points = np.array([[p if p is not None and v != ABSENT else (0.0, 0.0)
                        for p, v in zip(face.landmarks, face.visibility)] for face in ann.faces],
                      dtype=np.float64)
    # the larger side of each face's placed points' extent (0 where none is placed)
    low = np.where(placed[..., None], points, np.inf).min(axis=1)
    high = np.where(placed[..., None], points, -np.inf).max(axis=1)
    sizes = np.where(placed.any(axis=1), (high - low).max(axis=1), 0.0)
    for f in range(1, len(ann.faces)):
        unshared = np.count_nonzero(placed[:f] != placed[f], axis=1)
        comparable = np.flatnonzero(
            (unshared <= SAME_FACE_UNSHARED_POINTS)
            & (np.count_nonzero(placed[:f] & placed[f], axis=1) > unshared))
        if not comparable.size:
            continue
        # the largest distance along x or y of a point placed in both faces
        apart = np.abs(points[comparable] - points[f])
        apart[~(placed[comparable] & placed[f])] = 0.0
        apart = apart.max(axis=(1, 2))
        same = np.flatnonzero(apart <= SAME_FACE_SHARE * sizes[f])
        if not same.size:
            continue
        k = same[0]  # the earliest twin, as comparing pair by pair found
        first, distance = int(comparable[k]), float(apart[k])
        unshared_points = int(unshared[first])
        how = ('identical points' if distance == 0
               else f'no point more than {distance:.2g} px from its twin')
        if unshared_points:
            how += f', {unshared_points} placed in one only'
        raise AnnotationError(f'faces {first} and {f} are the same face ({how}): delete one')


def check_usable(ann: ImageAnnotation, derived_boxes: bool = False) -> None:
    """The rules an annotation must pass to be trained on, beyond its file's own validity
    (:func:`~.annotation.parse_annotation`): an annotated image has a face, its size is one an
    image can have, every face's points and box lie on its image and its box around its
    points (:func:`check_face_geometry`), and no face is there twice
    (:func:`check_distinct_faces`). One rule for the annotator, which never calls such an
    image done, and the reader, which leaves such a file out.

    Args:
        ann: the annotation.
        derived_boxes: as :func:`check_face_geometry`'s (a COCO file's boxes).

    Raises:
        AnnotationError: one line, without the file name (callers add it).
    """
    if ann.status == STATUS_SKIPPED:
        return
    if not ann.faces:
        raise AnnotationError('no faces annotated')
    check_face_geometry(ann, derived_boxes)
    check_distinct_faces(ann)


def _bmp_length(head: bytes) -> int | None:
    """The length a BMP's header gives it (``head``: its first :data:`_BMP_HEAD` bytes), or
    None where it does not tell (a header or bit depth of another kind).

    Uncompressed: the pixel data's offset plus its rows, each padded to 4 bytes (a negative
    height: stored top-down); OpenCV fails to decode a file even one byte shorter. Compressed
    (RLE, an embedded JPEG or PNG): the offset plus the info header's data size, which a writer
    may leave 0 (then only the offset). The file header's size is never used: writers may
    leave it 0 too.
    """
    offset = int.from_bytes(head[10:14], 'little')
    header = int.from_bytes(head[14:18], 'little')
    if header == 12 and len(head) >= 26:  # OS/2 1.x: 16-bit sides, no compression
        width, height = (int.from_bytes(head[i:i + 2], 'little') for i in (18, 20))
        bits, compression, data_size = int.from_bytes(head[24:26], 'little'), 0, 0
    elif header >= 40 and len(head) >= _BMP_HEAD:
        width = int.from_bytes(head[18:22], 'little', signed=True)
        height = int.from_bytes(head[22:26], 'little', signed=True)
        bits = int.from_bytes(head[28:30], 'little')
        compression = int.from_bytes(head[30:34], 'little')
        data_size = int.from_bytes(head[34:38], 'little')
    else:
        return None
    if compression not in _BMP_ROWS or (compression != 0 and header == _BMP_OS2_HEADER):
        return offset + data_size
    if bits not in (1, 2, 4, 8, 16, 24, 32) or width <= 0:
        return None
    return offset + (width * bits + 31) // 32 * 4 * abs(height)


def check_image_complete(path: Path) -> None:
    """Refuse an image cut short (an interrupted download or copy): its header reads, but
    decoding it for training fails. Nothing is decoded, one small read at the end: a PNG ends
    with its IEND chunk, a JPEG with its end-of-image marker (each within
    :data:`IMAGE_END_WINDOW` bytes of the end, for padding), a WebP is at least as long as its
    RIFF header says, a BMP as its header makes it (:func:`_bmp_length`). A BMP, rare here and
    cheap to decode, is decoded too, as training decodes it (OpenCV): OpenCV cannot decode
    every BMP that is whole (16 bits a pixel under a V4 or V5 header, GIMP's "R5 G6 B5").

    Raises:
        AnnotationError: one line naming the image, without the annotation file (callers add
            it).
    """
    try:
        with open(path, 'rb') as f:
            head = f.read(_BMP_HEAD)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - IMAGE_END_WINDOW))
            tail = f.read()
    except OSError as e:
        raise AnnotationError(f'image unreadable: {e}') from None
    riff_size = 8 + int.from_bytes(head[4:8], 'little')  # a WebP's, with its 8-byte header
    if head.startswith(_PNG_SIGNATURE) and _PNG_END not in tail:
        why = 'ends without its IEND chunk'
    elif head.startswith(_JPEG_START) and _JPEG_END not in tail:
        # a whole JPEG with more than the window appended (a phone's motion photo carries
        # its video there) fails this cheap check too: the message says both
        raise AnnotationError(
            f'image {path.name} ends without a JPEG end marker (FF D9) in its last '
            f'{IMAGE_END_WINDOW // 1024} KB: cut short, or data appended after the picture, '
            "such as a motion photo's video: re-save it as a plain JPEG")
    elif head[:4] == b'RIFF' and head[8:12] == b'WEBP' and size < riff_size:
        why = f'is {size} bytes, its RIFF header says {riff_size}'
    elif head[:2] == b'BM' and size < (bmp_length := _bmp_length(head) or 0):
        why = f'is {size} bytes, its BMP header says {bmp_length}'
    elif head[:2] == b'BM':
        try:
            read_image(path)
        except AnnotationError:
            raise AnnotationError(f'image {path.name} is a BMP OpenCV cannot decode, as '
                                  'training reads it: re-save it as PNG') from None
        return
    else:
        return
    raise AnnotationError(f'image truncated: {path.name} {why} (an interrupted download or '
                          'copy?)')


class ClaimedImages:
    """The images annotation files have claimed so far, so that each picture is used once.

    An image is the same picture as one claimed before when it is the same path (resolved),
    the same file under another name (a hard link: the same device and inode) or a copy with
    identical bytes. Bytes are hashed only when two images have the same size (or when
    :meth:`digest` is asked), once per image, and never for an image whose digest is known
    (:meth:`add_digest`), so a folder of distinct pictures costs one ``stat`` per image.
    """

    def __init__(self) -> None:
        self._annotation_of: dict[Path, Path] = {}  # claimed image -> its annotation file
        self._by_inode: dict[tuple[int, int], Path] = {}
        self._unhashed: dict[int, list[Path]] = {}  # byte size -> claimed images not hashed
        self._by_digest: dict[str, Path] = {}
        self._digests: dict[Path, str] = {}  # image -> the SHA-256 of its bytes

    def annotation_of(self, image: Path) -> Path:
        """The annotation file that claimed ``image``."""
        return self._annotation_of[image]

    def digest(self, image: Path) -> str:
        """The SHA-256 of an image's bytes (hex), hashed once however often asked.

        Raises:
            OSError: the image cannot be read.
        """
        digest = self._digests.get(image)
        if digest is None:
            digest = self._digests[image] = file_sha256(image)
        return digest

    def add_digest(self, image: Path, digest: str) -> None:
        """Take ``digest`` as the SHA-256 of ``image`` (resolved) without reading it: one the
        split record holds for the image unchanged since (:func:`image_digests`)."""
        self._digests[image] = digest

    def keep_unique(self, records: Iterable[Record], problems: list[str]) -> list[Record]:
        """The records whose picture no record before them annotates (claiming it), in their
        order; a line in ``problems`` for each other, naming the file that keeps the picture,
        and for an image that cannot be read."""
        kept = []
        for record in records:
            image, path = record.picture, record.ann_path
            try:
                same = self.claim(image, path, by_content=record.image_path is not None)
            except OSError as e:
                problems.append(f'{path}: image unreadable: {e}')
                continue
            if same == image:
                problems.append(
                    f'{path}: names the image {record.annotation.image!r} that '
                    f'{self.annotation_of(same)} already annotates; one annotation per image '
                    'kept')
            elif same is not None:
                problems.append(
                    f'{path}: image {record.annotation.image!r} is the same picture as {same} '
                    f'(identical content), which {self.annotation_of(same)} already '
                    'annotates; one annotation per picture kept')
            else:
                kept.append(record)
        return kept

    def claim(self, image: Path, annotation: Path, *, by_content: bool = True) -> Path | None:
        """Claim ``image`` for ``annotation``: None when it is a new picture (now claimed),
        else the image claimed before that is the same picture (and nothing is claimed).

        Args:
            image: the image's resolved path (or its name, when ``by_content`` is False).
            annotation: the annotation file that names it.
            by_content: compare the file itself too (False when there is no image to read).

        Raises:
            OSError: the image (or an earlier one of the same size) cannot be read.
        """
        if image in self._annotation_of:
            return image
        if by_content:
            stat = image.stat()
            inode = (stat.st_dev, stat.st_ino)
            same = self._by_inode.get(inode) or self._same_bytes(image, stat.st_size)
            if same is not None:
                return same
            self._by_inode[inode] = image
        self._annotation_of[image] = annotation
        return None

    def _same_bytes(self, image: Path, size: int) -> Path | None:
        pending = self._unhashed.get(size)
        if pending is None:  # the first of its size: nothing to compare, nothing to hash
            self._unhashed[size] = [image]
            return None
        for other in pending:
            self._by_digest.setdefault(self.digest(other), other)
        pending.clear()
        digest = self.digest(image)
        same = self._by_digest.get(digest)
        if same is None:
            self._by_digest[digest] = image
        return same


class AnnotationReader:
    """Read annotation folders into validated records.

    Each file is parsed (:func:`~.annotation.load_annotation`) and checked against its image:
    the image exists inside ``image_dir`` (a link there to a picture elsewhere is inside) and
    is readable and whole, its size (from the header) equals ``image_size``, points lie on or
    near the image, every face box has an area inside it and holds its face's points, and no
    face is there twice. A file that fails is left out with a one-line reason; so is anything
    named ``*.json`` that is no regular file (never opened: a FIFO would block), and a file
    naming an image another file already named, or a copy or hard link of it (one picture,
    one annotation: :class:`ClaimedImages`). The crawler's metadata sidecars
    (``IMAGE.ext.json``) are no annotations: counted, not read. Without ``image_dir`` only the
    files are read (the checks that need no image: names, parsing, geometry against
    ``image_size``).

    Args:
        image_dir: the folder the annotations' ``image`` names are relative to; None to read
            the annotation files alone (records then have no ``image_path``).
        include_predicted: use files of unreviewed model predictions (``status: predicted``)
            as if they were annotations, e.g. as pseudo-labels on purpose.
        progress: show a progress bar while reading.
    """

    def __init__(self, image_dir: str | os.PathLike | None, *, include_predicted: bool = False,
                 progress: bool = True):
        # absolute, links not resolved: what lies in it is judged by the path, as the annotator
        # lists it (a link in it to a picture elsewhere is its own)
        self.image_dir = None if image_dir is None else Path(os.path.abspath(image_dir))
        self.include_predicted = include_predicted
        self.progress = progress

    def check(self, path: Path, ann_dir: Path) -> Record:
        """Load one file and check it against its image.

        Raises:
            AnnotationError: one line naming the file and the reason.
        """
        relative = path.relative_to(ann_dir).as_posix()
        # escaped, but beginning with the file and ': ' as every problem line does
        shown = printable(str(path), one_line=True)
        unholdable = unholdable_name(relative)  # the split listings: UTF-8, a name a line
        if unholdable is not None:
            raise AnnotationError(f'{shown}: {unholdable}')
        if path.exists() and not path.is_file():  # never opened: reading a FIFO waits for a
            # writer, reading /dev/zero never ends
            raise AnnotationError(f'{path}: not a regular file (a FIFO, device or socket), '
                                  'not read')
        ann = load_annotation(path)
        if any(is_hidden(part) for part in Path(ann.image).parts if part not in ('.', '..')):
            # the annotator never shows such an image; one rule for both tools
            raise AnnotationError(f'{path}: image {ann.image!r} is hidden (names starting with '
                                  'a dot are the tools\' own, never images)')
        image_path = None
        if self.image_dir is not None:
            image_path = Path(os.path.abspath(self.image_dir / ann.image))  # '..' removed
            if not image_path.is_relative_to(self.image_dir):
                raise AnnotationError(f'{path}: image {ann.image!r} is outside the image folder')
        if ann.status == STATUS_SKIPPED or (ann.status == STATUS_PREDICTED
                                            and not self.include_predicted):
            return Record(path, ann_dir, image_path, ann)  # left out whatever its points
        if not ann.faces:
            raise AnnotationError(f'{path}: no faces annotated')
        try:  # before any message shows the size: it may have hundreds of digits
            check_image_size(ann)
        except AnnotationError as e:
            raise AnnotationError(f'{path}: {e}') from None
        if image_path is None:
            pass  # read without images: the geometry below is all that can be checked
        elif not image_path.is_file():
            raise AnnotationError(f'{path}: image not found: {image_path}')
        else:
            try:  # first: a cut file's header may still read, or fail with a vaguer reason
                check_image_complete(image_path)
            except AnnotationError as e:
                raise AnnotationError(f'{path}: {e}') from None
            try:
                size = image_size(image_path)
            except AnnotationError as e:
                raise AnnotationError(f'{path}: image unreadable: {e}') from None
            if size != (ann.width, ann.height):
                raise AnnotationError(
                    f'{path}: image_size {ann.width}x{ann.height} does not match the image '
                    f'{image_path.name} ({size[0]}x{size[1]})')
        try:
            check_usable(ann)
        except AnnotationError as e:
            raise AnnotationError(f'{path}: {e}') from None
        except (ArithmeticError, TypeError, ValueError) as e:  # a value no check foresaw:
            # still one line naming the file, and the run goes on with the others
            raise AnnotationError(f'{path}: not a usable annotation ({e.__class__.__name__}: '
                                  f'{str(e)[:80]})') from None
        return Record(path, ann_dir, image_path, ann)

    def read(self, ann_dir: str | os.PathLike, *, exclude: Iterable[Path] = (),
             only: Collection[str] | None = None, one_per_picture: bool = True
             ) -> FolderContents:
        """Every annotation file of a folder, sorted by path; bad ones in ``problems``.

        Args:
            ann_dir: the folder (read recursively, linked subfolders too, hidden names left
                out: :func:`scan_annotation_folder`).
            exclude: folders inside ``ann_dir`` not to read (read on their own).
            only: read just these files (POSIX names relative to ``ann_dir``, as a split
                listing has them); the others are neither read nor reported.
            one_per_picture: leave out a file whose picture a file before it annotates
                (:meth:`ClaimedImages.keep_unique`), a person's files before predictions;
                False leaves that to the caller (:func:`convert` chooses across folders, by
                the split record).
        """
        ann_dir = Path(ann_dir)
        contents = FolderContents()
        files, contents.sidecars = scan_annotation_folder(ann_dir, exclude)
        if only is not None:
            only = set(only)
            files = [f for f in files if f.relative_to(ann_dir).as_posix() in only]
        contents.files = list(files)
        skipped = []  # still ranked among an image's files (a prediction left out ranks after
        # every file read: file_choice_key)
        for path in tqdm(files, desc=f'reading {ann_dir}', unit='file',
                         disable=not self.progress):
            try:
                record = self.check(path, ann_dir)
            except AnnotationError as e:
                contents.problems.append(str(e))
                continue
            status = record.annotation.status
            if status == STATUS_SKIPPED:
                contents.skipped.append(str(path))
                skipped.append(record)
                continue
            if status == STATUS_PREDICTED and not self.include_predicted:
                contents.predicted.append(str(path))
                continue
            contents.records.append(record)
        contents.records = _shown_files_only(contents.records, skipped, contents.problems)
        if one_per_picture:  # the file the annotator opens first (file_choice_key)
            people_first = sorted(contents.records, key=_choice_rank)
            kept = {id(r) for r in ClaimedImages().keep_unique(people_first, contents.problems)}
            contents.records = [r for r in contents.records if id(r) in kept]  # by path
        return contents


def _shown_files_only(records: list[Record], skipped: list[Record], problems: list[str]
                      ) -> list[Record]:
    """``records`` less those of an image whose first file (:func:`_choice_rank`: the one the
    annotator opens, of those read) is marked skipped, each with a line in ``problems``: the
    annotator shows that image skipped, so no other file of it is trained on. (A file the
    converter refuses ranks nowhere here, as in every choice of the converter's.)

    Args:
        records: the folder's records read for training, by path.
        skipped: the folder's records of skipped files.
        problems: where the lines of records so left out go.
    """
    opened: dict[str, Record] = {}  # image -> its best-ranked skipped file
    for record in skipped:
        key = image_key(record.annotation.image)
        if key not in opened or _path_rank(record) < _path_rank(opened[key]):
            opened[key] = record
    kept = []
    for record in records:
        other = opened.get(image_key(record.annotation.image))
        if other is None or _path_rank(record) < _path_rank(other):
            kept.append(record)
            continue
        problems.append(f'{record.ann_path}: names the image {record.annotation.image!r}, '
                        f'of which {other.ann_path} comes first in the annotator\'s order of an '
                        'image\'s files, and is marked skipped; one file per image: left out')
    return kept


def _path_rank(record: Record) -> tuple[tuple[bool, bool, int], str]:
    """:func:`_choice_rank`, ties by path (the annotator's ties go by name)."""
    return _choice_rank(record), record.name


def _choice_rank(record: Record) -> tuple[bool, bool, int]:
    """How far back a file stands among files of one picture, by the annotator's rule
    (:func:`~.annotation.file_choice_key`: a person's before a model's prediction, an accepted
    one before one under review, then by name: the annotator's report and the file trained on
    are one), its name that of a file at the top of its folder (the annotator's)."""
    name = record.name if '/' not in record.name else ''  # (deeper: none of the annotator's)
    return file_choice_key(image_key(record.annotation.image), name,
                           models=is_models_prediction(record.annotation),
                           status=record.annotation.status)


def _separators(line: str) -> Iterator[int]:
    """Where ``': '`` stands in a problem line: a file's line is its path, ``': '`` and the
    reason, and a path may hold ``': '`` too."""
    i = line.find(': ')
    while i >= 0:
        yield i
        i = line.find(': ', i + 1)


# splitting ----------------------------------------------------------------------------------

def check_ratios(train: float, val: float, test: float, *,
                 validation_folder: bool = False) -> dict[str, float]:
    """Validate the three split ratios.

    Args:
        train, val, test: the ratios, each in [0, 1].
        validation_folder: whether a validation folder is the val split: val must be 0 and
            train and test give the proportion the annotation folder is split in (scaled here
            to sum to 1), whatever their sum.

    Raises:
        ConversionError: a ratio outside [0, 1], ratios that do not sum to 1 (with a
            validation folder: a val ratio, or train and test both 0).
    """
    ratios = dict(train=train, val=val, test=test)
    for name, value in ratios.items():
        if not (0.0 <= value <= 1.0) or math.isnan(value):
            raise ConversionError(f'--{name}-ratio must be between 0 and 1, got {value}')
    if validation_folder:
        if val:
            raise ConversionError(
                f'--val-ratio {val:g} with --val-annotation-dir, which is the validation '
                'split: leave --val-ratio out (--train-ratio and --test-ratio then share the '
                'annotation folder in their proportion)')
        if train + test <= 0:
            raise ConversionError('with --val-annotation-dir, train and test ratios cannot '
                                  'both be 0')
        return dict(train=train / (train + test), val=0.0, test=test / (train + test))
    if abs(sum(ratios.values()) - 1.0) > 1e-6:
        raise ConversionError(
            f'split ratios must sum to 1, got train {train} + val {val} + test {test} = '
            f'{sum(ratios.values()):g}')
    return ratios


def split_counts(total: int, ratios: dict[str, float]) -> dict[str, int]:
    """How many files go to each split: rounded shares, what rounding leaves over to the split
    of the largest ratio (the first in :data:`SPLITS` order of equal ones: ``train`` as a
    rule). Never to a split of ratio 0, which has no outputs: a file there would be in none.
    """
    largest = max(SPLITS, key=lambda name: ratios[name])  # max keeps the first of equals
    counts = {name: int(round(total * ratios[name])) for name in SPLITS if name != largest}
    counts[largest] = total - sum(counts.values())
    return {name: counts[name] for name in SPLITS}


def new_file_counts(kept: Mapping[str, int], new: int,
                    ratios: dict[str, float]) -> dict[str, int]:
    """How many of ``new`` files go to each split when ``kept`` files already have theirs.

    Each split gets what it lacks of its share of the total (:func:`split_counts`); when a
    split already holds more than its share (files left it), the new files are shared among
    the others in proportion to what each lacks (largest remainders, ties in :data:`SPLITS`
    order). Without kept files this is :func:`split_counts` of ``new``.
    """
    if new <= 0:
        return {name: 0 for name in SPLITS}
    target = split_counts(sum(kept.values()) + new, ratios)
    lacking = {name: max(0, target[name] - kept.get(name, 0)) for name in SPLITS}
    total_lacking = sum(lacking.values())  # >= new: the targets sum to kept + new
    if total_lacking == new:
        return lacking
    exact = {name: lacking[name] * new / total_lacking for name in SPLITS}
    counts = {name: math.floor(exact[name]) for name in SPLITS}
    by_remainder = sorted(SPLITS, key=lambda name: (counts[name] - exact[name],
                                                     SPLITS.index(name)))
    for name in by_remainder[:new - sum(counts.values())]:
        counts[name] += 1
    return counts


def split_records(records: list[Record], ratios: dict[str, float], seed: int,
                  previous: Mapping[str, str] | None = None) -> dict[str, list[Record]]:
    """A seeded split that keeps the files of an earlier one where they were.

    A record that ``previous`` (annotation file name, as :attr:`Record.name` -> split) puts in
    a split of nonzero ratio stays there. The others (all of them without ``previous``) are
    sorted by name, shuffled with ``random.Random(seed)`` and cut, in :data:`SPLITS` order,
    into the numbers of :func:`new_file_counts`, which bring each split as close to its ratio
    of the total as the kept files allow. The same files, seed and ``previous`` give the same
    split on any machine; each split is returned sorted by path.
    """
    previous = previous or {}
    splits: dict[str, list[Record]] = {name: [] for name in SPLITS}
    new = []
    for record in sorted(records, key=lambda r: r.name):
        split = previous.get(record.name)
        if split in splits and ratios[split] > 0:
            splits[split].append(record)
        else:
            new.append(record)
    random.Random(seed).shuffle(new)
    counts = new_file_counts({name: len(splits[name]) for name in SPLITS}, len(new), ratios)
    start = 0
    for name in SPLITS:
        splits[name] += new[start:start + counts[name]]
        start += counts[name]
    return {name: sorted(splits[name], key=lambda r: r.ann_path.as_posix()) for name in SPLITS}


class ImageStamp(NamedTuple):
    """What tells an image's versions apart without reading it: the name its annotation file
    gives it, its byte size and its modification time (``st_size``, ``st_mtime_ns``, links
    followed).

    The split record keeps the stamp each image had when it was hashed, and a later conversion
    reuses the recorded digest of an image whose stamp is unchanged rather than reading it
    whole (:func:`image_digests`): a rerun over thousands of multi-megabyte pictures costs a
    ``stat`` each (and the annotator hashes a picture once a stamp). This is the trade rsync's
    quick check (size and modification time) and make (modification time) make: a file
    rewritten with other bytes of the same size and its time then set back (``touch -r``,
    ``os.utime``) keeps its old digest, so a picture replaced so goes unseen by the changed-
    picture checks (:data:`~.annotation.IMAGE_SHA256_KEY`) too. That is fine here: the digest
    finds a moved annotation file's picture, copies of a picture and pictures replaced, and
    dataset images are added or replaced, not edited in place with their times restored. A rewrite
    within the file system's timestamp tick keeps the time with no such tool; that case is
    guarded as git guards its "racy" index entries: the stamp of an image changed less than
    :data:`RECENT_CHANGE_NS` before it was taken is not recorded (:meth:`trusted`), and the
    image is hashed again next time.
    """

    image: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, record: Record) -> ImageStamp:
        """The stamp of a record's image now.

        Raises:
            OSError: the image cannot be read.
        """
        stat = os.stat(record.picture)
        return cls(record.annotation.image, stat.st_size, stat.st_mtime_ns)

    def trusted(self, taken_after_ns: int) -> bool:
        """Whether this stamp, taken after ``taken_after_ns`` (:func:`time.time_ns`), still
        tells whether its image changed: false for an image changed less than
        :data:`RECENT_CHANGE_NS` before, or dated in the future (a clock set wrong)."""
        return self.mtime_ns < taken_after_ns - RECENT_CHANGE_NS

    def to_json(self) -> dict:
        return dict(image=self.image, size=self.size, mtime_ns=self.mtime_ns)

    @classmethod
    def from_json(cls, raw: object) -> ImageStamp | None:
        """A stamp from its decoded JSON; None for anything else."""
        if not isinstance(raw, dict) or not isinstance(raw.get('image'), str) \
                or not is_utf8_name(raw['image']):  # "\udcff": no record could be written
            return None
        size, mtime_ns = raw.get('size'), raw.get('mtime_ns')
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (size, mtime_ns)):
            return None
        return cls(raw['image'], size, mtime_ns)


def _stamps(raw: object, recorded: Collection[str]) -> dict[str, ImageStamp]:
    """The stamps of a record's ``image_stamps`` (``picture_stamps``) for the files (pictures)
    ``recorded``. A cache: what is not understood is left out (that image is hashed again)."""
    if not isinstance(raw, dict):
        return {}
    return {key: stamp for key, raw_stamp in raw.items()
            if key in recorded and (stamp := ImageStamp.from_json(raw_stamp)) is not None}


@dataclass
class SplitRecord:
    """Which annotation file is in which split, and the seed and ratios that put it there.

    :func:`convert` writes it to ``output_dir/splits.json`` and follows it on the next
    conversion into that folder, which must have the same seed and ratios. The ratios are
    those the annotation folder was split by: with a validation folder
    (``--val-annotation-dir``), train and test in proportion and val 0. The file::

        {"format": "animal_landmarks_mm.splits", "version": 1, "seed": 42,
         "ratios": {"train": 0.7, "val": 0.2, "test": 0.1},
         "files": {"train": ["a.json", ...], "val": [...], "test": [...]},
         "images": {"a.json": "<SHA-256 of its image's bytes>", ...},
         "image_stamps": {"a.json": {"image": "a.png", "size": 6512345,
                                     "mtime_ns": 1733449550123456789}, ...},
         "pictures": {"<SHA-256>": "test", ...},
         "picture_stamps": {"<SHA-256>": {"image": "v.png", "size": 51234,
                                          "mtime_ns": 1733449550123456789}, ...}}

    ``images`` finds a file moved or renamed since by its picture (:meth:`split_of`).
    ``pictures`` holds the pictures no recorded file shows, with their split: one a file
    showed before its name was given another picture (a test picture annotated again under
    another name returns to test), and the validation folder's (``--val-annotation-dir``, whose
    files are no part of ``files``: a copy in the annotation folder never goes to train or
    test, even in a run where the validation file is broken). A recorded picture is never
    forgotten but by ``--reshuffle``.
    ``image_stamps`` and ``picture_stamps`` let the next conversion reuse the digest of an
    image unchanged since (:class:`ImageStamp`); they are only a cache: an entry that is no
    stamp is ignored (that image is hashed again), never a reason to refuse the record. All
    four are absent from the records of earlier versions, which are read as they are. Keys a
    version does not know are ignored, so a record of a later version that adds one is still
    followed (as the version before ``pictures`` follows a record that has them).

    Attributes:
        seed: the split's seed.
        ratios: the split's ratios.
        assignment: annotation file name (relative to its folder) -> split.
        images: annotation file name -> the SHA-256 of its image (hex); files of earlier
            versions' records have none.
        stamps: annotation file name -> the stamp its image had when hashed; only files in
            ``images``, and only stamps a later run may trust (:meth:`ImageStamp.trusted`).
        pictures: the SHA-256 of a picture no recorded file shows -> its split.
        picture_stamps: the SHA-256 of one of ``pictures`` -> the stamp its image had when
            hashed (as ``stamps``).
        origin: where a record not read from its file came from (:meth:`from_listings`).
    """

    seed: int
    ratios: dict[str, float]
    assignment: dict[str, str] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    stamps: dict[str, ImageStamp] = field(default_factory=dict)
    pictures: dict[str, str] = field(default_factory=dict)
    picture_stamps: dict[str, ImageStamp] = field(default_factory=dict)
    origin: str | None = field(default=None, compare=False)

    def split_of(self, name: str, digest: str) -> str | None:
        """The split this record gives a file: that of its name, else that of its picture
        (``digest``: a file moved or renamed since, or a copy of a picture the record holds
        with no file: ``pictures``); None for a new file. Train when either is train, so that a
        picture trained on never moves to val or test. A name that now shows another picture
        the record holds (a file reused, or one of a gone file's name made again) takes that
        picture's split: a name recorded in train would otherwise pull a test picture into
        train, and its test file out as a copy."""
        by_name, by_picture = self.assignment.get(name), self._picture_splits.get(digest)
        if by_picture is not None and self.images.get(name, digest) != digest:
            return by_picture
        return 'train' if 'train' in (by_name, by_picture) else by_name or by_picture

    def picture_split(self, digest: str) -> str | None:
        """The split of the recorded files showing the picture ``digest`` (train when any
        of them is in train); None for a picture the record does not hold."""
        return self._picture_splits.get(digest)

    @cached_property
    def _picture_splits(self) -> dict[str, str]:
        """Image digest -> the split of its files, or of ``pictures`` for a picture no file
        shows; train when any of them is in train."""
        splits: dict[str, str] = {}
        for name, digest in self.images.items():
            if splits.get(digest) != 'train':
                splits[digest] = self.assignment[name]
        for digest, split in self.pictures.items():
            if digest not in splits or split == 'train':
                splits[digest] = split
        return splits

    @cached_property
    def digests_by_stamp(self) -> dict[ImageStamp, str]:
        """The recorded digest of each image, by the stamp it had when hashed."""
        by_stamp = {stamp: digest for digest, stamp in self.picture_stamps.items()
                    if digest in self.pictures}
        by_stamp.update((stamp, self.images[name]) for name, stamp in self.stamps.items()
                        if name in self.images)
        return by_stamp

    @classmethod
    def from_listings(cls, output_dir: Path, seed: int, ratios: dict[str, float],
                      ann_dir: Path, val_dir: Path | None = None) -> SplitRecord | None:
        """The split an earlier conversion left as ``train.txt`` / ``val.txt`` / ``test.txt``
        only (one made before split records existed), taken with this run's seed and ratios so
        that it is followed; None when there are no such lists.

        The list of a split whose ratio is 0 now is no part of the split: refused when it names
        files of ``ann_dir`` (they would move into another split: test files into train), else
        ignored (its files are gone, or it is the list of ``val_dir``, the validation folder,
        whose files are named relative to it).

        Raises:
            ConversionError: a list that cannot be read (not UTF-8, not a regular file, too
                large) or that names a file another list names too (which split is it in?),
                or the list of a split of ratio 0 naming files of ``ann_dir``; naming the list,
                with ``--reshuffle`` as the way out (splitting afresh silently moved earlier
                val and test files into train).
        """
        assignment: dict[str, str] = {}
        found = []
        for split in SPLITS:
            listing = output_dir / f'{split}.txt'
            if not os.path.lexists(listing):  # a broken link is a list that cannot be read
                continue
            try:
                names = read_split_listing(listing)
            except (OSError, ValueError) as e:  # not UTF-8, not a regular file, too large
                raise ConversionError(
                    f'{listing}: not a split list this version reads '
                    f'({_why_unreadable(e, listing)}); fix it, or pass --reshuffle to split '
                    f'afresh {_MAY_CHANGE_SPLIT}') from None
            found.append(listing.name)
            if ratios[split] == 0:
                cls._refuse_listed_files(listing, split, names, ann_dir, val_dir)
                continue
            for name in names:
                other = assignment.setdefault(name, split)
                if other != split:
                    raise ConversionError(
                        f'{listing}: names {name!r}, which {other}.txt names too; remove it '
                        f'from the list of the split it is not in, or pass --reshuffle to '
                        f'split afresh {_MAY_CHANGE_SPLIT}')
        if not found:
            return None
        return cls(seed, dict(ratios), assignment,
                   origin=f'the lists {", ".join(found)} of an earlier conversion in '
                          f'{output_dir}')

    @staticmethod
    def _refuse_listed_files(listing: Path, split: str, names: list[str], ann_dir: Path,
                             val_dir: Path | None) -> None:
        """:meth:`from_listings`' refusal of a list of a split of ratio 0 naming files of the
        annotation folder, as :meth:`from_json` refuses a record with files there.

        Raises:
            ConversionError: naming the list, a file and how many there are.
        """
        def is_file_of(folder: Path, name: str) -> bool:
            return not os.path.isabs(name) and (folder / name).is_file()

        listed = [name for name in names if is_file_of(ann_dir, name)
                  and not (val_dir is not None and is_file_of(val_dir, name))]
        if not listed:
            return
        if split == 'val' and val_dir is not None:
            way_out = ('--val-annotation-dir makes another folder the validation split, which '
                       'changes the split: pass --reshuffle to split afresh (which puts earlier '
                       'validation images into train and test), or give another --output-dir')
        else:
            way_out = (f'give the --{split}-ratio they were split with, or pass --reshuffle '
                       f'to split afresh {_MAY_CHANGE_SPLIT}')
        raise ConversionError(
            f'{listing}: an earlier conversion put {len(listed)} files of the annotation folder '
            f'{ann_dir} in the {split} split (e.g. {listed[0]!r}), whose ratio is 0 now: they '
            f'would move into another split; {way_out}')

    def to_json(self) -> dict:
        files = {name: sorted(f for f, split in self.assignment.items() if split == name)
                 for name in SPLITS}
        return dict(format=SPLIT_RECORD_FORMAT, version=SPLIT_RECORD_VERSION, seed=self.seed,
                    ratios={name: self.ratios[name] for name in SPLITS}, files=files,
                    images=dict(sorted(self.images.items())),
                    image_stamps={name: stamp.to_json()
                                  for name, stamp in sorted(self.stamps.items())},
                    pictures=dict(sorted(self.pictures.items())),
                    picture_stamps={digest: stamp.to_json()
                                    for digest, stamp in sorted(self.picture_stamps.items())})

    def to_bytes(self) -> bytes:
        """The record's file (:func:`~.annotation.json_bytes`). :func:`convert` makes it
        before it writes anything, so that nothing the data holds fails once the writing has
        begun; it is written with the outputs as one set (:func:`replace_as_one_set`)."""
        return json_bytes(self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> SplitRecord | None:
        """Read a record; None when there is none.

        Raises:
            ConversionError: a file that is no record this version reads (or no regular file,
                or larger than :data:`SPLIT_RECORD_MAX_BYTES`), naming it.
        """
        path = Path(path)
        if not os.path.lexists(path):  # a broken link is a record that cannot be read
            return None
        try:  # never a FIFO (it would wait for a writer for good), never more than a record
            return cls.from_json(json.loads(read_regular_file(path, SPLIT_RECORD_MAX_BYTES)
                                            .decode('utf-8')))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ConversionError(
                f'{path}: not a split record this version reads ({_why_unreadable(e, path)}); '
                f'fix it, or pass --reshuffle to split afresh {_MAY_CHANGE_SPLIT}') from None

    @classmethod
    def from_json(cls, raw: object) -> SplitRecord:
        """A record from its decoded JSON.

        Raises:
            ValueError: one line saying what is wrong.
        """
        if not isinstance(raw, dict) or raw.get('format') != SPLIT_RECORD_FORMAT:
            raise ValueError(f'no "format": "{SPLIT_RECORD_FORMAT}"')
        if raw.get('version') != SPLIT_RECORD_VERSION:
            raise ValueError(f'version {raw.get("version")!r}, expected {SPLIT_RECORD_VERSION}')
        seed, ratios, files = raw.get('seed'), raw.get('ratios'), raw.get('files')
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError('"seed" is not an integer')
        if (not isinstance(ratios, dict) or set(ratios) != set(SPLITS)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and 0 <= v <= 1 for v in ratios.values())):
            raise ValueError(f'"ratios" must give {", ".join(SPLITS)} between 0 and 1')
        if not isinstance(files, dict) or not set(files) <= set(SPLITS):
            raise ValueError(f'"files" must be an object of {", ".join(SPLITS)}')
        assignment: dict[str, str] = {}
        for split, names in files.items():
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError(f'"files" "{split}" is not a list of file names')
            if names and ratios[split] == 0:
                raise ValueError(f'files in the {split} split, whose ratio is 0')
            for name in names:
                if name in assignment:
                    raise ValueError(f'{name!r} in both {assignment[name]} and {split}')
                if not is_utf8_name(name):  # "\udcff": the lists and the record hold UTF-8
                    raise ValueError(f'"files" "{split}" names {name!r}, which is not valid '
                                     'UTF-8')
                assignment[name] = split
        images = raw.get('images', {})  # absent from the records of earlier versions
        if not isinstance(images, dict) or not all(
                is_sha256_hex(digest)
                for digest in images.values()):
            raise ValueError('"images" must map file names to SHA-256 digests (64 hex digits)')
        stray = next((name for name in images if name not in assignment), None)
        if stray is not None:
            raise ValueError(f'"images" names {stray!r}, which no split holds')
        pictures = raw.get('pictures', {})  # absent from the records of earlier versions
        if not isinstance(pictures, dict) or not all(
                is_sha256_hex(digest) and split in SPLITS for digest, split in pictures.items()):
            raise ValueError('"pictures" must map SHA-256 digests (64 hex digits) to '
                             f'{", ".join(SPLITS)}')
        return cls(seed, {name: float(ratios[name]) for name in SPLITS}, assignment, images,
                   _stamps(raw.get('image_stamps'), images), pictures,
                   _stamps(raw.get('picture_stamps'), pictures))

    def difference(self, seed: int, ratios: dict[str, float], *,
                   validation_folder: bool = False) -> str | None:
        """Why a split with ``seed`` and ``ratios`` cannot follow this record, or None.

        ``validation_folder``: this split has one (val ratio 0); a record that split val off
        the annotation folder then gets a message of its own, since giving its ratios is no
        way out (a validation folder takes no val ratio).
        """
        if seed != self.seed:
            return f'seed {seed} differs from the record\'s {self.seed}'
        if validation_folder and self.ratios['val'] > 0:
            return (f'the record split the annotation folder with --val-ratio '
                    f'{self.ratios["val"]:g}; --val-annotation-dir makes another folder the '
                    'validation split, which changes the split: pass --reshuffle to split '
                    'afresh (which puts earlier training images into test), or give another '
                    '--output-dir')
        if any(not math.isclose(ratios[name], self.ratios[name], rel_tol=0, abs_tol=1e-9)
               for name in SPLITS):
            return (f'ratios ({_ratios_text(ratios)}) differ from the record\'s '
                    f'({_ratios_text(self.ratios)})')
        return None


#: The largest split listing read (bytes): a name per line, millions of them.
SPLIT_LISTING_MAX_BYTES = 1 << 28
#: The largest split record read (bytes), 512 MiB: a file takes four times its name's length
#: and some 165 bytes (its name in "files", its picture's SHA-256 in "images", its stamp), 325
#: bytes with 40-character names, 565 with 100-character ones, so a million files of names up
#: to 85 characters fit. Loaded, a record takes some 3.5 times its size in memory (2 GB at the
#: limit; a hostile one of short names alone up to 11 times); a real one is far smaller (3.2
#: MB for 10,000 files).
SPLIT_RECORD_MAX_BYTES = 1 << 29


def read_split_listing(path: str | os.PathLike) -> list[str]:
    """The annotation files a split listing names (``train.txt``, ...: UTF-8, one name per
    line, as :func:`convert` writes them), each exactly as written: only the line's ending
    (``\\n``, ``\\r\\n``) is taken off, since a name may begin with a blank (no name holds a line
    break: :meth:`AnnotationReader.check`). Blank lines are ignored (no annotation file's name
    is blank).

    Raises:
        NotRegularFileError: a FIFO, device or folder: never waited on or read.
        OSError, UnicodeDecodeError: an unreadable file.
        AnnotationError: a file larger than :data:`SPLIT_LISTING_MAX_BYTES`.
    """
    text = read_regular_file(path, SPLIT_LISTING_MAX_BYTES).decode('utf-8')
    return [name for name in (line.removesuffix('\r') for line in text.split('\n'))
            if name.strip()]


def _not_a_listing(data: bytes) -> str | None:
    """Why ``data`` is no split list an earlier conversion wrote, or None: every version
    wrote the names of annotation files relative to their folder, one a line (``*.json`` in any
    case, neither absolute nor through ``..``), and nothing for an empty split (the first
    version). Bytes, not text: a list naming a file in other bytes than UTF-8 is still one
    (:meth:`SplitRecord.from_listings` refuses to follow it, ``--reshuffle`` replaces it)."""
    for number, line in enumerate(data.split(b'\n'), 1):
        name = line.removesuffix(b'\r')
        if name.strip() and (not name.lower().endswith(b'.json') or name.startswith(b'/')
                             or b'..' in name.split(b'/')):
            shown = shown_value(name.decode('utf-8', 'replace'))
            return f'line {number} names no annotation file: {shown}'
    return None


def check_own_listings(output_dir: Path, written: Collection[str]) -> None:
    """Refuse a file where a split list goes in the output folder that is no list of an
    earlier conversion (a user's own ``test.txt``): it would be followed as a split, then
    replaced by this conversion's list, or removed for a split of ratio 0.

    A list is told by its lines (:func:`_not_a_listing`), not by what lies beside it: lists of
    versions before ``splits.json`` have no record, a run killed between its record and its
    lists leaves old lists beside the new record, and the files a list names may be gone
    since (they keep their split). A link or FIFO there is replaced, its target never touched:
    not read.

    Args:
        output_dir: the output folder.
        written: the splits this conversion writes a list of; the others' are removed.

    Raises:
        ConversionError: one line naming the file and its first line that names no annotation
            file (or why it cannot be read), saying to move it away.
    """
    for split in SPLITS:
        listing = output_dir / f'{split}.txt'
        try:
            if not stat.S_ISREG(os.lstat(listing).st_mode):
                continue
            why = _not_a_listing(read_regular_file(listing, SPLIT_LISTING_MAX_BYTES))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except (OSError, AnnotationError) as e:  # unreadable, too large: no telling whose
            why = _why_unreadable(e, listing)
        if why is None:
            continue
        fate = (f'replace it with its {split} list' if split in written
                else f'remove it (the {split} ratio is 0)')
        raise ConversionError(f'{listing}: not a split list of an earlier conversion ({why}), '
                              f'and this conversion would {fate}; move it out of {output_dir} '
                              'or give another --output-dir')


def _why_unreadable(error: Exception, path: Path) -> str:
    """Why ``path`` could not be read or decoded, in a few words without its name (the message
    around them names it)."""
    if isinstance(error, NotRegularFileError):
        return 'not a regular file (a FIFO, a device or a folder)'
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error).splitlines()[0].removeprefix(f'{os.fsdecode(path)}: ')


def _ratios_text(ratios: Mapping[str, float]) -> str:
    return ', '.join(f'{name} {ratios[name]:g}' for name in SPLITS)


@dataclass
class SplitOutcome:
    """How :func:`convert` made the split of the annotation folder.

    Attributes:
        record: the split record written.
        seed: the split's seed.
        afresh: why the split was made afresh; None when it followed the earlier record.
        earlier: whether an earlier record existed (its files may have changed split).
        kept: per split, the files the earlier record put there that stayed.
        moved: of the kept files, those found by their picture under a new name or folder.
        added: per split, the files new to the record that went there.
        gone: files of the earlier record no longer in the annotation folder: kept in the
            record, so that one restored (or a copy of its picture) returns to its split
            rather than, say, a test file landing in train.
        waiting: files of the earlier record left out this time (bad, skipped, predictions):
            kept in the record, so they return to their split once usable.
        kept_from: what the split followed when not ``record`` (an earlier conversion's
            lists, :meth:`SplitRecord.from_listings`).
    """

    record: Path
    seed: int
    afresh: str | None = None
    earlier: bool = False
    kept: dict[str, int] = field(default_factory=dict)
    moved: int = 0
    added: dict[str, int] = field(default_factory=dict)
    gone: int = 0
    waiting: int = 0
    kept_from: str | None = None

    def format(self) -> str:
        added = ', '.join(f'{name} {self.added.get(name, 0)}' for name in SPLITS)
        if self.afresh is not None:
            line = f'split afresh with seed {self.seed} ({self.afresh})'
            if self.earlier:
                line += '; files of earlier conversions may have changed split'
            return f'{line}; recorded in {self.record}'
        kept = ', '.join(f'{name} {self.kept.get(name, 0)}' for name in SPLITS)
        if self.moved:
            kept += f'; {self.moved} of them moved or renamed, found by their picture'
        line = (f'split kept from {self.kept_from or self.record}: '
                f'{sum(self.kept.values())} files in place '
                f'({kept}), {sum(self.added.values())} new ({added})')
        if self.gone:
            line += (f', {self.gone} gone from the annotation folder keep their split should '
                     'they come back')
        if self.waiting:
            line += f', {self.waiting} left out this time keep their split'
        return line


# writing ------------------------------------------------------------------------------------

def coco_dict(records: Iterable[Record], output_root: str | os.PathLike,
              first_image_id: int = 1) -> dict:
    """One COCO keypoints dict; ``file_name`` relative to ``output_root``, links not resolved
    (a dataset folder whose ``images`` is a link has ``images/...`` and can move, link and
    all). An image outside ``output_root`` is reached from its real folder: a ``..`` after a
    link (``output_root`` may be one) leads out of the link's target."""
    images, annotations = [], []
    out_root, real_out_root = os.path.abspath(output_root), os.path.realpath(output_root)
    for image_id, rec in enumerate(records, start=first_image_id):
        ann = rec.annotation
        file_name = os.path.relpath(os.path.abspath(rec.image_path), out_root)
        if file_name.split(os.sep, 1)[0] == os.pardir:
            file_name = os.path.relpath(os.path.realpath(rec.image_path), real_out_root)
        images.append(dict(id=image_id, file_name=file_name.replace(os.sep, '/'),
                           width=ann.width, height=ann.height))
        for face in ann.faces:
            keypoints, num = coco_keypoints(face)
            x, y, w, h = face_box(face, ann.width, ann.height)
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id, category_id=1,
                # full precision, so that a COCO file and its annotation files give exactly
                # the same crops and numbers
                bbox=[x, y, w, h], area=w * h, iscrowd=0, keypoints=keypoints,
                num_keypoints=num))
    return dict(info=dict(description='animal_landmarks_mm', version='1.0'), images=images,
                annotations=annotations, categories=coco_categories())


def coco_bytes(records: Iterable[Record], output_root: str | os.PathLike,
               first_image_id: int = 1) -> bytes:
    """:func:`coco_dict` as the COCO file holds it (one line: the files are large)."""
    return json_bytes(coco_dict(records, output_root, first_image_id), indent=None)


def write_coco(records: list[Record], ann_file: str | os.PathLike,
               output_root: str | os.PathLike, first_image_id: int = 1) -> Path:
    """Write :func:`coco_dict` to ``ann_file`` atomically (its folder made if need be);
    returns the file."""
    write_bytes_atomic(ann_file, coco_bytes(records, output_root, first_image_id),
                       make_folder=True)
    return Path(ann_file)


def replace_as_one_set(files: list[tuple[Path, bytes]], record_path: Path) -> None:
    """Replace the output files as one set: every file is written to a temporary beside it
    (:func:`~.annotation.write_temporary`) and flushed to disk before any is moved into place,
    so that a failing write (a full disk) leaves the earlier set whole, its temporaries
    removed.

    The split record goes first among the moves (``record_path``, which ``files`` must hold),
    so that a run killed between them leaves the new record beside some earlier outputs and
    never new lists without their record: the next conversion follows the record alone (it
    reads the lists only where there is no record, as an earlier version's conversion), so
    it makes the split the killed run was making and rewrites every output; partial lists of
    a first conversion are never taken for an earlier conversion.

    Args:
        files: each output file and its new content, the record among them.
        record_path: the split record's file.

    Raises:
        OSError: a file cannot be written or moved before the record is in place (the earlier
            set is whole).
        ConversionError: a file cannot be moved into place after the record was: one line
            naming it, saying to run the conversion again.
    """
    ordered = sorted(files, key=lambda item: item[0] != record_path)  # stable: record first
    temporaries: list[tuple[Path, Path]] = []
    try:
        for path, data in ordered:
            # flushed now, not at the move: a flush that fails (a full network disk) must
            # fail before anything is replaced
            temporaries.append((write_temporary(path, data, sync=True), path))
    except BaseException:
        _remove_temporaries(tmp for tmp, _ in temporaries)
        raise
    moved = 0
    try:
        for tmp, path in temporaries:
            move_into_place(tmp, path)  # removes its temporary if it fails
            moved += 1
    except BaseException as e:
        # the one that failed was removed or moved already: no name of it is left
        _remove_temporaries(tmp for tmp, _ in temporaries[moved:])
        if moved == 0 or not isinstance(e, OSError):
            raise
        why = e.strerror or str(e)
        raise ConversionError(
            f'{temporaries[moved][1]}: cannot be moved into place ({why}); {record_path} holds '
            'the new split, not all of its outputs are written: run the conversion again to '
            'write them') from None


def _remove_temporaries(temporaries: Iterable[Path]) -> None:
    """Remove what is left of these temporary files, quietly."""
    for tmp in temporaries:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # left for remove_stale_temporaries; the first error is the one told
            pass


# the whole conversion -----------------------------------------------------------------------

@dataclass
class ConversionSummary:
    """What a conversion did: files per split, how the split was made, files left out and
    why, outputs written and removed."""

    counts: dict[str, int] = field(default_factory=dict)
    faces: dict[str, int] = field(default_factory=dict)
    contents: FolderContents = field(default_factory=FolderContents)
    outputs: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    split: SplitOutcome | None = None

    @property
    def problems(self) -> list[str]:
        return self.contents.problems

    @property
    def skipped_by_annotator(self) -> list[str]:
        return self.contents.skipped

    def format(self) -> str:
        lines = [f'{name:5s}: {self.counts[name]:6d} images, {self.faces[name]:6d} faces'
                 for name in self.counts]
        if self.split is not None:
            lines.append(self.split.format())
        if self.contents.skipped:
            lines.append(f'{len(self.contents.skipped)} images marked skipped in the '
                         'annotator, left out')
        if self.contents.predicted:
            lines.append(f'{len(self.contents.predicted)} files of unreviewed predictions '
                         '(status "predicted"), left out: review them in the annotator, or '
                         'pass --include-predicted to train on them')
        if self.contents.sidecars:
            lines.append(f'{len(self.contents.sidecars)} crawler metadata files '
                         '(IMAGE.ext.json) are no annotations, not read')
        if self.contents.changed_pictures:
            count = len(self.contents.changed_pictures)
            lines.append(f'{count} file{"s" if count > 1 else ""} kept whose picture has '
                         'changed since the points were saved (same size, other bytes: '
                         're-encoded, or another picture under its name): check them in the '
                         'annotator, where a save records the picture as it is now:')
            lines += [f'  {p}' for p in self.contents.changed_pictures]
        if self.problems:
            lines.append(f'{len(self.problems)} annotation files left out:')
            lines += [f'  {p}' for p in self.problems]
        lines += [f'removed {p} (its split is empty now: ratio 0)' for p in self.removed]
        lines += [f'wrote {p}' for p in self.outputs]
        return '\n'.join(lines)


def check_output_dir(output_dir: Path, annotation_dirs: Iterable[Path]) -> None:
    """Refuse an output folder whose files would land where annotations are read (they would
    overwrite an input, and a rerun would read them as bad inputs).

    Raises:
        ConversionError: naming both folders.
    """
    coco_dir = output_dir / 'annotations'
    for ann_dir in annotation_dirs:
        if not lies_in_folder(coco_dir, ann_dir):
            continue
        if not lies_in_folder(output_dir, ann_dir):  # the output's annotations/ is the folder
            raise ConversionError(
                f'--output-dir {output_dir} would write its COCO files into {coco_dir}, which '
                f'is the annotation folder {ann_dir.resolve()} itself; give another output '
                'folder')
        # its parent is fine unless its parent's annotations/ is the folder again
        parent = ' (e.g. its parent)' if ann_dir.resolve().name != 'annotations' else ''
        raise ConversionError(
            f'--output-dir {output_dir} would write into the annotation folder '
            f'{ann_dir.resolve()}; choose an output folder outside it{parent}')


#: How many reasons of left-out files an error about an empty split quotes.
QUOTED_PROBLEMS = 10


def _empty_split_error(name: str, usable: int, ratio: float, problems: list[str],
                       record: Path | None = None) -> ConversionError:
    """The error of an empty split; with the reasons files were left out, which are often
    why (a mistyped --image-dir: every file's image not found), and, when the split followed
    an earlier ``record``, that --reshuffle lets every file move."""
    fix = 'add annotations or change the ratios'
    if record is not None:
        fix += (f', or pass --reshuffle (the files kept in their splits by {record} left too '
                'few new ones for this split; earlier files may then change split)')
    return _quoting_problems(f'the {name} split is empty: {usable} usable annotation files '
                             f'with ratio {ratio:g}; {fix}', problems)


def _empty_validation_folder_error(folder: str | os.PathLike, problems: list[str]
                                   ) -> ConversionError:
    """The error of a validation folder with no usable file (it is the val split whole: no
    ratio gives it files), with the reasons its files were left out."""
    return _quoting_problems(f'the val split is empty: the validation folder {folder} '
                             '(--val-annotation-dir) has no usable annotation files; add '
                             'annotations to it', problems)


def _quoting_problems(message: str, problems: list[str]) -> ConversionError:
    """The error of ``message``, quoting the first :data:`QUOTED_PROBLEMS` reasons files were
    left out."""
    if not problems:
        return ConversionError(message)
    quoted = problems[:QUOTED_PROBLEMS]
    if len(problems) > QUOTED_PROBLEMS:
        quoted.append(f'... and {len(problems) - QUOTED_PROBLEMS} more')
    return ConversionError(f'{message}. {len(problems)} annotation files were left out:',
                           quoted=quoted)


def _previous_split(record_path: Path, seed: int, ratios: dict[str, float],
                    reshuffle: bool, ann_dir: Path, val_dir: Path | None = None
                    ) -> tuple[SplitRecord | None, str | None]:
    """The earlier split record of the output folder to follow (or the lists of a conversion
    made before records existed), or None and why the split is made afresh.

    Args:
        record_path: the output folder's split record.
        seed, ratios: this conversion's.
        reshuffle: split afresh whatever was recorded.
        ann_dir: the annotation folder.
        val_dir: the validation folder, if there is one.

    Raises:
        ConversionError: an unreadable record or list, or one of another seed or other ratios
            (a list: files in a split of ratio 0): a split made afresh would move earlier
            training images into val and test, so only ``reshuffle`` makes it.
    """
    if reshuffle:  # not even read: --reshuffle is the way out of an unreadable record
        return None, '--reshuffle'
    validation_folder = val_dir is not None
    earlier = SplitRecord.load(record_path)
    if earlier is None:
        # a folder converted before records existed: its lists are the split to keep. Never
        # the partial lists of a killed conversion: each moves its record into place before
        # its lists (replace_as_one_set), so lists without a record are an earlier version's
        earlier = SplitRecord.from_listings(record_path.parent, seed, ratios, ann_dir, val_dir)
        return (earlier, None) if earlier is not None else (None, 'no split record yet')
    difference = earlier.difference(seed, ratios, validation_folder=validation_folder)
    if difference is not None and validation_folder and earlier.ratios['val'] > 0 \
            and seed == earlier.seed:
        raise ConversionError(f'{record_path}: {difference}')
    if difference is not None:
        raise ConversionError(
            f'{difference} ({record_path}): give the recorded values to keep every file in its '
            'split, or pass --reshuffle to split afresh, which puts earlier training images '
            'into val and test')
    return earlier, None


def image_digests(records: Iterable[Record], earlier: SplitRecord | None,
                  claimed: ClaimedImages, problems: list[str], *, progress: bool = True
                  ) -> tuple[dict[str, str], dict[str, ImageStamp]]:
    """The SHA-256 of each record's image, reusing those the earlier record holds for images
    unchanged since.

    An image whose :class:`ImageStamp` (name, size, modification time) the ``earlier`` record
    holds keeps the digest recorded with it, unread; the others (new or changed) are hashed,
    with a progress bar. Every digest goes to ``claimed``; a record whose image cannot be
    read gets a line in ``problems`` and no digest.

    Returns:
        Two dicts by :attr:`Record.name`: the digest of its image, and the stamp to record
        with it (only stamps a later run may trust: :meth:`ImageStamp.trusted`).
    """
    recorded = earlier.digests_by_stamp if earlier is not None else {}
    stamped_after_ns = time.time_ns()  # every stamp below is taken after this
    digests: dict[str, str] = {}
    stamps: dict[str, ImageStamp] = {}
    unknown = []
    for record in records:
        try:
            stamp = ImageStamp.of(record)
        except OSError as e:
            problems.append(f'{record.ann_path}: image unreadable: {e}')
            continue
        digest = recorded.get(stamp)
        if digest is None:
            unknown.append(record)
        else:
            claimed.add_digest(record.picture, digest)
            digests[record.name] = digest
        if stamp.trusted(stamped_after_ns):
            # taken before the hashing: a change while it reads shows as a new time next run
            stamps[record.name] = stamp
    for record in tqdm(unknown, desc='hashing new or changed images', unit='image',
                       disable=not progress or not unknown):
        try:
            digests[record.name] = claimed.digest(record.picture)
        except OSError as e:
            problems.append(f'{record.ann_path}: image unreadable: {e}')
            stamps.pop(record.name, None)
    return digests, stamps


def _one_record_per_picture(val_records: list[Record], records: list[Record],
                            earlier: SplitRecord | None, digests: Mapping[str, str],
                            claimed: ClaimedImages, problems: list[str]
                            ) -> tuple[set[int], dict[str, str]]:
    """Which records keep their pictures (by ``id``) when several files show one, and the
    split the earlier record gives each kept record of the annotation folder.

    Of the files showing one picture (:class:`ClaimedImages`) the first of these is kept: one
    the record puts in train (a picture trained on never moves to val or test), one of the
    validation folder (an image annotated in both stays in validation), one the record puts
    in val or test, then the first by path; within each of these the file the annotator opens
    first (:func:`~.annotation.file_choice_key`: a person's before a prediction, which only
    ``--include-predicted`` reads, then by name), and among those the record places, one it
    names before one it finds by its picture. The others are left out with a line in
    ``problems``.

    Args:
        val_records: the validation folder's records (none without one).
        records: the annotation folder's records.
        earlier: the record the split follows (None when made afresh).
        digests: :attr:`Record.name` -> the SHA-256 of its image, for every one of
            ``records``.
        claimed: the pictures claimed so far; updated.
        problems: where the lines of files left out go.
    """
    placed = {}
    if earlier is not None:
        placed = {r.name: split for r in records
                  if (split := earlier.split_of(r.name, digests[r.name])) is not None}

    def rank(record: Record, group: int | None = None
             ) -> tuple[int, tuple[bool, bool, int], int]:
        # group 0: the record puts it in train; 1: the validation folder's; 2: the record puts
        # it in val or test; 3: new to the record. Within a group the file the annotator
        # opens first (a person's before a model's prediction, which only --include-predicted
        # reads; then by name), then one the record names before one it finds by its picture
        choice = _choice_rank(record)
        split = placed.get(record.name)
        if group is not None or split is None:
            return (3 if group is None else group), choice, 0
        # by its name: the name recorded in that same split (a file recorded in val whose
        # picture is now a train file's is placed by the picture, and ranks after that file)
        by_name = earlier.assignment.get(record.name) == split
        return (0 if split == 'train' else 2), choice, 0 if by_name else 1

    claim_order = [(rank(r, 1), r) for r in val_records] + [(rank(r), r) for r in records]
    claim_order.sort(key=lambda ranked: ranked[0])  # stable: by path within a rank
    kept = claimed.keep_unique((r for _, r in claim_order), problems)
    return {id(r) for r in kept}, {r.name: placed[r.name] for r in kept if r.name in placed}


def _trained_in_validation(val_contents: FolderContents, digests: Mapping[str, str],
                           earlier: SplitRecord | None, record_path: Path) -> set[str]:
    """Leave out of the validation folder's records those whose picture the earlier record
    has in train (a file moved from the annotation folder into the validation folder, or a
    copy of a trained picture), each with a line in its ``problems``: a picture trained on
    never goes to val. Returns the digests of the pictures so held back.

    Args:
        val_contents: the validation folder's contents; its records are filtered.
        digests: :attr:`Record.name` -> the SHA-256 of its image, for every one of its
            records (:func:`image_digests`).
        earlier: the record the split follows (None when made afresh).
        record_path: the split record's file, which the lines name.
    """
    if earlier is None:
        return set()
    held: set[str] = set()
    kept = []
    for record in val_contents.records:
        digest = digests[record.name]
        if earlier.picture_split(digest) == 'train':
            held.add(digest)
            val_contents.problems.append(
                f'{record.ann_path}: its image {record.annotation.image!r} is a picture '
                f'{record_path} has in the train split; a picture trained on never goes to '
                'validation: left out of val')
        else:
            kept.append(record)
    val_contents.records = kept
    return held


def changed_pictures(records: Iterable[Record], digests: Mapping[str, str]) -> list[str]:
    """A line for each record whose file records another picture digest
    (:data:`~.annotation.IMAGE_SHA256_KEY`) than its image's now (``digests``, by
    :attr:`Record.name`: :func:`image_digests`); files recording none are not compared.

    Such a file is kept: ``image_size`` matched, and a picture re-encoded (an optimiser, a sync
    tool) keeps its points; another picture under the name would not, and the line says which
    to look at."""
    return [f'{r.ann_path}: image {r.annotation.image!r} changed since its points were saved'
            for r in records
            if recorded_image_sha256(r.annotation) not in (None, digests.get(r.name))]


def _held_in_splits_of_ratio_0(records: list[Record], placed: Mapping[str, str],
                               ratios: Mapping[str, float], record_path: Path,
                               problems: list[str]) -> list[Record]:
    """The records but those the earlier record places in a split of ratio 0, each left out
    with a line in ``problems``.

    Only a picture of the validation folder is recorded in such a split (val, with
    ``--val-annotation-dir``: :attr:`SplitRecord.pictures`): a file of the annotation folder
    showing one, whose file in the validation folder is broken or gone this run, would else
    be new and might go to train, and the validation file, fixed, would then be refused as a
    picture trained on. An image annotated in both folders stays in validation only.
    """
    kept = []
    for record in records:
        split = placed.get(record.name)
        if split is None or ratios[split] > 0:
            kept.append(record)
            continue
        whose = " (the validation folder's)" if split == 'val' else ''
        others = ' and '.join(name for name in SPLITS if name != split)
        problems.append(
            f'{record.ann_path}: its image {record.annotation.image!r} is a picture '
            f'{record_path} has in the {split} split{whose}, which takes no files of the '
            f'annotation folder: left out of {others}')
    return kept


def _new_split_record(record_path: Path, seed: int, ratios: dict[str, float], ann_dir: Path,
                      contents: FolderContents, assignment: dict[str, str],
                      digests: Mapping[str, str], stamps: Mapping[str, ImageStamp],
                      placed: Mapping[str, str], earlier: SplitRecord | None,
                      afresh: str | None, held: Collection[str] = (),
                      validation: Mapping[str, ImageStamp | None] | None = None
                      ) -> tuple[SplitRecord, SplitOutcome]:
    """The split record of this conversion, and what it kept, moved and added (nothing is
    written: :func:`convert` writes the record with the outputs, :func:`replace_as_one_set`).

    ``digests`` and ``stamps`` are those of :func:`image_digests`; ``placed`` is the split the
    earlier record gave each file, by its name or its picture (empty when made afresh);
    ``held``: the trained pictures left out of the validation folder
    (:func:`_trained_in_validation`); ``validation``: the SHA-256 of each picture of the
    validation folder in val this time -> its stamp (None where none may be trusted).

    Files of the earlier record still in the annotation folder but left out this time keep
    their split in the record, so that a file fixed (or reviewed) later returns to it rather
    than landing, say, in validation after a round trained on it. So do files gone from the
    annotation folder (unless moved: found again under another name), so that one restored,
    or a copy of its picture, returns to its split: a test file removed for one conversion
    and put back would otherwise be new, and might land in train. The picture a recorded
    file showed before it was given another (its name reused) stays in the record with its
    split (:attr:`SplitRecord.pictures`), for the same reason; so do the validation folder's
    pictures, so that a copy in the annotation folder never goes to train or test. Only
    ``--reshuffle`` forgets them.
    """
    outcome = SplitOutcome(record_path, seed, afresh, earlier=record_path.exists(),
                           kept_from=earlier.origin if earlier is not None else None)
    followed = earlier.assignment if earlier is not None else {}
    followed_images = earlier.images if earlier is not None else {}
    followed_stamps = earlier.stamps if earlier is not None else {}
    recorded = dict(assignment)
    images = {name: digests[name] for name in assignment}
    recorded_stamps = {name: stamps[name] for name in assignment if name in stamps}
    pictures = dict(earlier.pictures) if earlier is not None else {}
    picture_stamps = dict(earlier.picture_stamps) if earlier is not None else {}
    for name in assignment:  # a recorded name showing another picture now: the one it
        shown = followed_images.get(name)  # showed keeps its split
        if shown is not None and shown != digests[name]:
            pictures[shown] = earlier.picture_split(shown)
            if name in followed_stamps:
                picture_stamps[shown] = followed_stamps[name]
    for digest, stamp in (validation or {}).items():
        pictures.setdefault(digest, 'val')  # recorded in test before: held out of train too
        if stamp is not None:
            picture_stamps[digest] = stamp
    present = {path.relative_to(ann_dir).as_posix() for path in contents.files}
    # moved or renamed: a file new to the record placed by the picture of a recorded file
    # gone from the folder (not a new copy of a picture whose file is still there)
    gone_pictures = {followed_images[name] for name in followed
                     if name not in present and name in followed_images}
    moved = {name for name, split in assignment.items()
             if placed.get(name) == split and name not in followed
             and digests[name] in gone_pictures}
    moved_pictures = {digests[name] for name in moved}
    for name, split in followed.items():
        if name in assignment or (name not in present
                                  and followed_images.get(name) in moved_pictures):
            continue  # split this time, or found again under its new name
        recorded[name] = split
        if name in followed_images:
            images[name] = followed_images[name]
            if name in followed_stamps:
                recorded_stamps[name] = followed_stamps[name]
        if name in present or followed_images.get(name) in held:
            # left out this time; or gone, its picture waiting in the validation folder
            outcome.waiting += 1
        else:
            outcome.gone += 1
    for name, split in assignment.items():
        # in place: the split recorded for it (its name's, or a moved file's picture's)
        in_place = followed.get(name) == split if name in followed else name in moved
        counts = outcome.kept if in_place else outcome.added
        counts[split] = counts.get(split, 0) + 1
    outcome.moved = len(moved)
    shown_by_files = set(images.values())  # recorded with a file: not twice
    pictures = {digest: split for digest, split in pictures.items()
                if digest not in shown_by_files}
    picture_stamps = {digest: stamp for digest, stamp in picture_stamps.items()
                      if digest in pictures}
    return (SplitRecord(seed, ratios, recorded, images, recorded_stamps, pictures,
                        picture_stamps), outcome)


def convert(annotation_dir: str | os.PathLike, image_dir: str | os.PathLike,
            output_dir: str | os.PathLike, *, train_ratio: float = 0.7,
            val_ratio: float | None = None, test_ratio: float = 0.1, seed: int = 42,
            val_annotation_dir: str | os.PathLike | None = None, strict: bool = False,
            include_predicted: bool = False, reshuffle: bool = False,
            progress: bool = True) -> ConversionSummary:
    """Read, split and write. See the module docstring for the output layout.

    The split follows the output folder's split record (:class:`SplitRecord`), which must
    have the same seed and ratios: every file it assigns stays in its split (a file moved or
    renamed is found by its picture), files gone from the folder keep their split in the
    record (one put back returns to it, as does a picture a file showed before its name was
    given another), new files go where each split comes closest to its ratio of the total
    (:func:`split_records`). Without a record, or with ``reshuffle``, the folder is split
    afresh. Of the files showing one picture the one the record places is kept, in its split
    (:func:`_one_record_per_picture`). A split whose ratio is 0 has no outputs: those of an
    earlier conversion are removed.

    Every picture's SHA-256 goes into the record. The first conversion reads each image whole
    once for it; a later one only the images new or changed since (by name, size and
    modification time: :class:`ImageStamp`), the others cost a ``stat``.

    Args:
        annotation_dir: the folder of annotation files.
        image_dir: the folder their ``image`` names are relative to.
        output_dir: where ``annotations/*.json``, ``*.txt`` and ``splits.json`` go.
        train_ratio, val_ratio, test_ratio: the split shares (sum 1; 0 means no such split).
            ``val_ratio`` None is :data:`DEFAULT_VAL_RATIO`, or 0 with ``val_annotation_dir``.
        seed: seed of the split shuffle.
        val_annotation_dir: a folder that is the validation split as a whole (``val_ratio``
            0); ``annotation_dir`` is then split into train and test in the proportion of
            their ratios. An image annotated in both folders stays in validation only (unless
            the record has it in train), also in a run where its validation file is broken
            or gone (the record holds the folder's pictures:
            :func:`_held_in_splits_of_ratio_0`); the folder may lie inside
            ``annotation_dir`` (its files are then not read twice).
        strict: turn any file left out for a defect into a failure.
        include_predicted: use unreviewed predictions too.
        reshuffle: split afresh whatever the split record says.
        progress: show progress bars.

    Raises:
        ConversionError: bad ratios, overlapping folders, a file of the user's where a split
            list goes (:func:`check_own_listings`), an unreadable split record or one of
            another seed or ratios, or an earlier conversion's lists that cannot be followed
            (:meth:`SplitRecord.from_listings`; each without ``reshuffle``), an empty split, or
            any bad file when ``strict``.
    """
    output_dir = Path(output_dir)
    folders = [Path(annotation_dir)] + ([Path(val_annotation_dir)] if val_annotation_dir else [])
    check_output_dir(output_dir, folders)
    if val_annotation_dir is not None:
        val_root, ann_root = Path(val_annotation_dir).resolve(), Path(annotation_dir).resolve()
        if val_root == ann_root:
            raise ConversionError(
                f'--val-annotation-dir {val_annotation_dir} is the annotation folder itself: '
                'every image would be in validation and in training; give another folder, or '
                'leave the option out to split the folder by --val-ratio')
        if ann_root.is_relative_to(val_root):
            raise ConversionError(
                f'--val-annotation-dir {val_annotation_dir} holds the annotation folder '
                f'{annotation_dir}: every image would be in validation; give a folder beside '
                'it or inside it')
    if val_ratio is None:
        val_ratio = DEFAULT_VAL_RATIO if val_annotation_dir is None else 0.0
    ratios = check_ratios(train_ratio, val_ratio, test_ratio,
                          validation_folder=val_annotation_dir is not None)
    record_path = output_dir / SPLIT_RECORD
    # before the reading: a user's file where a list goes, an unreadable record, or another
    # seed, fails at once
    check_own_listings(output_dir, [name for name in SPLITS if ratios[name] > 0
                                    or (name == 'val' and val_annotation_dir is not None)])
    earlier, afresh = _previous_split(record_path, seed, ratios, reshuffle, folders[0],
                                      folders[1] if val_annotation_dir else None)
    reader = AnnotationReader(image_dir, include_predicted=include_predicted,
                              progress=progress)
    summary = ConversionSummary()
    val_contents = None
    if val_annotation_dir is not None:
        val_contents = reader.read(val_annotation_dir, one_per_picture=False)
    contents = reader.read(annotation_dir, exclude=folders[1:], one_per_picture=False)
    for folder in (val_contents, contents):  # (the reader's other users, evaluation and the
        # checks, take such pictures: inference crops them)
        if folder is not None:
            folder.records = _croppable_only(folder.records, folder.problems)
    claimed = ClaimedImages()
    digests, stamps = image_digests(contents.records, earlier, claimed, contents.problems,
                                    progress=progress)
    contents.records = [r for r in contents.records if r.name in digests]
    held, val_digests, val_stamps = set(), {}, {}
    if val_contents is not None:  # every picture of it is recorded (as val)
        val_digests, val_stamps = image_digests(val_contents.records, earlier, claimed,
                                                val_contents.problems, progress=progress)
        val_contents.records = [r for r in val_contents.records if r.name in val_digests]
        held = _trained_in_validation(val_contents, val_digests, earlier, record_path)
    kept, placed = _one_record_per_picture(
        val_contents.records if val_contents is not None else [], contents.records, earlier,
        digests, claimed, contents.problems)
    for folder in (contents, val_contents):
        if folder is not None:
            folder.records = [r for r in folder.records if id(r) in kept]
    contents.records = _held_in_splits_of_ratio_0(contents.records, placed, ratios,
                                                  record_path, contents.problems)
    for folder, folder_digests in ((contents, digests), (val_contents, val_digests)):
        if folder is not None:
            folder.changed_pictures = changed_pictures(folder.records, folder_digests)
            summary.contents.extend(folder)
    if strict and summary.problems:
        raise ConversionError(f'{len(summary.problems)} bad annotation files (--strict):',
                              quoted=summary.problems)

    splits = split_records(contents.records, ratios, seed, placed)
    assignment = {r.name: name for name in SPLITS for r in splits[name]}
    split_ratios = dict(ratios)
    if val_contents is not None:
        splits['val'] = val_contents.records
        ratios['val'] = 1.0
    if val_contents is not None and not splits['val']:
        # its files' reasons (a file losing its picture to another is named among the
        # annotation folder's): each line begins with the file and ': ' (not with the folder
        # as given: '.' joined to a name is the name alone)
        val_files = {f'{shown}: ' for path in val_contents.files
                     for shown in (str(path), printable(str(path), one_line=True))}
        raise _empty_validation_folder_error(
            folders[1], [p for p in summary.problems
                         if any(p[:i + 2] in val_files for i in _separators(p))])
    for name in SPLITS:
        if ratios[name] > 0 and not splits[name]:
            raise _empty_split_error(
                name, len(contents.records), ratios[name], summary.problems,
                record_path if placed else None)

    # every output made before any is written: what fails on the data fails with the earlier
    # outputs and record untouched
    validation = None
    if val_contents is not None:
        validation = {val_digests[r.name]: val_stamps.get(r.name) for r in splits['val']}
    record, summary.split = _new_split_record(
        record_path, seed, split_ratios, Path(annotation_dir), contents, assignment, digests,
        stamps, placed, earlier, afresh, held, validation)
    record_bytes = record.to_bytes()
    ann_out = output_dir / 'annotations'
    outputs: dict[str, list[tuple[Path, bytes]]] = {}  # split -> its COCO file and list
    next_id = 1
    for name in SPLITS:
        split = splits[name]
        summary.counts[name] = len(split)
        summary.faces[name] = sum(len(r.annotation.faces) for r in split)
        if ratios[name] > 0:
            listing = ''.join(f'{r.name}\n' for r in split).encode('utf-8')
            outputs[name] = [(ann_out / f'{name}.json', coco_bytes(split, output_dir, next_id)),
                             (output_dir / f'{name}.txt', listing)]
            next_id += len(split)

    ann_out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(ann_out)
    for own in [f'{name}.txt' for name in SPLITS] + [SPLIT_RECORD]:  # a killed run's, of the
        remove_stale_temporaries(output_dir, of=own)  # files written beside the user's
    # replaced, never written through: a link there points at someone's file, a FIFO would
    # wait for a reader for good; and as one set: a write failing partway (a full disk) left
    # a new train.json beside the old val.json, their images overlapping
    written = [item for name in SPLITS for item in outputs.get(name, [])]
    replace_as_one_set(written + [(record_path, record_bytes)], record_path)
    summary.outputs += [path for path, _ in written] + [record_path]
    for name in SPLITS:
        if name in outputs:
            continue
        # ratio 0: an earlier conversion's files would be read as this split's (tools/test.py)
        for stale in (ann_out / f'{name}.json', output_dir / f'{name}.txt'):
            if stale.is_file():
                stale.unlink()
                summary.removed.append(stale)
    return summary
