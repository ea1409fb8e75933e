"""The per-image annotation file: its schema, validation, and atomic writing.

One JSON file per image, written by the annotator (and by the synthetic generator and inference).
Version 1 of the schema::

    {
      "format": "animal_landmarks_mm.annotation",
      "version": 1,
      "image": "cat_001.png",                      # file name, relative to the image folder
      "image_size": {"width": 640, "height": 480},
      "status": "annotated",                       # or "skipped" (no usable face, bad quality)
      "status_reason": "",                         # why it was skipped, free text
      "faces": [
        {
          "landmarks": [[x, y], ... 28 points],     # image pixels, pixel centres at integers;
                                                    # null for a point marked absent
          "visibility": [2, 1, 0, ...],             # 2 visible, 1 occluded (placed by estimate),
                                                    # 0 absent; optional, default all 2
          "bbox": [x0, y0, x1, y1] or null          # optional face box, corners in pixels
        }
      ],
      "meta": {"annotator": "...", "created": "ISO time", "modified": "ISO time",
               "source": {...}}                     # free-form provenance
    }

The plain format of the original training tools is read too (a single face, all points visible)::

    {"image": "cat_001.png", "landmarks": [[x, y], ... 28], "image_size": {"width": W, "height": H}}
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .schema import NUM_KEYPOINTS

FORMAT_NAME = 'animal_landmarks_mm.annotation'
FORMAT_VERSION = 1

VISIBLE, OCCLUDED, ABSENT = 2, 1, 0

#: the image files the tools pick up in a folder
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images of a folder (by suffix; no pixel is read), sorted by name."""
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries
                      if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))


#: EXIF orientations that turn the stored pixels by 90 degrees (transpose, rotate, transverse)
_EXIF_QUARTER_TURNS = (5, 6, 7, 8)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image as mmcv and the annotator show it, from its header only.

    mmcv (hence mmpose) applies a JPEG's EXIF orientation when it decodes, so a photo stored
    sideways has its width and height swapped relative to the stored pixels.

    Raises:
        OSError: the file is missing or not an image (PIL's ``UnidentifiedImageError``).
    """
    from PIL import Image
    with Image.open(path) as im:  # the header only, no decoding
        width, height = im.size
        if im.getexif().get(0x0112) in _EXIF_QUARTER_TURNS:
            width, height = height, width
    return width, height


STATUS_ANNOTATED = 'annotated'
STATUS_SKIPPED = 'skipped'


class AnnotationError(ValueError):
    """An annotation file that cannot be used; the message is one line naming the file."""


@dataclass
class Face:
    """One annotated face.

    Attributes:
        landmarks: 28 ``(x, y)`` pairs in image pixels; ``None`` for an absent point.
        visibility: 28 flags, :data:`VISIBLE`, :data:`OCCLUDED` or :data:`ABSENT`.
        bbox: optional face box ``(x0, y0, x1, y1)`` in pixels.
    """

    landmarks: list[tuple[float, float] | None]
    visibility: list[int] = field(default_factory=lambda: [VISIBLE] * NUM_KEYPOINTS)
    bbox: tuple[float, float, float, float] | None = None

    def placed_points(self) -> list[tuple[float, float]]:
        """The points that are not absent."""
        return [p for p, v in zip(self.landmarks, self.visibility) if v != ABSENT and p is not None]

    def to_json(self) -> dict[str, Any]:
        return dict(
            landmarks=[None if p is None else [round(float(p[0]), 4), round(float(p[1]), 4)]
                       for p in self.landmarks],
            visibility=list(self.visibility),
            bbox=None if self.bbox is None else [float(v) for v in self.bbox],
        )


@dataclass
class ImageAnnotation:
    """The annotation of one image (see the module docstring for the JSON form).

    Attributes:
        image: image file name, relative to the image folder.
        width: image width in pixels.
        height: image height in pixels.
        faces: the annotated faces.
        status: :data:`STATUS_ANNOTATED` or :data:`STATUS_SKIPPED`.
        status_reason: why an image was skipped.
        meta: provenance (annotator, created/modified times, source).
    """

    image: str
    width: int
    height: int
    faces: list[Face] = field(default_factory=list)
    status: str = STATUS_ANNOTATED
    status_reason: str = ''
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(
            format=FORMAT_NAME,
            version=FORMAT_VERSION,
            image=self.image,
            image_size=dict(width=int(self.width), height=int(self.height)),
            status=self.status,
            status_reason=self.status_reason,
            faces=[f.to_json() for f in self.faces],
            meta=self.meta,
        )


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnnotationError(f'{what} is not a number: {value!r}')
    if not math.isfinite(value):
        raise AnnotationError(f'{what} is not finite: {value!r}')
    return float(value)


def _parse_face(raw: Any, where: str) -> Face:
    if not isinstance(raw, dict):
        raise AnnotationError(f'{where} is not an object')
    points = raw.get('landmarks')
    if not isinstance(points, list) or len(points) != NUM_KEYPOINTS:
        count = len(points) if isinstance(points, list) else 'no'
        raise AnnotationError(f'{where} has {count} landmarks, expected {NUM_KEYPOINTS}')
    visibility = raw.get('visibility', [VISIBLE] * NUM_KEYPOINTS)
    if (not isinstance(visibility, list) or len(visibility) != NUM_KEYPOINTS
            or any(v not in (VISIBLE, OCCLUDED, ABSENT) or isinstance(v, bool)
                   for v in visibility)):
        raise AnnotationError(
            f'{where} visibility must be {NUM_KEYPOINTS} flags of 2 (visible), '
            f'1 (occluded) or 0 (absent)')
    landmarks: list[tuple[float, float] | None] = []
    for i, (p, v) in enumerate(zip(points, visibility)):
        if p is None or (v == ABSENT and (p is None or p == [None, None])):
            if v != ABSENT:
                raise AnnotationError(f'{where} point {i} is null but not marked absent')
            landmarks.append(None)
            continue
        if not isinstance(p, list) or len(p) != 2:
            raise AnnotationError(f'{where} point {i} is not an [x, y] pair: {p!r}')
        landmarks.append((_number(p[0], f'{where} point {i} x'),
                          _number(p[1], f'{where} point {i} y')))
    bbox = raw.get('bbox')
    if bbox is not None:
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationError(f'{where} bbox must be [x0, y0, x1, y1]: {bbox!r}')
        x0, y0, x1, y1 = (_number(v, f'{where} bbox') for v in bbox)
        if x1 <= x0 or y1 <= y0:
            raise AnnotationError(f'{where} bbox has no area: {bbox!r}')
        bbox = (x0, y0, x1, y1)
    face = Face(landmarks=landmarks, visibility=list(visibility), bbox=bbox)
    if len(face.placed_points()) < 2:
        raise AnnotationError(f'{where} has fewer than 2 placed points')
    return face


def parse_annotation(raw: Any) -> ImageAnnotation:
    """Build an :class:`ImageAnnotation` from a decoded JSON object, in either format.

    Raises:
        AnnotationError: with a one-line reason (without the file name; callers add it).
    """
    if not isinstance(raw, dict):
        raise AnnotationError('top level is not a JSON object')
    image = raw.get('image')
    if not isinstance(image, str) or not image:
        raise AnnotationError('missing "image" file name')
    size = raw.get('image_size')
    if not isinstance(size, dict):
        raise AnnotationError('missing "image_size" {"width", "height"}')
    width, height = size.get('width'), size.get('height')
    if (not isinstance(width, int) or not isinstance(height, int) or isinstance(width, bool)
            or width <= 0 or height <= 0):
        raise AnnotationError(f'image_size must be positive integers: {size!r}')

    if raw.get('format') == FORMAT_NAME:
        version = raw.get('version')
        if version != FORMAT_VERSION:
            raise AnnotationError(
                f'format version {version!r} is not supported (this version reads '
                f'{FORMAT_VERSION})')
        status = raw.get('status', STATUS_ANNOTATED)
        if status not in (STATUS_ANNOTATED, STATUS_SKIPPED):
            raise AnnotationError(f'unknown status {status!r}')
        faces_raw = raw.get('faces')
        if not isinstance(faces_raw, list):
            raise AnnotationError('"faces" is not a list')
        faces = [_parse_face(f, f'face {i}') for i, f in enumerate(faces_raw)]
        meta = raw.get('meta') or {}
        return ImageAnnotation(image, width, height, faces, status,
                               str(raw.get('status_reason', '')), meta)
    if 'landmarks' in raw:  # the original tools' plain format: one face, all visible
        face = _parse_face({'landmarks': raw['landmarks']}, 'face')
        return ImageAnnotation(image, width, height, [face], meta={'legacy_format': True})
    raise AnnotationError(f'neither format: no "format": "{FORMAT_NAME}" and no "landmarks"')


def load_annotation(path: str | os.PathLike) -> ImageAnnotation:
    """Read and validate one annotation file.

    Raises:
        AnnotationError: one line, naming the file and the reason.
    """
    path = Path(path)
    try:
        with open(path, encoding='utf-8') as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(f'{path}: broken JSON ({e})') from None
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(f'{path}: cannot read ({e})') from None
    try:
        return parse_annotation(raw)
    except AnnotationError as e:
        raise AnnotationError(f'{path}: {e}') from None


_PAIR = re.compile(r'\[\s*(-?[\d.eE+-]+|null),\s*(-?[\d.eE+-]+|null)\s*\]')


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> None:
    """Write JSON to ``path`` so that a crash leaves either the old file or the new one, whole.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed over
    the target (an atomic replace on POSIX and Windows).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            text = json.dumps(obj, indent=indent, ensure_ascii=False)
            if indent is not None:  # one line per [x, y] pair, not one per number
                text = _PAIR.sub(r'[\1, \2]', text)
            f.write(text)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file's bytes."""
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


def save_annotation(path: str | os.PathLike, annotation: ImageAnnotation) -> None:
    """Write an annotation file atomically (see :func:`write_json_atomic`)."""
    write_json_atomic(path, annotation.to_json())
