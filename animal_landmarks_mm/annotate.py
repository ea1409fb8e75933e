"""The annotation session behind the landmark annotator: what to click next, edits, and saving
without ever losing work.

This is the annotator's logic, free of any UI so that it is tested on its own; the Gradio app
(:mod:`.annotate_app`, ``tools/annotate_landmarks.py``) drives it. Files it writes in the
output folder:

- ``<image stem>.json``: a finished annotation (the project's format, every face complete, or
  ``status: skipped``), written atomically, and only if nobody else wrote the file since it was
  opened (a second browser tab, say): otherwise :class:`AnnotationConflictError`;
- ``.drafts/<image stem>.json``: unfinished work (faces with points still to place), kept until
  the image is finished; the converter never reads hidden folders. A draft is guarded like the
  annotation file: a tab does not overwrite a draft another tab wrote after it opened the image.

Where two images share a stem (``a.png``, ``a.jpg``), their files are named ``a_png.json`` and
``a_jpg.json`` instead.

Files it did not write are never deleted.
"""
from __future__ import annotations

import collections
import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .annotation import (
    STATUS_ANNOTATED,
    STATUS_SKIPPED,
    AnnotationError,
    Face,
    ImageAnnotation,
    file_sha256,
    image_files,
    image_size,
    load_annotation,
    write_json_atomic,
)
from .schema import ABSENT, NUM_KEYPOINTS, OCCLUDED, VISIBLE, describe

DRAFT_DIR = '.drafts'


class AnnotationConflictError(RuntimeError):
    """The annotation file changed on disk since it was opened (another tab or person)."""


class UnsafeNameError(ValueError):
    """A file name that would reach outside the image or output folder."""


def resolve_inside(root: Path, name: str) -> Path:
    """``root / name``, refusing absolute names, ``..`` and links that lead outside ``root``."""
    if not name or Path(name).is_absolute():
        raise UnsafeNameError(f'{name!r} is not a file name inside {root}')
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()):
        raise UnsafeNameError(f'{name!r} is outside {root}')
    return path


@dataclass
class FaceEdit:
    """One face being annotated: 28 slots, each a point or empty, a visibility flag each, and
    the face box when one was drawn (for a model's prediction) or loaded."""

    points: list[tuple[float, float] | None] = field(
        default_factory=lambda: [None] * NUM_KEYPOINTS)
    visibility: list[int] = field(default_factory=lambda: [VISIBLE] * NUM_KEYPOINTS)
    bbox: tuple[float, float, float, float] | None = None

    def next_index(self) -> int | None:
        """The first point neither placed nor marked absent (the next click places it)."""
        for k, (point, flag) in enumerate(zip(self.points, self.visibility)):
            if point is None and flag != ABSENT:
                return k
        return None

    def complete(self) -> bool:
        return self.next_index() is None


@dataclass
class ImageEdit:
    """The edits of one image: its faces, which face and point the next click is for."""

    image: str
    width: int
    height: int
    faces: list[FaceEdit] = field(default_factory=lambda: [FaceEdit()])
    face: int = 0
    selected: int | None = None  # a point picked for correction
    status: str = STATUS_ANNOTATED
    status_reason: str = ''
    revision: str | None = None  # sha256 of the annotation file when opened
    draft_revision: str | None = None  # sha256 of the draft when opened or last written here
    dirty: bool = False

    @property
    def current(self) -> FaceEdit:
        return self.faces[self.face]

    def target(self) -> int | None:
        """The point the next click places: the picked one, else the next in order."""
        return self.selected if self.selected is not None else self.current.next_index()

    def prompt(self) -> str:
        """What the panel says, e.g. ``'face 1 of 1, next: 12: left eye, upper lid, top'``."""
        where = f'face {self.face + 1} of {len(self.faces)}'
        if self.status == STATUS_SKIPPED:
            return f'skipped: {self.status_reason}'
        target = self.target()
        if target is None:
            return f'{where}: complete'
        verb = 'correcting' if self.selected is not None else 'next'
        flag = ' (occluded: place it by estimate)' if \
            self.current.visibility[target] == OCCLUDED else ''
        return f'{where}, {verb}: {describe(target)}{flag}'

    def click(self, x: float, y: float) -> int | None:
        """Place the target point at image pixel ``(x, y)``; returns its index (None if the
        face is complete and no point is picked)."""
        target = self.target()
        if target is None:
            return None
        if not (0 <= x <= self.width and 0 <= y <= self.height):
            raise ValueError(f'({x:g}, {y:g}) is outside the {self.width}x{self.height} image')
        face = self.current
        face.points[target] = (float(x), float(y))
        if face.visibility[target] == ABSENT:
            face.visibility[target] = VISIBLE
        self.selected = None
        self.status = STATUS_ANNOTATED
        self.dirty = True
        return target

    def pick_nearest(self, x: float, y: float, radius: float) -> int | None:
        """Pick the current face's placed point nearest to ``(x, y)`` for correction, if one
        lies within ``radius`` pixels; returns its index."""
        best, best_distance = None, radius
        for k, point in enumerate(self.current.points):
            if point is not None:
                distance = math.dist(point, (x, y))
                if distance <= best_distance:
                    best, best_distance = k, distance
        if best is not None:
            self.selected = best
        return best

    def set_face(self, points: list[tuple[float, float]],
                 bbox: tuple[float, float, float, float] | None = None) -> None:
        """Replace the current face's points (a model's prediction, all visible)."""
        if len(points) != NUM_KEYPOINTS:
            raise ValueError(f'expected {NUM_KEYPOINTS} points, got {len(points)}')
        self.faces[self.face] = FaceEdit([(float(x), float(y)) for x, y in points], bbox=bbox)
        self.selected = None
        self.status = STATUS_ANNOTATED
        self.dirty = True

    def mark(self, flag: int) -> int | None:
        """Mark the target point occluded (the next click places it by estimate) or absent."""
        if flag not in (OCCLUDED, ABSENT, VISIBLE):
            raise ValueError(f'unknown visibility flag {flag!r}')
        target = self.target()
        if target is None:
            return None
        self.current.visibility[target] = flag
        if flag == ABSENT:
            self.current.points[target] = None
            self.selected = None
        self.dirty = True
        return target

    def select(self, index: int | None) -> None:
        """Pick a point to correct (None: back to the order)."""
        if index is not None and not 0 <= index < NUM_KEYPOINTS:
            raise ValueError(f'point index must be 0-{NUM_KEYPOINTS - 1}, got {index}')
        self.selected = index

    def clear_last(self) -> int | None:
        """Undo the last point of the order (placed or marked absent)."""
        face = self.current
        if self.selected is not None:  # "clear last" while correcting: stop correcting
            self.selected = None
            return None
        done = [k for k in range(NUM_KEYPOINTS)
                if face.points[k] is not None or face.visibility[k] == ABSENT]
        if not done:
            return None
        last = done[-1]
        face.points[last], face.visibility[last] = None, VISIBLE
        self.selected = None
        self.dirty = True
        return last

    def clear_all(self) -> None:
        """Empty the current face."""
        self.faces[self.face] = FaceEdit()
        self.selected = None
        self.dirty = True

    def new_face(self) -> None:
        """Start another face in the same image."""
        self.faces.append(FaceEdit())
        self.face = len(self.faces) - 1
        self.selected = None
        self.dirty = True

    def skip(self, reason: str) -> None:
        """Mark the image unusable (no usable face, bad quality): the converter leaves it out."""
        self.status, self.status_reason = STATUS_SKIPPED, reason or 'skipped'
        self.dirty = True

    def finished(self) -> bool:
        return self.status == STATUS_SKIPPED or all(f.complete() for f in self.faces)

    def to_annotation(self, meta: dict) -> ImageAnnotation:
        """The finished annotation (only complete faces; none for a skipped image)."""
        faces = [] if self.status == STATUS_SKIPPED else [
            Face(list(f.points), list(f.visibility), f.bbox) for f in self.faces if f.complete()]
        return ImageAnnotation(self.image, self.width, self.height, faces, self.status,
                               self.status_reason, meta)

    def to_draft(self) -> dict:
        return dict(image=self.image, width=self.width, height=self.height, face=self.face,
                    status=self.status, status_reason=self.status_reason,
                    revision=self.revision,
                    faces=[dict(points=[None if p is None else list(p) for p in f.points],
                                visibility=f.visibility,
                                bbox=None if f.bbox is None else list(f.bbox))
                           for f in self.faces])

    @classmethod
    def from_draft(cls, raw: dict) -> ImageEdit:
        faces = [FaceEdit([None if p is None else tuple(p) for p in f['points']],
                          list(f['visibility']),
                          None if f.get('bbox') is None else tuple(f['bbox']))
                 for f in raw['faces']]
        return cls(raw['image'], raw['width'], raw['height'], faces, raw['face'],
                   status=raw['status'], status_reason=raw['status_reason'],
                   revision=raw['revision'])


def _sha256(path: Path) -> str | None:
    """The file's sha256, or None when there is no file."""
    try:
        return file_sha256(path)
    except FileNotFoundError:
        return None


class AnnotationSession:
    """Images of a folder and their annotation files in another.

    Args:
        image_dir: the images (listed by name only: a folder of thousands opens at once).
        output_dir: where annotation files go (created).
        annotator: recorded in each file's ``meta``.
    """

    def __init__(self, image_dir: str | os.PathLike, output_dir: str | os.PathLike,
                 annotator: str = ''):
        self.image_dir = Path(image_dir).resolve()
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f'image folder not found: {image_dir}')
        self.output_dir = Path(output_dir).resolve()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.annotator = annotator
        self.images = [p.name for p in image_files(self.image_dir)]
        stems = collections.Counter(Path(name).stem for name in self.images)
        self._file_names = {  # image -> its annotation file's name
            name: f'{stem}_{suffix[1:]}.json' if stems[stem] > 1 else f'{stem}.json'
            for name in self.images for stem, suffix in [os.path.splitext(name)]}

    def image_path(self, image: str) -> Path:
        return resolve_inside(self.image_dir, image)

    def _file_name(self, image: str) -> str:
        return self._file_names.get(image) or f'{Path(image).stem}.json'

    def annotation_path(self, image: str) -> Path:
        return resolve_inside(self.output_dir, self._file_name(image))

    def draft_path(self, image: str) -> Path:
        return resolve_inside(self.output_dir / DRAFT_DIR, self._file_name(image))

    def is_done(self, image: str) -> bool:
        return self.annotation_path(image).is_file()

    def progress(self) -> tuple[int, int]:
        """(images with an annotation file, images)."""
        done = set(os.listdir(self.output_dir))
        return sum(name in done for name in self._file_names.values()), len(self.images)

    def next_unannotated(self, after: int = -1) -> int | None:
        """Index of the first image after ``after`` without an annotation file (wrapping)."""
        count = len(self.images)
        for step in range(1, count + 1):
            index = (after + step) % count
            if not self.is_done(self.images[index]):
                return index
        return None

    def open(self, image: str) -> ImageEdit:
        """An image's edits: its draft if one is pending, else its annotation, else empty.

        Raises:
            UnsafeNameError: a name outside the image folder.
            AnnotationError: an unreadable image or annotation file (one line, named).
        """
        width, height = image_size(self.image_path(image))
        draft = self.draft_path(image)
        if draft.is_file():
            try:
                edit = ImageEdit.from_draft(json.loads(draft.read_text()))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise AnnotationError(f'{draft}: broken draft ({e})') from None
            edit.draft_revision, edit.dirty = _sha256(draft), True
            return edit
        target = self.annotation_path(image)
        if not target.is_file():
            return ImageEdit(image, width, height)
        ann = load_annotation(target)
        faces = [FaceEdit(list(f.landmarks), list(f.visibility), f.bbox) for f in ann.faces]
        return ImageEdit(image, width, height, faces or [FaceEdit()], 0,
                         status=ann.status, status_reason=ann.status_reason,
                         revision=_sha256(target))

    def save(self, edit: ImageEdit) -> Path:
        """Write what ``edit`` holds; returns the file written.

        A finished image (every face complete, or skipped) goes to its annotation file,
        atomically, and its draft is removed; unfinished work goes to the draft.

        Raises:
            AnnotationConflictError: the annotation file was written by someone else since
                ``edit`` was opened; nothing is overwritten (reopen the image to see theirs).
        """
        target, draft = self.annotation_path(edit.image), self.draft_path(edit.image)
        for path, seen in ((target, edit.revision), (draft, edit.draft_revision)):
            if _sha256(path) != seen:
                raise AnnotationConflictError(
                    f'{path} was changed by someone else since {edit.image} was opened here '
                    '(another tab?); reopen the image to see the newer version')
        if not edit.finished():
            write_json_atomic(draft, edit.to_draft())
            edit.draft_revision = _sha256(draft)
            return draft
        now = datetime.now(UTC).isoformat(timespec='seconds')
        # Keep what the file already says of itself (a model's scores, the source...).
        meta = load_annotation(target).meta if target.is_file() else {}
        meta.setdefault('created', now)
        meta.update(annotator=self.annotator, modified=now)
        sidecar = self.image_dir / f'{edit.image}.json'  # provenance from tools/crawl_images.py
        if sidecar.is_file():
            try:
                meta['source'] = json.loads(sidecar.read_text())
            except json.JSONDecodeError:
                pass
        write_json_atomic(target, edit.to_annotation(meta).to_json())
        edit.revision, edit.dirty = _sha256(target), False
        draft.unlink(missing_ok=True)
        edit.draft_revision = None
        return target
