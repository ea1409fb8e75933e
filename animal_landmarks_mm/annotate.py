"""The annotation session behind the landmark annotator: what to click next, edits, undo, review
of a model's predictions, and saving without ever losing work.

This is the annotator's logic, free of any UI so that it is tested on its own; the app
(:mod:`.annotate_app`, ``tools/annotate_landmarks.py``) only draws and reports edits, as the
operations of :meth:`ImageEdit.apply`. Files it writes in the output folder:

- ``<name>.json``: a finished annotation (the project's format, every face complete, or
  ``status: skipped``), written atomically, and only if nobody else wrote the file since it was
  opened (a second browser tab, say): otherwise :class:`AnnotationConflictError`. A model's
  points that nobody accepted yet keep ``status: predicted`` (never trained on unreviewed);
- ``.drafts/<name>.json``: unfinished work (faces with points still to place), kept until the
  image is finished; the converter never reads hidden folders. A draft is guarded like the
  annotation file: a tab does not overwrite a draft another tab wrote after it opened the image.

Which file belongs to which image (one-to-one for any set of names, see
:meth:`AnnotationSession._bind_files`): a file belongs to the image its ``"image"`` field names;
an image without a file gets the first name of ``<stem>.json``, ``<name>.json``,
``<name>.<k>.json`` that no file and no other image holds (compared case-insensitively, so that
the files stay apart on case-insensitive disks too). Files the earlier scheme wrote
(``<stem>_<suffix>.json``) are found through their ``"image"`` field.

Files it did not write are never deleted (only its own stale temporary files, when a session
opens).
"""
from __future__ import annotations

import collections
import errno
import hashlib
import itertools
import json
import logging
import math
import os
import re
import time
import unicodedata
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .annotation import (
    ANNOTATION_MAX_BYTES,
    ANNOTATION_MAX_FACES,
    FORMAT_NAME,
    IMAGE_SHA256_KEY,
    LEGACY_FORMAT_KEY,
    MODEL_ANNOTATOR,
    STATUS_ANNOTATED,
    STATUS_PREDICTED,
    STATUS_SKIPPED,
    STATUSES,
    AnnotationError,
    Face,
    ImageAnnotation,
    NotRegularFileError,
    RepeatedKeyError,
    annotation_bytes,
    annotation_file_names,
    file_choice_key,
    file_sha256,
    fit_name,
    image_key,
    image_size,
    is_annotation_name,
    is_hidden,
    is_models_prediction,
    is_sha256_hex,
    json_bytes,
    load_annotation,
    loads_user_json,
    parse_annotation,
    read_annotation_bytes,
    read_annotation_json,
    read_regular_file,
    read_sidecar,
    recorded_image_sha256,
    remove_stale_temporaries,
    scan_images,
    sync_folder,
    unencodable_string,
    write_bytes_atomic,
)
from .converter import ImageStamp, scan_annotation_folder
from .errors import AnimalLandmarksError, first_line, printable, shown_value
from .file_lock import (
    NotRegularLockFileError,
    clear_holder,
    has_flock,
    lock_exclusive,
    lock_holder,
    open_lock_file,
    write_holder,
)
from .schema import ABSENT, NUM_KEYPOINTS, OCCLUDED, VISIBILITY_FLAGS, VISIBLE, describe

logger = logging.getLogger(__name__)

DRAFT_DIR = '.drafts'
#: Drafts that could no longer be saved (their annotation file changed), in ``DRAFT_DIR``.
SUPERSEDED_DIR = 'superseded'
#: Undo steps kept per opened image (the issue asks for at least 100).
HISTORY_STEPS = 200
#: Faces a page may make per image: a group picture has a few dozen at most. Bounded because
#: every undo step copies every face, under the lock all tabs share: a page adding faces without
#: end would stall the annotator. Files (and their drafts) holding more, e.g. from a detector on
#: a crowd picture, still open: the bound is on :meth:`ImageEdit.new_face` only.
MAX_FACES = 64
#: The most faces a draft may hold: twice what a file may (an older version's drafts held more
#: than a file, and reopen to have faces removed before a save), not more: a draft of 60,000
#: faces took 53 MiB an undo step (200 kept), and could never be saved.
DRAFT_MAX_FACES = 2 * ANNOTATION_MAX_FACES
#: The longest skip reason taken (the page offers a few words; a reason is no document).
MAX_REASON_CHARS = 500
#: The lock file a running annotator (or ``tools/infer.py``) holds in its output folder
#: (:func:`lock_output_folder`).
LOCK_FILE = '.annotator.lock'
#: The largest ``--files`` list read (bytes): a ranking of 300,000 images (about 200 bytes an
#: entry) fits; a larger file, or a device, is no list of names (never read whole).
MAX_ORDER_FILE_BYTES = 64 << 20
#: ``meta`` key of a skipped file: which of its faces (indices) are a model's points nobody
#: accepted, so that taking the skip back makes them predicted again, not annotated.
PREDICTED_FACES_KEY = 'predicted_faces'
#: How many picture digests a session keeps (:meth:`AnnotationSession.picture_sha256`): each
#: an entry of about 300 bytes; past it they are hashed again.
PICTURE_DIGESTS_KEPT = 100_000
#: What opening tells of a file or draft whose points were placed on other bytes of a picture
#: of the same size (:data:`~.annotation.IMAGE_SHA256_KEY`): a notice, not a refusal, since a
#: picture re-encoded (an optimiser, a sync converting it) keeps its points.
PICTURE_CHANGED_NOTICE = ('the picture changed since its points were saved (same size, other '
                          'bytes): check that they still fit it; saving records the picture as '
                          'it is now')


class AnnotationConflictError(AnimalLandmarksError, RuntimeError):
    """The annotation file changed on disk since it was opened (another tab or person)."""


class UnsafeNameError(AnimalLandmarksError, ValueError):
    """A file name that is not one of the session's images, or would reach outside a folder."""


class EditError(AnimalLandmarksError, ValueError):
    """An edit operation that cannot be applied (unknown, out of range, malformed)."""


class ImageFolderError(AnimalLandmarksError, FileNotFoundError):
    """The image folder to annotate is missing."""


class OutputFolderError(AnimalLandmarksError, OSError):
    """The output folder cannot be created."""


class OutputFolderInUseError(OutputFolderError):
    """Another annotator process (or ``tools/infer.py``) works in the output folder
    (:func:`lock_output_folder`)."""


class OrderFileError(AnimalLandmarksError, ValueError):
    """A ``--files`` list that cannot be read."""


class AnnotatorNameError(AnimalLandmarksError, ValueError):
    """An annotator's name that the files cannot record (see :class:`AnnotationSession`)."""


def resolve_inside(root: Path, name: str) -> Path:
    """``root / name``, refusing absolute names, ``..``, links that lead outside ``root`` and
    a loop of links (``Path.resolve`` raises RuntimeError for one on Python 3.11 and 3.12)."""
    if not name or Path(name).is_absolute():
        raise UnsafeNameError(f'{name!r} is not a file name inside {root}')
    try:
        path = (root / name).resolve()
    except RuntimeError:
        raise UnsafeNameError(f'{name!r} in {root} is a link that cannot be followed (a loop '
                              'of links)') from None
    if not path.is_relative_to(root.resolve()):
        raise UnsafeNameError(f'{name!r} is outside {root}')
    return path


def _check_size(path: Path, file_width: int, file_height: int, image: str, width: int,
                height: int) -> None:
    """Refuse a file whose points were placed on a picture of another size (the image was
    replaced or resized since): one edit would save the new size with the old points."""
    if (file_width, file_height) != (width, height):
        raise AnnotationError(
            f'{path}: image_size {file_width}x{file_height} does not match the image {image} '
            f'({width}x{height}); the picture changed since it was annotated: move the file '
            'away to annotate it again')


def now_iso() -> str:
    """The time now, as the files record it (UTC, seconds)."""
    return datetime.now(UTC).isoformat(timespec='seconds')


@dataclass
class FaceEdit:
    """One face being annotated: 28 slots, each a point or empty, a visibility flag each, the
    face box when one was drawn (for a model's prediction) or loaded, and whether its points
    are a model's that nobody has accepted yet (``predicted``; ``scores``: the model's)."""

    points: list[tuple[float, float] | None] = field(
        default_factory=lambda: [None] * NUM_KEYPOINTS)
    visibility: list[int] = field(default_factory=lambda: [VISIBLE] * NUM_KEYPOINTS)
    bbox: tuple[float, float, float, float] | None = None
    scores: list[float] | None = None
    predicted: bool = False

    def next_index(self) -> int | None:
        """The first point neither placed nor marked absent (the next click places it)."""
        for k, (point, flag) in enumerate(zip(self.points, self.visibility)):
            if point is None and flag != ABSENT:
                return k
        return None

    def complete(self) -> bool:
        return self.next_index() is None

    def copy(self) -> FaceEdit:
        return FaceEdit(points=list(self.points), visibility=list(self.visibility),
                        bbox=self.bbox, predicted=self.predicted,
                        scores=None if self.scores is None else list(self.scores))

    def to_face(self) -> Face:
        """The face as an annotation file holds it."""
        return Face(landmarks=list(self.points), visibility=list(self.visibility),
                    bbox=self.bbox, scores=None if self.scores is None else list(self.scores))

    def to_json(self) -> dict[str, Any]:
        """The face as the app and drafts exchange it."""
        return dict(points=[None if p is None else [p[0], p[1]] for p in self.points],
                    visibility=list(self.visibility),
                    bbox=None if self.bbox is None else list(self.bbox),
                    scores=self.scores, predicted=self.predicted)

    @classmethod
    def from_json(cls, raw: dict) -> FaceEdit:
        """A face of a draft (written by :meth:`to_json`, but read as untrusted: a value of
        another type or a non-finite number raises :class:`EditError`)."""
        visibility = raw['visibility']
        if not isinstance(visibility, list) or not all(
                type(v) is int and v in VISIBILITY_FLAGS for v in visibility):
            raise EditError(f'visibility must be flags of {sorted(VISIBILITY_FLAGS)}')
        bbox, scores = raw.get('bbox'), raw.get('scores')
        return cls(
            points=[None if p is None else (_finite(p[0], 'x'), _finite(p[1], 'y'))
                    for p in raw['points']],
            visibility=[int(v) for v in visibility],
            bbox=None if bbox is None else tuple(_finite(v, 'box corner') for v in bbox),
            scores=None if scores is None else [_finite(v, 'score') for v in scores],
            predicted=bool(raw.get('predicted', False)))


@dataclass(frozen=True)
class _Snapshot:
    """What undo restores: every face, the current one, the status and the review."""

    faces: tuple[FaceEdit, ...]
    face: int
    status: str
    status_reason: str
    reviewed_at: str | None
    model: str | None


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EditError(f'{what} must be a whole number, got {value!r}'[:200])
    return value


def _finite(value: Any, what: str) -> float:
    """``value`` as a float, if it is a finite number (an int too large for a float is not).

    Raises:
        EditError: anything else, named in one line.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EditError(f'{what} must be a finite number, got {value!r}'[:200])
    try:
        number = float(value)
    except OverflowError:  # an int of hundreds of digits (JSON allows any); its repr may fail
        raise EditError(f'{what} must be a finite number, got an integer of '
                        f'{value.bit_length()} bits') from None
    if not math.isfinite(number):
        raise EditError(f'{what} must be a finite number, got {value!r}')
    return number


def _text(value: Any, what: str, max_chars: int | None = None) -> str:
    """``value`` if it is text that a file and the page can hold: valid Unicode (JSON may spell
    a lone surrogate, ``"\\udcff"``, which no UTF-8 file can be written with), of at most
    ``max_chars`` characters.

    Raises:
        EditError: anything else, named in one line.
    """
    if not isinstance(value, str):
        raise EditError(f'{what} is text, got {value!r}'[:200])
    if unencodable_string(value) is not None:
        raise EditError(f'{what} is not valid Unicode (a lone surrogate): '
                        f'{printable(value, one_line=True, limit=80)}')
    if max_chars is not None and len(value) > max_chars:
        raise EditError(f'{what} is {len(value)} characters long; at most {max_chars}')
    return value


def _review_time(value: Any) -> str:
    """A review time a page sends (JavaScript's ``toISOString``), in the files' form (UTC,
    whole seconds).

    Raises:
        EditError: no text, no ISO 8601 time, no time zone, or a time UTC cannot hold.
    """
    text = _text(value, 'reviewed_at')
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise EditError(f'reviewed_at is a time (ISO 8601), got {text!r}'[:200]) from None
    if when.tzinfo is None:
        raise EditError(f'reviewed_at has no time zone: {text!r}'[:200])
    try:
        return when.astimezone(UTC).isoformat(timespec='seconds')
    except OverflowError:  # 9999-12-31T23:00-05:00 is past datetime's last UTC day
        raise EditError(f'reviewed_at is out of range: {text!r}'[:200]) from None


@dataclass
class ImageEdit:
    """The edits of one image: its faces, which face and point the next click is for, and the
    undo history (:data:`HISTORY_STEPS` steps; every edit is a step: place, move, flag, clear,
    a new or removed face, a box, predict, accept, skip).

    Coordinates are image pixels with pixel centres at integers, so a point may lie anywhere in
    ``[-0.5, width - 0.5] x [-0.5, height - 0.5]``.
    """

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
    reviewed_at: str | None = None  # when Accept turned a model's points into an annotation
    model: str | None = None  # the model whose points Predict gave (meta.model)
    # the SHA-256 of the picture's bytes when opened (meta.image_sha256 of the saved file)
    image_sha256: str | None = None
    notice: str = field(default='', compare=False)  # what opening it did, to tell the user
    # why it cannot be edited here (a draft that could not be set aside): every edit is refused
    read_only: str = field(default='', compare=False)
    history: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=HISTORY_STEPS), repr=False,
        compare=False)
    future: list = field(default_factory=list, repr=False, compare=False)
    recorded: int = field(default=0, repr=False, compare=False)  # undo steps ever recorded
    # the most faces a restore may set (:meth:`restore`), fixed when the image is opened
    most_faces: int = field(default=0, repr=False, compare=False)

    def __post_init__(self) -> None:
        # from the faces opened, never the faces now: a limit that grew with each restore
        # let a page reach any number of faces, each copied by every undo step
        # (and never more than a file may hold: a restored page of more could not be saved)
        self.most_faces = min(max(len(self.faces), MAX_FACES) + MAX_FACES, ANNOTATION_MAX_FACES)

    @property
    def current(self) -> FaceEdit:
        return self.faces[self.face]

    # undo ----------------------------------------------------------------------------------

    def _snapshot(self) -> _Snapshot:
        return _Snapshot(faces=tuple(f.copy() for f in self.faces), face=self.face,
                         status=self.status, status_reason=self.status_reason,
                         reviewed_at=self.reviewed_at, model=self.model)

    def _restore(self, snapshot: _Snapshot) -> None:
        self.faces = [f.copy() for f in snapshot.faces]
        self.face = min(snapshot.face, len(self.faces) - 1)
        self.status, self.status_reason = snapshot.status, snapshot.status_reason
        self.reviewed_at, self.model = snapshot.reviewed_at, snapshot.model
        self.selected = None
        self.dirty = True

    def _push_undo_step(self) -> None:
        self.history.append(self._snapshot())
        self.future.clear()
        self.recorded += 1

    def _record(self) -> None:
        """Called before each edit: the state it changes becomes an undo step.

        Raises:
            EditError: the image is read-only here (:attr:`read_only` says why).
        """
        if self.read_only:
            raise EditError(f'not editable here: {self.read_only}')
        self._push_undo_step()
        self.dirty = True

    def record_unchanged(self) -> None:
        """An undo step that changes nothing, for an edit that was refused after the page had
        counted it as a step (the page records before it sends): both histories stay in step,
        so that the page's next undo and the server's undo the same edit. Nothing changed, so
        nothing is to be saved: :attr:`dirty` stays as it was (a rewrite would change the
        file's revision under another tab, a false conflict)."""
        self._push_undo_step()

    def content(self) -> dict[str, Any]:
        """What an edit can change: the faces, status and review (not the current face,
        which is no edit). Equal contents need no save."""
        content = self.to_json()
        del content['face']
        return content

    def _edited(self) -> None:
        """After an edit of points: an image with a model's unaccepted face stays predicted;
        any other edit of a skipped image takes it back into annotation (its faces with it)."""
        self.status = STATUS_PREDICTED if any(f.predicted for f in self.faces) \
            else STATUS_ANNOTATED
        self.status_reason = ''

    def undo(self) -> bool:
        """Undo the last edit; returns whether there was one."""
        if not self.history:
            return False
        self.future.append(self._snapshot())
        self._restore(self.history.pop())
        return True

    def redo(self) -> bool:
        """Redo the last undone edit; returns whether there was one."""
        if not self.future:
            return False
        self.history.append(self._snapshot())
        self._restore(self.future.pop())
        return True

    # what to click next ----------------------------------------------------------------------

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
            problem = self.problem()
            return f'{where}: complete' if problem is None else \
                f'{where}: not done, kept as a draft: {problem} (move or place points, or skip)'
        verb = 'correcting' if self.selected is not None else 'next'
        flag = ' (occluded: place it by estimate)' if \
            self.current.visibility[target] == OCCLUDED else ''
        return f'{where}, {verb}: {describe(target)}{flag}'

    # edits -----------------------------------------------------------------------------------

    def _face_index(self, face: int | None) -> int:
        """Face ``face``'s index, checked (None: the current face)."""
        if face is None:
            return self.face
        if isinstance(face, bool) or not isinstance(face, int) or \
                not 0 <= face < len(self.faces):
            raise EditError(f'no face {face!r}: the image has {len(self.faces)}')
        return face

    def _begin(self, face: int | None = None) -> FaceEdit:
        """Start an edit of face ``face`` (checked before): record the undo step, then make
        it the current face."""
        index = self._face_index(face)
        self._record()
        self.face = index
        return self.current

    def select_face(self, face: int) -> None:
        """Make ``face`` the current face (not an edit: nothing to undo)."""
        self.face = self._face_index(face)

    @staticmethod
    def _index(index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, int) or \
                not 0 <= index < NUM_KEYPOINTS:
            raise EditError(f'point index must be 0-{NUM_KEYPOINTS - 1}, got {index!r}')
        return index

    def _inside(self, x: Any, y: Any) -> tuple[float, float]:
        x, y = _finite(x, 'x'), _finite(y, 'y')
        if not (-0.5 <= x <= self.width - 0.5 and -0.5 <= y <= self.height - 0.5):
            raise EditError(f'({x:g}, {y:g}) is outside the {self.width}x{self.height} image')
        return x, y

    def _points_changed(self) -> None:
        """After a person placed, moved, flagged or removed a point of the current face: the
        model's scores go (they describe the points the model gave, and a file holds all 28
        scores of a face or none); the face stays the model's to accept if it was."""
        self.current.scores = None
        self.selected = None
        self._edited()

    def place(self, index: int, x: float, y: float, face: int | None = None) -> int:
        """Place (or move) point ``index`` at image pixel ``(x, y)``; an absent point becomes
        visible, an occluded one stays occluded (placed by estimate)."""
        index, (x, y) = self._index(index), self._inside(x, y)
        target = self._begin(face)
        target.points[index] = (x, y)
        if target.visibility[index] == ABSENT:
            target.visibility[index] = VISIBLE
        self._points_changed()
        return index

    def click(self, x: float, y: float) -> int | None:
        """Place the target point at image pixel ``(x, y)``; returns its index (None if the
        face is complete and no point is picked)."""
        target = self.target()
        if target is None:
            return None
        return self.place(target, x, y)

    def set_visibility(self, index: int, flag: int, face: int | None = None) -> int:
        """Flag point ``index``: occluded (placed by estimate, or to be), absent (its point is
        removed) or visible."""
        index = self._index(index)
        if not isinstance(flag, int) or isinstance(flag, bool) or flag not in VISIBILITY_FLAGS:
            raise EditError(f'unknown visibility flag {flag!r}')  # 1.0 would break the draft
        self._begin(face)
        self.current.visibility[index] = flag
        if flag == ABSENT:
            self.current.points[index] = None
        self._points_changed()
        return index

    def mark(self, flag: int) -> int | None:
        """Mark the target point occluded (the next click places it by estimate) or absent."""
        if flag not in VISIBILITY_FLAGS:
            raise ValueError(f'unknown visibility flag {flag!r}')
        target = self.target()
        if target is None:
            return None
        return self.set_visibility(target, flag)

    def remove_point(self, index: int, face: int | None = None) -> int:
        """Take point ``index`` away (it is to be placed again, visible)."""
        index = self._index(index)
        self._begin(face)
        self.current.points[index], self.current.visibility[index] = None, VISIBLE
        self._points_changed()
        return index

    def select(self, index: int | None) -> None:
        """Pick a point to correct (None: back to the order)."""
        if index is not None and not 0 <= index < NUM_KEYPOINTS:
            raise ValueError(f'point index must be 0-{NUM_KEYPOINTS - 1}, got {index}')
        self.selected = index

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

    def clear_last(self) -> int | None:
        """Take away the last point of the order (placed or marked absent)."""
        face = self.current
        if self.selected is not None:  # "clear last" while correcting: stop correcting
            self.selected = None
            return None
        done = [k for k in range(NUM_KEYPOINTS)
                if face.points[k] is not None or face.visibility[k] == ABSENT]
        if not done:
            return None
        return self.remove_point(done[-1])

    def clear_face(self, face: int | None = None) -> None:
        """Empty a face (the current one by default)."""
        self._begin(face)
        self.faces[self.face] = FaceEdit()
        self.selected = None
        self._edited()

    def clear_all(self) -> None:
        """Empty the current face."""
        self.clear_face()

    def new_face(self) -> int:
        """Start another face in the same image; returns its index.

        Raises:
            EditError: the image has :data:`MAX_FACES` faces already.
        """
        if len(self.faces) >= MAX_FACES:
            raise EditError(f'an image holds at most {MAX_FACES} faces')
        self._record()
        self.faces.append(FaceEdit())
        self.face = len(self.faces) - 1
        self.selected = None
        self._edited()
        return self.face

    def remove_face(self, face: int | None = None) -> None:
        """Remove a face (the only face is emptied instead)."""
        if len(self.faces) == 1:
            self.clear_face(face)
            return
        self._begin(face)
        del self.faces[self.face]
        self.face = min(self.face, len(self.faces) - 1)
        self.selected = None
        self._edited()

    def _box(self, box: Any) -> tuple[float, float, float, float]:
        """A face box ``[x0, y0, x1, y1]`` as a page sends it, checked and clipped to the
        image (:class:`EditError` if it is no box, or a tiny one)."""
        if not isinstance(box, (list, tuple)) or len(box) != 4:
            raise EditError(f'a box is [x0, y0, x1, y1], got {box!r}'[:200])
        x0, y0, x1, y1 = (_finite(v, 'box corner') for v in box)
        x0, x1 = sorted((min(max(x0, -0.5), self.width - 0.5),
                         min(max(x1, -0.5), self.width - 0.5)))
        y0, y1 = sorted((min(max(y0, -0.5), self.height - 0.5),
                         min(max(y1, -0.5), self.height - 0.5)))
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise EditError('the box is too small: drag a rectangle around the face')
        return x0, y0, x1, y1

    def set_box(self, box: list | tuple | None, face: int | None = None) -> None:
        """Set (or with None remove) a face's box ``(x0, y0, x1, y1)``, clipped to the image."""
        if box is not None:
            box = self._box(box)
        self._begin(face)
        self.current.bbox = box

    def set_face(self, points: list[tuple[float, float]],
                 bbox: tuple[float, float, float, float] | None = None,
                 scores: list[float] | None = None, model: str | None = None,
                 predicted: bool = True, face: int | None = None) -> None:
        """Replace a face's points with a model's prediction (all visible): drawn and saved as
        predicted, to be reviewed and accepted (:meth:`accept`)."""
        if len(points) != NUM_KEYPOINTS:
            raise ValueError(f'expected {NUM_KEYPOINTS} points, got {len(points)}')
        if scores is not None and len(scores) != NUM_KEYPOINTS:
            raise ValueError(f'expected {NUM_KEYPOINTS} scores, got {len(scores)}')
        points = [(_finite(float(x), 'a predicted x'), _finite(float(y), 'a predicted y'))
                  for x, y in points]  # a model may give NaN: never drawn, never saved
        scores = None if scores is None else [_finite(float(v), 'a score') for v in scores]
        self._begin(face)
        self.faces[self.face] = FaceEdit(
            [(min(max(x, -0.5), self.width - 0.5), min(max(y, -0.5), self.height - 0.5))
             for x, y in points], bbox=bbox, scores=scores, predicted=predicted)
        if model is not None:
            self.model = model
        self.selected = None
        self._edited()

    def accept(self) -> int:
        """Accept the model's points of every face (after review): the image becomes an
        annotation (the model's scores are dropped: they describe the model's points, not the
        reviewed ones). Returns how many faces were accepted (0: nothing to accept)."""
        pending = [f for f in self.faces if f.predicted]
        if not pending:
            return 0
        self._record()
        for face in pending:
            face.predicted, face.scores = False, None
        self.reviewed_at = now_iso()
        self._edited()
        return len(pending)

    def _restored_face(self, raw: Any, number: int,
                       held: frozenset[tuple[float, float]] = frozenset()) -> FaceEdit:
        """A face of :meth:`restore`'s state, checked as the edits that make a face are; a
        point the image holds already (``held``: an imported file's may lie off the picture)
        is taken as it is."""
        where = f'face {number}: '
        if not isinstance(raw, dict):
            raise EditError(f'{where}a face is {{"points": [...], "visibility": [...], ...}}')
        points, visibility = raw.get('points'), raw.get('visibility')
        if not (isinstance(points, list) and isinstance(visibility, list) and
                len(points) == len(visibility) == NUM_KEYPOINTS):
            raise EditError(f'{where}a face has {NUM_KEYPOINTS} points (or nulls) and '
                            f'{NUM_KEYPOINTS} visibility flags')
        face = FaceEdit()
        for k, (point, flag) in enumerate(zip(points, visibility)):
            if type(flag) is not int or flag not in VISIBILITY_FLAGS:  # 1.0 would break files
                raise EditError(f'{where}unknown visibility flag {flag!r}'[:200])
            if point is not None:
                if not isinstance(point, list) or len(point) != 2:
                    raise EditError(f'{where}a point is [x, y] or null, got {point!r}'[:200])
                if flag == ABSENT:
                    raise EditError(f'{where}point {k} is absent, yet placed')
                x, y = _finite(point[0], 'x'), _finite(point[1], 'y')
                face.points[k] = (x, y) if (x, y) in held else self._inside(x, y)
            face.visibility[k] = flag
        if raw.get('bbox') is not None:
            face.bbox = self._box(raw['bbox'])
        scores = raw.get('scores')
        if scores is not None:
            if not isinstance(scores, list) or len(scores) != NUM_KEYPOINTS:
                raise EditError(f'{where}a face has {NUM_KEYPOINTS} scores, or none')
            face.scores = [_finite(v, 'a score') for v in scores]
        predicted = raw.get('predicted', False)
        if not isinstance(predicted, bool):
            raise EditError(f'{where}predicted is true or false, got {predicted!r}'[:200])
        face.predicted = predicted
        return face

    def restore(self, state: Any) -> None:
        """Set every face, the current face, the status and the review at once, as a page
        shows them: what the page sends after a server restart in place of the undo and redo
        steps the server lost with it (an undo there would undo nothing). One edit, one undo
        step, checked as the edits that make such a state are: points on the image, known
        flags, boxes, 28 finite scores, a skip reason of at most :data:`MAX_REASON_CHARS`
        characters, a model name of at most as many, a review time; the status the faces give
        (predicted while a model's face is unaccepted, annotated otherwise, or skipped with a
        reason). A value the image has already (a longer reason from its file, a point of an
        imported file off the picture) is taken as it is.

        Any earlier state of the image is one (an undone Predict or Accept, a model's face
        removed and the face placed by hand), so which review time it holds, or whether a
        model's points were accepted on the way, is the page's to say: what Accept guards is
        the status, and an image with a model's face unaccepted stays predicted.

        At most :data:`MAX_FACES` faces more than the image had when opened, or than
        :data:`MAX_FACES`, and never more than an annotation file may hold
        (:data:`~.annotation.ANNOTATION_MAX_FACES`; :attr:`most_faces`): the page may hold
        faces that were removed before the restart, of a file with more than
        :data:`MAX_FACES` too.

        Args:
            state: ``{"faces": [face, ...], "face": f, "status": ..., "status_reason": ...,
                "reviewed_at": ..., "model": ...}``, each face as :meth:`FaceEdit.to_json`
                writes it.

        Raises:
            EditError: a state of another shape or with a value no edit makes; nothing is
                changed.
        """
        if not isinstance(state, dict):
            raise EditError('a restored state is {"faces": [...], "face": f, "status": ...}')
        raw_faces, most = state.get('faces'), self.most_faces
        if not isinstance(raw_faces, list) or not 1 <= len(raw_faces) <= most:
            raise EditError(f'a restored state has 1 to {most} faces')
        held = frozenset(p for f in self.faces for p in f.points if p is not None)
        faces = [self._restored_face(raw, k + 1, held) for k, raw in enumerate(raw_faces)]
        face = state.get('face')
        if isinstance(face, bool) or not isinstance(face, int) or not 0 <= face < len(faces):
            raise EditError(f'no face {face!r}: the state has {len(faces)}'[:200])
        status = state.get('status')
        if not isinstance(status, str) or status not in STATUSES:
            raise EditError(f'unknown status {status!r} (one of {", ".join(STATUSES)})'[:200])
        given = STATUS_PREDICTED if any(f.predicted for f in faces) else STATUS_ANNOTATED
        if status not in (given, STATUS_SKIPPED):
            raise EditError(f'status {status} with these faces: an edit makes it {given}')
        reason = state.get('status_reason')
        if reason != self.status_reason:  # (the file's own is not checked again)
            reason = _text(reason, 'a skip reason', MAX_REASON_CHARS)
        # against the status whatever the reason: the image's own reason sent back with
        # another status wrote an annotated file with a skip reason, and an empty one a skip
        # without one
        if status == STATUS_SKIPPED:
            reason = (reason or '').strip() or 'skipped'  # as skip() writes it
        elif reason:
            raise EditError(f'a reason is a skipped image\'s; this one is {status}')
        reviewed_at = state.get('reviewed_at')
        if reviewed_at is not None and reviewed_at != self.reviewed_at:
            reviewed_at = _review_time(reviewed_at)
        model = state.get('model')
        if model is not None and model != self.model:
            model = _text(model, 'model', MAX_REASON_CHARS)
        self._record()
        self.faces, self.face = faces, face
        self.status, self.status_reason = status, reason
        self.reviewed_at, self.model = reviewed_at, model
        self.selected = None

    def skip(self, reason: str) -> None:
        """Mark the image unusable (no usable face, bad quality): the converter leaves it out.
        Its faces stay (:meth:`file_faces`): an edit of a point takes the skip back.

        Raises:
            EditError: a reason that is no text, not valid Unicode, or longer than
                :data:`MAX_REASON_CHARS` characters.
        """
        reason = _text(reason, 'a skip reason', MAX_REASON_CHARS)
        self._record()
        self.status, self.status_reason = STATUS_SKIPPED, reason.strip() or 'skipped'

    #: The operations :meth:`apply` knows, as the app sends them (``face`` is optional in each,
    #: the current face by default).
    OPERATIONS = ('place', 'move', 'flag', 'remove', 'clear_face', 'new_face', 'remove_face',
                  'box', 'accept', 'skip', 'undo', 'redo', 'restore')

    def apply(self, op: dict) -> None:
        """Apply one edit operation of the app's protocol.

        ``{"op": "place", "index": k, "x": x, "y": y}`` (``"move"`` is the same), ``{"op":
        "flag", "index": k, "flag": 0|1|2}``, ``{"op": "remove", "index": k}``, ``{"op":
        "clear_face"}``, ``{"op": "new_face"}``, ``{"op": "remove_face"}``, ``{"op": "box",
        "box": [x0, y0, x1, y1] | null}``, ``{"op": "accept"}``, ``{"op": "skip", "reason":
        text}``, ``{"op": "undo"}``, ``{"op": "redo"}``, ``{"op": "restore", "state": ...}``
        (:meth:`restore`); each may name its ``"face"``.

        Raises:
            EditError: an unknown or malformed operation; nothing is changed.
        """
        if not isinstance(op, dict) or op.get('op') not in self.OPERATIONS:
            name = op.get('op') if isinstance(op, dict) else op
            raise EditError(f'unknown edit operation {shown_value(name)} (one of '
                            f'{", ".join(self.OPERATIONS)})')
        kind, face = op['op'], op.get('face')
        if kind in ('place', 'move'):
            self.place(op.get('index'), op.get('x'), op.get('y'), face=face)
        elif kind == 'flag':
            self.set_visibility(op.get('index'), op.get('flag'), face=face)
        elif kind == 'remove':
            self.remove_point(op.get('index'), face=face)
        elif kind == 'clear_face':
            self.clear_face(face)
        elif kind == 'new_face':
            self.new_face()
        elif kind == 'remove_face':
            self.remove_face(face)
        elif kind == 'box':
            self.set_box(op.get('box'), face=face)
        elif kind == 'accept':
            self.accept()
        elif kind == 'skip':
            self.skip(op.get('reason', ''))
        elif kind == 'undo':
            self.undo()
        elif kind == 'redo':
            self.redo()
        else:
            self.restore(op.get('state'))

    # state -----------------------------------------------------------------------------------

    def problem(self) -> str | None:
        """Why an image whose faces are all complete is still no annotation, or None.

        The rules are the file format's and the converter's (:func:`.converter.check_usable`),
        so that the annotator never writes as done what the converter would leave out, nor
        what it could not read back itself: at least 2 placed points per face, not all on one
        spot, a box with an area on the image, no face twice. Such work stays a draft until
        fixed.
        """
        from .converter import check_distinct_faces, check_usable
        if self.status == STATUS_SKIPPED or not all(f.complete() for f in self.faces):
            return None
        for k, face in enumerate(self.faces):  # one at a time, to name it as the page does
            alone = ImageEdit(image=self.image, width=self.width, height=self.height,
                              faces=[face])
            try:
                check_usable(parse_annotation(alone.to_annotation({}).to_json()))
            except AnnotationError as e:  # the file rules number faces from 0 ("face 0 ...")
                return re.sub(r'^face 0\b', f'face {k + 1}', str(e))
        try:  # then the faces together: the converter leaves out a file with a face twice
            check_distinct_faces(self.to_annotation({}))
        except AnnotationError as e:  # "faces 0 and 1 ...", numbered from 1 as the page does
            return re.sub(r'^faces (\d+) and (\d+)\b',
                          lambda m: f'faces {int(m[1]) + 1} and {int(m[2]) + 1}', str(e))
        return None

    def finished(self) -> bool:
        """Skipped, or every face complete and usable (:meth:`problem`): the annotation file
        is written; otherwise the draft."""
        if self.status == STATUS_SKIPPED:
            return True
        return all(f.complete() for f in self.faces) and self.problem() is None

    def file_faces(self) -> list[FaceEdit]:
        """The faces the annotation file holds: the complete ones; of a skipped image, those
        a file can hold (:func:`~.annotation.parse_annotation`: two placed points or more,
        not all on one spot), kept so that taking the skip back brings them back (the
        converter reads no face of a skipped file). A face begun and not finished has no
        form in the file: skipping drops it."""
        faces = [f for f in self.faces if f.complete()]
        if self.status != STATUS_SKIPPED:
            return faces
        kept = []
        for face in faces:
            alone = ImageAnnotation(self.image, self.width, self.height, [face.to_face()])
            try:
                parse_annotation(alone.to_json())
            except AnnotationError:
                continue
            kept.append(face)
        return kept

    def to_annotation(self, meta: dict) -> ImageAnnotation:
        """The finished annotation, of :meth:`file_faces`."""
        return ImageAnnotation(image=self.image, width=self.width, height=self.height,
                               faces=[f.to_face() for f in self.file_faces()],
                               status=self.status, status_reason=self.status_reason, meta=meta)

    def to_json(self) -> dict[str, Any]:
        """What the app shows and drafts keep: faces, current face, status, review."""
        return dict(image=self.image, width=self.width, height=self.height, face=self.face,
                    status=self.status, status_reason=self.status_reason,
                    reviewed_at=self.reviewed_at, model=self.model,
                    faces=[f.to_json() for f in self.faces])

    def to_draft(self) -> dict:
        return dict(self.to_json(), revision=self.revision, image_sha256=self.image_sha256)

    @classmethod
    def from_draft(cls, raw: dict) -> ImageEdit:
        """An edit from a draft (written by :meth:`to_draft`, but read as untrusted).

        Raises:
            EditError, TypeError, KeyError...: a draft of another shape (the caller names the
                file).
        """
        # not MAX_FACES: it bounds the faces a page makes (new_face); a file may hold more
        # (a detector on a crowd picture), and its draft reopens as the file opened
        if not isinstance(raw['faces'], list) or not raw['faces']:
            raise TypeError('faces must be a list of 1 or more faces')
        if len(raw['faces']) > DRAFT_MAX_FACES:
            raise TypeError(f'{len(raw["faces"])} faces, more than the {DRAFT_MAX_FACES} a '
                            'draft may hold')
        faces = [FaceEdit.from_json(f) for f in raw['faces']]
        if any(len(f.points) != NUM_KEYPOINTS or
               len(f.visibility) != NUM_KEYPOINTS for f in faces):
            raise TypeError(f'faces must hold {NUM_KEYPOINTS} points each')
        status = raw['status']
        if status not in STATUSES:
            raise TypeError(f'unknown status {status!r}')
        model, reviewed_at = raw.get('model'), raw.get('reviewed_at')
        picture = raw.get('image_sha256')  # drafts of older versions have none
        return cls(image=raw['image'], width=raw['width'], height=raw['height'], faces=faces,
                   face=max(0, min(_whole(raw['face'], 'face'), len(faces) - 1)),
                   status=status,
                   status_reason=_text(raw['status_reason'], 'status_reason'),
                   revision=raw['revision'],
                   reviewed_at=None if reviewed_at is None else _text(reviewed_at, 'reviewed_at'),
                   model=None if model is None else _text(model, 'model'),
                   image_sha256=picture if is_sha256_hex(picture) else None)


def _write_bytes(path: Path, data: Callable[[], bytes]) -> str:
    """Write the bytes ``data()`` makes to ``path`` atomically
    (:func:`~.annotation.write_bytes_atomic`), a value JSON cannot hold named in one line;
    returns their sha256 (the file hashed again after the write, a version someone wrote just
    after would pass for this one).

    Raises:
        AnnotationError: a value no JSON file can hold (NaN, a lone surrogate; files holding
            either are refused when read, :func:`~.annotation.parse_annotation`), or a file
            ``data`` refuses itself; nothing is written.
        OSError: the folder is read-only or full.
    """
    try:
        made = data()
    except AnnotationError:
        raise
    except ValueError as e:  # json.dumps' NaN, UTF-8's lone surrogate
        raise AnnotationError(f'{path}: cannot be written: {first_line(e)[:200]}') from None
    write_bytes_atomic(path, made, make_folder=True)
    return hashlib.sha256(made).hexdigest()


def _write_json(path: Path, obj: Any) -> str:
    """A draft's JSON (:func:`~.annotation.json_bytes`) by :func:`_write_bytes`."""
    return _write_bytes(path, lambda: json_bytes(obj))


def _write_annotation(path: Path, annotation: ImageAnnotation) -> str:
    """An annotation file (:func:`~.annotation.annotation_bytes`: never one the tools would not
    read back, too large or of more than :data:`~.annotation.ANNOTATION_MAX_FACES` faces, as a
    skipped page of an older version's draft could hold) by :func:`_write_bytes`."""
    return _write_bytes(path, lambda: annotation_bytes(annotation))


def _current_bytes(path: Path) -> bytes | None:
    """A file's bytes as the revision check reads them (once: hashed and parsed alike), None
    where there is none.

    Raises:
        NotRegularFileError: a FIFO, device or folder there (never read).
        AnnotationError: more than :data:`~.annotation.ANNOTATION_MAX_BYTES` (no edit was
            opened from such a file).
        OSError: the file cannot be read.
    """
    try:
        return read_regular_file(path, ANNOTATION_MAX_BYTES)
    except FileNotFoundError:
        return None


def _sha256(path: Path) -> str | None:
    """The file's sha256, or None when there is no file.

    Raises:
        NotRegularFileError: a FIFO, device or folder there (never read).
        OSError: the file cannot be read.
    """
    try:
        return file_sha256(path)
    except FileNotFoundError:
        return None


def _name_key(name: str) -> str:
    """Names that one disk or another takes for the same file (case, Unicode normal form)."""
    return unicodedata.normalize('NFC', name).casefold()


@dataclass
class _FileRecord:
    """What a file in the output folder (or its drafts) says of itself, read once."""

    name: str
    image: str | None  # the image its "image" field names; None: broken or foreign
    status: str | None  # its "status"; None when broken or foreign
    broken: bool  # an annotation or draft that cannot be read (shown to the user)
    regular: bool = True  # False: a FIFO, device or folder, never read and left alone
    models: bool = False  # a model's prediction nobody saved since (is_models_prediction)


def _read_record(path: Path, draft: bool = False) -> _FileRecord:
    """The ``image`` and ``status`` a file claims; a file that is not JSON, or an annotation
    without an image name, is broken; other JSON (someone else's) is foreign. A file naming an
    image is parsed as the converter parses it (:func:`~.annotation.parse_annotation`): one the
    converter would leave out is broken here too, not counted as done (a ``draft`` is checked
    when it is opened). What is no regular file (a FIFO) is not read: not ``regular``, neither
    broken nor anyone's."""
    try:  # read as the converter reads it: UTF-8 only (json.loads of bytes took UTF-16 too),
        # at most ANNOTATION_MAX_BYTES (a stray dump was read whole)
        raw = read_annotation_json(path)
    except NotRegularFileError:  # a FIFO would block the start for good: not read, not ours
        return _FileRecord(name=path.name, image=None, status=None, broken=False,
                           regular=False)
    except AnnotationError:  # unreadable, too large, not UTF-8, broken or too deep JSON
        return _FileRecord(name=path.name, image=None, status=None, broken=True)
    if not isinstance(raw, dict):
        return _FileRecord(name=path.name, image=None, status=None, broken=True)
    image = raw.get('image')
    if not isinstance(image, str) or not image:
        ours = raw.get('format') == FORMAT_NAME or 'landmarks' in raw or 'faces' in raw
        return _FileRecord(name=path.name, image=None, status=None, broken=ours)
    image = image_key(image)  # './x.png' is x.png's, as the converter reads it
    if draft:
        status = raw.get('status', STATUS_ANNOTATED)
        return _FileRecord(name=path.name, image=image,
                           status=status if status in STATUSES else None, broken=False)
    try:
        ann = parse_annotation(raw)
    except AnnotationError:
        return _FileRecord(name=path.name, image=image, status=None, broken=True)
    return _FileRecord(name=path.name, image=image, status=ann.status, broken=False,
                       models=is_models_prediction(ann))


@dataclass(frozen=True)
class Progress:
    """How far the session is: images annotated or skipped, predicted (to review), to do."""

    done: int
    predicted: int
    to_do: int
    total: int

    def __str__(self) -> str:
        return f'{self.done} done · {self.predicted} predicted · {self.to_do} to do'


def read_order_file(path: str | os.PathLike) -> list[str]:
    """Image names in the order to visit them, from a ``--files`` list.

    The file is either JSON: a list of names, or of objects with a ``"file"`` or ``"image"``
    key (a ranking, a report); or text, one name per line (blank lines skipped; a line starting
    with ``#`` is kept, and taken for a comment by :class:`AnnotationSession` unless it is,
    whole, an image's name: ``#1 cat.png`` may be one, ``# data/raw/a.png`` is none). A
    ``.json`` file is read as JSON; another is where it begins with ``[`` or ``{`` and is JSON
    (``[artist] cat.png`` is a name); a UTF-8 byte order mark (an editor's) is dropped. The
    names are as listed: one with folders (``data/raw/x.png``) stands for its last part where
    it is no image's own name (:func:`order_name`).

    Raises:
        OrderFileError: the file cannot be read, is no regular file (a FIFO: never read), is
            over :data:`MAX_ORDER_FILE_BYTES`, or its JSON is not such a list.
    """
    path = Path(path)
    try:
        text = read_regular_file(path, MAX_ORDER_FILE_BYTES).decode('utf-8')
    except AnnotationError as e:  # no regular file, too large: its message names the file
        raise OrderFileError(f'cannot read the file list: {e}') from None
    except (OSError, UnicodeDecodeError) as e:
        raise OrderFileError(f'{path}: cannot read the file list ({e})') from None
    text = text.removeprefix('\ufeff')
    is_json = path.suffix.lower() == '.json'
    if is_json or text.lstrip().startswith(('[', '{')):
        try:
            raw = loads_user_json(text)
        except RepeatedKeyError as e:  # a list edited by hand: which name is meant?
            raise OrderFileError(f'{path}: {e}') from None
        except json.JSONDecodeError as e:
            if not is_json:  # a list of names, the first beginning with a bracket
                return _order_lines(text)
            raise OrderFileError(f'{path}: broken JSON ({e})') from None
        except RecursionError:  # "[[[[...": the decoder's recursion, not the file's sense
            raise OrderFileError(f'{path}: JSON nested too deeply') from None
        except ValueError as e:  # an integer of more digits than Python converts
            raise OrderFileError(f'{path}: cannot read the file list ({first_line(e)})') from None
        if not isinstance(raw, list):
            raise OrderFileError(f'{path}: expected a JSON list of names or of objects with '
                                 'a "file" or "image" key')
        names = []
        for k, item in enumerate(raw):
            if isinstance(item, dict):
                item = item.get('file', item.get('image'))
            if not isinstance(item, str) or not item:
                raise OrderFileError(f'{path}: item {k} is neither a name nor an object with '
                                     'a "file" or "image" name')
            names.append(item)
    else:
        names = _order_lines(text)
    return names


def _order_lines(text: str) -> list[str]:
    """The names of a text ``--files`` list: a line each, blank ones skipped."""
    return [name for name in (line.strip() for line in text.splitlines()) if name]


def order_name(name: str, images: Collection[str]) -> str:
    """The image a ``--files`` name stands for: itself where it is one of ``images`` (a
    backslash is a character of a file name here: ``x\\y.png``), else its last part after a
    ``/`` or ``\\`` (a path, of this system or of Windows: ``data/raw/x.png``)."""
    if name in images:
        return name
    return name.replace('\\', '/').rsplit('/', 1)[-1]


class AnnotationSession:
    """Images of a folder and their annotation files in another.

    Args:
        image_dir: the images (listed by name only: a folder of thousands opens at once).
        output_dir: where annotation files go (created).
        annotator: recorded in each file's ``meta``.
        order: image names to visit first, in this order (``--files``; a path stands for an
            image, :func:`order_name`); the folder's other images follow, by name. Names not in
            the folder are left out (:attr:`unknown_in_order` lists them).
        lock_option: take the output folder for this process (:func:`lock_output_folder`,
            whose message names this option) once it exists and before anything in it is
            read: a run writing there between the reading and the lock (``tools/infer.py``)
            changed which file is whose, unseen for the whole session. The lock is
            :attr:`folder_lock`, held until released or the process ends. None: not locked
            (several sessions of one process).

    Images whose name no annotation file can hold (not valid UTF-8, or a line break in it) are
    left out (:attr:`misnamed_images` lists them: they are to be renamed); files of the output
    folder that are not regular files (a FIFO named ``x.json``) are never read nor written
    (:attr:`not_regular` lists them).

    Raises:
        AnnotatorNameError: an annotator's name no file can hold (not valid UTF-8: a name typed
            in a terminal of another encoding), or :data:`~.annotation.MODEL_ANNOTATOR`, which
            marks a model's predictions (a new prediction would replace this person's files).
        ImageFolderError: no image folder.
        OutputFolderError: the output folder cannot be created, or its drafts folder is a
            link (drafts would be written wherever it leads).
        OutputFolderInUseError: ``lock_option`` given, and another process holds the folder.
    """

    def __init__(self, image_dir: str | os.PathLike, output_dir: str | os.PathLike,
                 annotator: str = '', order: list[str] | None = None,
                 lock_option: str | None = None):
        # before anything is read or made: every save would fail on it, or lose it
        if unencodable_string(annotator) is not None:
            raise AnnotatorNameError(
                f'the annotator name {printable(annotator, one_line=True, limit=80)} is not '
                'valid UTF-8 (a terminal of another encoding?): no file can record it; give '
                '--annotator NAME')
        if annotator == MODEL_ANNOTATOR:
            raise AnnotatorNameError(
                f'the annotator name {annotator!r} is how tools/infer.py marks its '
                'predictions: a prediction would replace this person\'s files; give '
                '--annotator NAME')
        self.image_dir = Path(image_dir).resolve()
        if not self.image_dir.is_dir():
            raise ImageFolderError(f'image folder not found: {image_dir}')
        self.output_dir = Path(output_dir).resolve()
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputFolderError(
                f'cannot create the output folder {self.output_dir}: {e.strerror or e}'
            ) from None
        self.folder_lock = None
        if lock_option is not None:
            self.folder_lock = lock_output_folder(self.output_dir, option=lock_option)
        try:
            self._read_folders(annotator, order)
        except BaseException:
            if self.folder_lock is not None:
                self.folder_lock.release()
            raise

    def _read_folders(self, annotator: str, order: list[str] | None) -> None:
        """The rest of :meth:`__init__`: the drafts folder, the images and which file is
        whose."""
        self.annotator = annotator
        self._picture_digests: dict[ImageStamp, str] = {}
        try:
            self._own_folder(self.output_dir / DRAFT_DIR)
        except UnsafeNameError as e:
            raise OutputFolderError(str(e)) from None
        for folder in (self.output_dir, self.output_dir / DRAFT_DIR):
            try:  # what a killed process left half-written
                remove_stale_temporaries(folder)
            except OSError as e:  # a read-only folder: saving will say so
                logger.warning('cannot remove stale temporary files in %s: %s', folder, e)
        found, self.misnamed_images = scan_images(self.image_dir)
        listed = [p.name for p in found]
        self.unknown_in_order: list[str] = []
        if order:
            present, first = set(listed), {}
            for listed_name in order:
                if listed_name.startswith('#') and listed_name not in present:
                    continue  # a comment (read_order_file), '# data/raw/a.png' too
                name = order_name(listed_name, present)
                if name in present:
                    first.setdefault(name, None)
                else:  # as the list gives it
                    self.unknown_in_order.append(listed_name)
            listed = list(first) + [name for name in listed if name not in first]
        self.images = listed
        self._index = {name: k for k, name in enumerate(self.images)}
        self.not_regular: list[Path] = []
        self._bind_files()
        if self.not_regular:
            logger.warning('not regular files (a FIFO, a device or a folder), left alone: %s',
                           printable(', '.join(map(str, self.not_regular)), one_line=True,
                                     limit=400))

    # which file is whose ----------------------------------------------------------------------

    def _scan(self, folder: Path, drafts: bool = False) -> tuple[list[str], list[_FileRecord]]:
        """Every name in ``folder`` (hidden ones excluded) and what its JSON files say
        (``drafts``: the folder of drafts, whose files are not annotations); JSON names that
        are no regular file go to :attr:`not_regular`."""
        try:
            with os.scandir(folder) as entries:
                names = [e.name for e in entries if not is_hidden(e.name)]
        except FileNotFoundError:
            return [], []
        records = [_read_record(folder / name, draft=drafts) for name in names
                   if is_annotation_name(name)]
        self.not_regular += [folder / r.name for r in records if not r.regular]
        return names, records

    def _bind_files(self) -> None:
        """Decide once, for the output folder and its drafts, which file is which image's.

        1. A file belongs to the image its ``"image"`` field names (:func:`~.annotation.image_key`:
           ``./x.png`` too); when several name one image, the first by the rule the converter
           keeps one by (:func:`~.annotation.file_choice_key`: a person's before a model's
           untouched prediction, an accepted one before one under review, then the most
           preferred name, :func:`~.annotation.annotation_file_names`, then the old
           ``<stem>_<suffix>.json``), then by name.
        2. A broken file named ``<stem>.json`` or ``<name>.json`` (the first two of
           :func:`~.annotation.annotation_file_names`, cut alike) of exactly one image, which
           has no file yet, is that image's: opening it shows the error instead of starting a
           second file beside it.
        3. Every other image gets the first of its candidate names that no file (bound or not,
           any case) and no image before it holds; its draft prefers its annotation file's name.

        So no two images share a file, and an image never opens a file naming another image.
        """
        self._files: dict[str, str] = {}
        self._drafts: dict[str, str] = {}
        self._status: dict[str, str | None] = {}  # image -> its annotation file's status
        self._broken: set[str] = set()  # images whose bound annotation file is broken
        # images with unfinished work in a draft: not done, even when an earlier version of
        # the image is annotated (reopened and left half-edited, it must not be forgotten)
        self._pending: set[str] = set()
        # the names a broken file may be an image's by: its first two candidate names (cut as
        # every file name is, so a long-named image's broken file is found too)
        by_name: dict[str, set[str]] = collections.defaultdict(set)
        for name in self.images:
            candidates = annotation_file_names(name)
            for _ in range(2):
                by_name[next(candidates)].add(name)
        names, records = self._scan(self.output_dir)
        draft_names, draft_records = self._scan(self.output_dir / DRAFT_DIR, drafts=True)
        for bound, folder_names, folder_records in (
                (self._files, names, records), (self._drafts, draft_names, draft_records)):
            taken = {_name_key(name) for name in folder_names}
            claims: dict[str, list[_FileRecord]] = collections.defaultdict(list)
            for record in folder_records:
                if record.image in self._index:
                    claims[record.image].append(record)
            for image, claimed in claims.items():
                # a person's file first: a model's prediction written beside it (infer run
                # with another order of the images) must not hide it; the converter's rule
                best = min(claimed, key=lambda r: (
                    file_choice_key(image, r.name, models=r.models, status=r.status), r.name))
                bound[image] = best.name
                if len(claimed) > 1:
                    logger.warning('%s: several files name it (%s); using %s', image,
                                   ', '.join(sorted(r.name for r in claimed)), best.name)
                if bound is self._files:
                    self._status[image] = best.status
                    if best.broken:
                        self._broken.add(image)
            for record in folder_records:
                if not record.broken or record.image in self._index:  # claimed above
                    continue
                owners = set(by_name.get(record.name, ()))
                if len(owners) == 1 and (owner := owners.pop()) not in bound:
                    bound[owner] = record.name
                    if bound is self._files:
                        self._broken.add(owner)
            for image in self.images:  # the rest: first free name, in the visiting order
                if image in bound:
                    continue
                other = self._drafts.get(image) if bound is self._files else \
                    self._files.get(image)
                if other and _name_key(other) not in taken:
                    candidate = other
                else:
                    candidate = next(c for c in annotation_file_names(image)
                                     if _name_key(c) not in taken)
                bound[image] = candidate
                taken.add(_name_key(candidate))
        existing_drafts = set(draft_names)
        self._pending = {image for image, name in self._drafts.items()
                         if name in existing_drafts}

    def image_path(self, image: str) -> Path:
        """The image's file, for an image of the session only.

        Raises:
            UnsafeNameError: a name that is not one of the session's images (hidden names,
                other folders, other files are never read), or no name at all (not text).
        """
        if not isinstance(image, str):  # from a page's JSON: a list, a number...
            raise UnsafeNameError(f'an image name is text, not {type(image).__name__}')
        if image not in self._index:
            if is_hidden(Path(image).name):
                raise UnsafeNameError(f'{image!r} is not an image of {self.image_dir} (names '
                                      'starting with a dot are the tools\' own)')
            if '/' in image or '\\' in image or image in ('.', '..'):
                raise UnsafeNameError(f'{image!r} is outside {self.image_dir}')
            raise UnsafeNameError(f'{image!r} is not an image of {self.image_dir}')
        return resolve_inside(self.image_dir, image)

    def index(self, image: str) -> int:
        """The image's place in the visiting order (:class:`UnsafeNameError` if none)."""
        self.image_path(image)
        return self._index[image]

    def annotation_path(self, image: str) -> Path:
        self.image_path(image)
        return resolve_inside(self.output_dir, self._files[image])

    def draft_path(self, image: str) -> Path:
        """The image's draft, in :data:`DRAFT_DIR` of the output folder itself.

        Raises:
            UnsafeNameError: not an image of the session, or the drafts folder is a link.
        """
        self.image_path(image)
        return resolve_inside(self._own_folder(self.output_dir / DRAFT_DIR),
                              self._drafts[image])

    @staticmethod
    def _own_folder(folder: Path) -> Path:
        """``folder`` (a folder of the tools' own in the output folder), if it is no link:
        :func:`resolve_inside` checks a name against where its folder leads, so drafts
        written through a linked ``.drafts`` would land wherever it leads.

        Raises:
            UnsafeNameError: it is a link; one line naming it.
        """
        if folder.is_symlink():
            raise UnsafeNameError(f'{folder} is a link: the annotator keeps its drafts in the '
                                  'output folder itself; move the link away')
        return folder

    def status(self, image: str) -> str | None:
        """The status its annotation file had when last read or written here (None: no file,
        or a broken one)."""
        return self._status.get(image)

    def has_draft(self, image: str) -> bool:
        return self.draft_path(image).is_file()

    def is_done(self, image: str) -> bool:
        """Annotated or skipped, with no unfinished draft (a model's points to review are
        still to do)."""
        return (self._status.get(image) in (STATUS_ANNOTATED, STATUS_SKIPPED)
                and image not in self._pending)

    def progress(self) -> Progress:
        """Images done (annotated or skipped, no draft pending), predicted (to review), to
        do, in all."""
        counts = collections.Counter(self._status.get(name) for name in self.images
                                     if name not in self._pending)
        done = counts[STATUS_ANNOTATED] + counts[STATUS_SKIPPED]
        counts.update(self._status.get(name) for name in self._pending)
        total = len(self.images)
        return Progress(done, counts[STATUS_PREDICTED], total - done, total)

    def next_to_do(self, after: int = -1) -> int | None:
        """Index of the first image after ``after`` (wrapping) that is not done: without an
        annotation, or with a model's points to review."""
        count = len(self.images)
        if not count:
            return None
        start = (after + 1) % count
        for index in itertools.chain(range(start, count), range(start)):
            if not self.is_done(self.images[index]):
                return index
        return None

    next_unannotated = next_to_do

    # opening and saving -------------------------------------------------------------------------

    def open(self, image: str) -> ImageEdit:
        """An image's edits: its draft if one is pending, else its annotation, else empty.

        A draft that can no longer be saved (its annotation file changed since, or the picture
        did) is set aside (:meth:`_set_aside`) and the file opens; where it cannot be set aside
        (a read-only folder), the file opens read-only (:attr:`ImageEdit.read_only`) and the
        draft stays as it is. A file or draft whose points were placed on other bytes of a
        picture of the same size opens with :data:`PICTURE_CHANGED_NOTICE`.

        Raises:
            UnsafeNameError: a name that is not one of the session's images.
            AnnotationError: an unreadable image, draft or annotation file, or a file that
                names another image (one line, named).
        """
        width, height = image_size(self.image_path(image))
        picture = self.picture_sha256(image)
        edit = self._open_edit(image, width, height)
        recorded, edit.image_sha256 = edit.image_sha256, picture
        if recorded is not None and recorded != picture:
            edit.notice = (f'{edit.notice}; {PICTURE_CHANGED_NOTICE}' if edit.notice
                           else PICTURE_CHANGED_NOTICE)
        return edit

    def picture_sha256(self, image: str) -> str:
        """The SHA-256 of an image's bytes now, hashed once a version: a version is known by
        its :class:`~.converter.ImageStamp` (size and modification time, trusted as the
        converter trusts it), so an image opened again costs a ``stat``, not a read (20 ms for
        a 26 MB 4000x3000 PNG in the page cache).

        Raises:
            UnsafeNameError: a name that is not one of the session's images.
            AnnotationError: the image cannot be read (one line naming it).
        """
        path = self.image_path(image)
        taken_after_ns = time.time_ns()
        try:
            status = os.stat(path)
            stamp = ImageStamp(image, status.st_size, status.st_mtime_ns)
            digest = self._picture_digests.get(stamp)
            if digest is None:
                digest = file_sha256(path)
                if stamp.trusted(taken_after_ns):
                    if len(self._picture_digests) >= PICTURE_DIGESTS_KEPT:
                        self._picture_digests.clear()
                    self._picture_digests[stamp] = digest
        except NotRegularFileError:
            raise
        except OSError as e:
            raise AnnotationError(f'{path}: image unreadable ({e.strerror or e})') from None
        return digest

    def _open_edit(self, image: str, width: int, height: int) -> ImageEdit:
        """:meth:`open`'s edit, its picture digest the one its draft or file records."""
        draft = self.draft_path(image)
        if not draft.is_file():  # none (a FIFO or a folder there is left alone)
            self._pending.discard(image)
            return self._open_file(image, width, height)
        self._pending.add(image)
        # read as an annotation file is (at most ANNOTATION_MAX_BYTES, UTF-8): a draft is one
        # in the making; its errors name the draft in one line (unreadable, too large, not
        # JSON)
        data = read_annotation_bytes(draft)
        raw = read_annotation_json(draft, data)
        try:
            edit = ImageEdit.from_draft(raw)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError,
                OverflowError) as e:
            raise AnnotationError(f'{draft}: broken draft ({first_line(e)[:200]})'
                                  ) from None
        except RecursionError:
            raise AnnotationError(f'{draft}: broken draft (JSON nested too deeply)'
                                  ) from None
        if image_key(edit.image) != image:
            raise AnnotationError(f'{draft} is the draft of {edit.image!r}, not {image!r}')
        edit.image = image  # saved under the session's name ('./x.png' is x.png)
        if edit.revision != _sha256(self.annotation_path(image)):
            # The annotation file changed after the draft was begun (a sync, a hand edit,
            # a crash between writing the file and removing the draft): the draft could
            # never be saved over it.
            why = 'was older than its annotation file'
        elif (edit.width, edit.height) != (width, height):
            why = (f'was made on a {edit.width}x{edit.height} version of the picture, now '
                   f'{width}x{height}')
        else:
            # the bytes read: a draft written since (a sync) is not taken for this one
            edit.draft_revision = hashlib.sha256(data).hexdigest()  # nothing to save yet
            return edit
        # either way the draft cannot be saved: keep it aside and open the file, if any
        try:
            kept = self._set_aside(draft)
        except OSError as e:  # e.g. a read-only folder: the draft stays, nothing is written
            edit = self._open_file(image, width, height)
            edit.read_only = (f'your unfinished draft of this image {why} and cannot be set '
                              f'aside ({e.strerror or e}: {e.filename or draft}); it is kept '
                              f'as {draft}, and this image is read-only until it can be moved')
            edit.notice = edit.read_only
            return edit
        except UnsafeNameError as e:  # a linked superseded/: nothing is moved through it
            edit = self._open_file(image, width, height)
            edit.read_only = (f'your unfinished draft of this image {why} and cannot be set '
                              f'aside ({e}); it is kept as {draft}, and this image is '
                              'read-only until it can be moved')
            edit.notice = edit.read_only
            return edit
        self._pending.discard(image)
        edit = self._open_file(image, width, height)
        edit.notice = f'your unfinished draft of this image {why} and is kept as {kept}'
        return edit

    def _open_file(self, image: str, width: int, height: int) -> ImageEdit:
        """The image's edits from its annotation file, or empty when there is none."""
        target = self.annotation_path(image)
        if not target.is_file():
            self._status.pop(image, None)
            return ImageEdit(image=image, width=width, height=height)
        try:
            data = read_annotation_bytes(target)
            ann = load_annotation(target, data)
        except AnnotationError:
            self._status.pop(image, None)
            raise
        if image_key(ann.image) != image:
            raise AnnotationError(f'{target} is the annotation of {ann.image!r}, not {image!r}')
        _check_size(target, ann.width, ann.height, image, width, height)
        self._status[image] = ann.status
        predicted = ann.status == STATUS_PREDICTED
        # a skipped file's faces that are a model's, still to accept when the skip is taken
        # back; a mark of another shape (edited by hand) marks them all: none is trained on
        # unreviewed
        marked = ann.meta.get(PREDICTED_FACES_KEY) if ann.status == STATUS_SKIPPED else None
        if marked is not None and not (isinstance(marked, list)
                                       and all(type(k) is int for k in marked)):
            marked = range(len(ann.faces))
        marked = set(marked or ())
        faces = [FaceEdit(points=list(f.landmarks), visibility=list(f.visibility), bbox=f.bbox,
                          scores=None if f.scores is None else list(f.scores),
                          predicted=predicted or k in marked)
                 for k, f in enumerate(ann.faces)]
        reviewed_at = ann.meta.get('reviewed_at')  # Accept's, kept through later saves
        # meta is free-form: a model named otherwise than by text ({"name": ..., "epoch": ...})
        # stays the file's (a save keeps meta) but is no edit's, whose draft holds text only
        model = ann.meta.get('model')
        return ImageEdit(image=image, width=width, height=height, faces=faces or [FaceEdit()],
                         status=ann.status, status_reason=ann.status_reason,
                         # the bytes parsed: a file written since (a sync client) is no
                         # revision this edit saw, and a save then says so
                         revision=hashlib.sha256(data).hexdigest(),
                         image_sha256=recorded_image_sha256(ann),
                         model=model if isinstance(model, str) else None,
                         reviewed_at=reviewed_at if isinstance(reviewed_at, str) else None)

    def _sidecar(self, image: str) -> dict | None:
        """What ``tools/crawl_images.py`` recorded of the image (``IMAGE.json`` beside it):
        a JSON object marked as the crawler's (:data:`~.annotation.SIDECAR_FORMAT`; with
        ``--output-dir`` the image folder, ``IMAGE.json`` may be an annotation file), inside
        the image folder (:func:`~.annotation.read_sidecar`), that a file can hold again
        (no NaN, no lone surrogate); else None (a sidecar is a nicety, never a reason not to
        save)."""
        try:
            source = read_sidecar(resolve_inside(self.image_dir, f'{image}.json'))
            if source is not None:
                json.dumps(source, allow_nan=False, ensure_ascii=False).encode('utf-8')
        except (UnsafeNameError, ValueError):  # ValueError: NaN, a lone surrogate
            return None
        return source

    def _set_aside(self, draft: Path) -> Path:
        """Move a draft that can no longer be saved to ``.drafts/superseded/`` (never
        deleted: the work in it may still be wanted); returns where it went.

        Raises:
            OSError: it cannot be moved (a read-only folder); the draft stays where it is.
            UnsafeNameError: ``superseded`` is a link (it would take the draft elsewhere).
        """
        kept = self._superseded_name(draft)
        os.replace(draft, kept)
        sync_folder(draft.parent)
        return kept

    def _superseded_name(self, draft: Path) -> Path:
        """A free name in ``.drafts/superseded/`` (made if need be) for the work of the draft
        ``draft`` (``<stem>.<UTC time>.json``, ``-2``, ``-3``... after it).

        Raises:
            OSError: the folder cannot be made.
            UnsafeNameError: ``superseded`` is a link.
        """
        folder = self._own_folder(draft.parent / SUPERSEDED_DIR)
        folder.mkdir(parents=True, exist_ok=True)  # (.drafts too: none before a first draft)
        stamp = datetime.now(UTC).strftime('%Y%m%dT%H%M%S')
        kept = folder / fit_name(draft.stem, f'.{stamp}.json')
        serial = 1
        while kept.exists():  # ends: each name tried is a file of the folder
            serial += 1
            kept = folder / fit_name(draft.stem, f'.{stamp}-{serial}.json')
        return kept

    def set_aside_work(self, edit: ImageEdit) -> Path:
        """Write what ``edit`` holds, as a draft, to ``.drafts/superseded/`` (:meth:`_set_aside`'s
        folder and names): work a tab drops unsaved (a Reload over a conflict) is kept there,
        never lost unseen; returns the file.

        Raises:
            OSError: it cannot be written (a read-only or full folder).
            UnsafeNameError: ``superseded`` is a link.
            ValueError: what is to be written cannot be (:func:`_write_json`).
        """
        # by its draft's name, whether or not the image is still there (gone meanwhile)
        name = self._drafts.get(edit.image) or next(annotation_file_names(edit.image))
        kept = self._superseded_name(self._own_folder(self.output_dir / DRAFT_DIR) / name)
        _write_json(kept, edit.to_draft())
        return kept

    def save(self, edit: ImageEdit) -> Path:
        """Write what ``edit`` holds; returns the file written.

        A finished image (every face complete, or skipped) goes to its annotation file,
        atomically, and its draft is removed; unfinished work goes to the draft. A model's
        points not accepted yet are saved with ``status: predicted``; accepted ones record who
        reviewed them and when (``meta.reviewed_by``, ``meta.reviewed_at``).

        A file written back from the original tools' plain format is version 1: the marker
        :data:`~.annotation.LEGACY_FORMAT_KEY` that reading it put in ``meta`` is dropped.

        Raises:
            AnnotationConflictError: the annotation file or draft was written by someone else
                since ``edit`` was opened, or ``edit`` is read-only; nothing is overwritten
                (reopen to see theirs).
            AnnotationError: a FIFO or a folder sits where a file goes, or what is to be
                written cannot be (:func:`_write_json`); nothing is written.
            OSError: the folder is read-only or full (the edit stays dirty: save again later).
        """
        if edit.read_only:
            raise AnnotationConflictError(f'{edit.image} is read-only here: {edit.read_only}')
        target, draft = self.annotation_path(edit.image), self.draft_path(edit.image)
        current = {}
        for path, seen in ((target, edit.revision), (draft, edit.draft_revision)):
            try:
                current[path] = _current_bytes(path)
            except NotRegularFileError:
                raise
            except AnnotationError:  # too large: no version an edit opened
                current[path] = b''
            if (None if current[path] is None else
                    hashlib.sha256(current[path]).hexdigest()) != seen:
                raise AnnotationConflictError(
                    f'{path} was changed by someone else since {edit.image} was opened here '
                    '(another tab?); reopen the image to see the newer version')
        if not edit.finished():
            edit.draft_revision = _write_json(draft, edit.to_draft())
            self._pending.add(edit.image)
            edit.dirty = False
            return draft
        now = now_iso()
        # Keep what the file already says of itself (a model's scores, the source...): of
        # the version checked above, not of a later read
        try:
            meta = {} if current[target] is None else load_annotation(target,
                                                                      current[target]).meta
        except AnnotationError as e:  # never overwrite a file nobody could read
            raise AnnotationConflictError(f'{e}; fix or move it, nothing was overwritten'
                                          ) from None
        meta.pop(LEGACY_FORMAT_KEY, None)  # written back in version 1
        meta.setdefault('created', now)
        # the annotator's name also tells tools/infer.py that a person saved the file
        # (is_models_prediction): a prediction under review is never replaced
        meta.update(annotator=self.annotator, modified=now)
        if edit.model is not None:
            meta['model'] = edit.model
        if edit.image_sha256 is not None:  # the picture as opened: what the points are on
            meta[IMAGE_SHA256_KEY] = edit.image_sha256
        if edit.status == STATUS_PREDICTED:
            meta.pop('reviewed_by', None)
            meta.pop('reviewed_at', None)
        elif edit.reviewed_at is not None and edit.reviewed_at != meta.get('reviewed_at'):
            # an Accept made here (not one the file records already): whoever saves later
            # (a point moved) is its annotator, not its reviewer
            meta.update(reviewed_by=self.annotator, reviewed_at=edit.reviewed_at)
        meta.pop(PREDICTED_FACES_KEY, None)
        faces = edit.file_faces()
        if edit.status == STATUS_SKIPPED and any(f.predicted for f in faces):
            meta[PREDICTED_FACES_KEY] = [k for k, f in enumerate(faces) if f.predicted]
        source = self._sidecar(edit.image)
        if source is not None:
            meta['source'] = source
        edit.revision, edit.dirty = _write_annotation(target, edit.to_annotation(meta)), False
        self._status[edit.image] = edit.status
        self._broken.discard(edit.image)
        try:
            draft.unlink(missing_ok=True)
        except OSError as e:  # saved all the same (no 'not saved' for work on disk): the
            # draft, older than the file now, is set aside when the image is opened again
            logger.warning('%s is saved, but its draft %s could not be removed (%s)', target,
                           draft, e.strerror or e)
            return target
        sync_folder(draft.parent)  # else a power cut could bring the finished draft back
        self._pending.discard(edit.image)
        edit.draft_revision = None
        return target


class OutputFolderLock:
    """The lock :func:`lock_output_folder` took; held until :meth:`release` or the process
    ends (the system drops it with the process, even a killed one)."""

    def __init__(self, path: Path, fd: int, writable: bool = True):
        self.path, self._fd, self._writable = path, fd, writable

    def release(self) -> None:
        """Let another annotator work in the folder (the lock file stays: removing it would
        let a third process lock a new file while a second holds the old one). Its process id
        is cleared first: a holder that can only read the file (another user's) leaves it as
        it is, and must not seem to be this process."""
        if self._fd is not None:
            if self._writable:
                clear_holder(self._fd)
            os.close(self._fd)  # closing drops the lock
            self._fd = None


def _in_use_error(folder: str | os.PathLike, fd: int, option: str) -> OutputFolderInUseError:
    """The error for ``folder`` locked by another process, named by its id
    (:func:`.file_lock.lock_holder`) through the lock file ``fd``."""
    return OutputFolderInUseError(
        f'{folder} is in use by another annotator or tools/infer.py (process id '
        f'{lock_holder(fd)}); two on one folder would overwrite each other\'s saves: stop '
        f'that one, or choose another {option}')


#: Seconds a lock held by another process is tried again before it is called in use: a peek
#: (:func:`check_output_folder_free`) holds the lock for an instant, and an annotator or another
#: peek starting in that instant must not be refused for it.
LOCK_WAIT_S = 0.4


def _can_save_in(folder: str | os.PathLike) -> bool:
    """Whether this process may make files in ``folder`` (write and search it)."""
    return os.access(folder, os.W_OK | os.X_OK)


def _open_lock_file(folder: str | os.PathLike, peek: bool) -> tuple[int, bool] | None:
    """Open (not when peeking: make) the output folder's lock file, read-write where it can
    (:func:`.file_lock.open_lock_file`).

    Returns:
        Its descriptor and whether it is open for writing; None where there is nothing to lock:
        no lock file to peek at, one that is not a regular file when peeking, or a folder where
        nothing can be saved (read-only) and no lock file this process may open.

    Raises:
        OutputFolderError: the lock file cannot be made (not when peeking), is not a regular
            file (not when peeking), or cannot be opened at all in a folder this process can
            save in: another annotator there would go unnoticed.
    """
    path = Path(folder) / LOCK_FILE
    try:
        return open_lock_file(path, create=not peek)
    except NotRegularLockFileError:
        if peek:  # left for the lock to report
            return None
        raise OutputFolderError(f'{path} is not a regular file (a FIFO, a device or a '
                                'folder): move it away to annotate in this folder') from None
    except OSError as e:
        # (one there that cannot be opened: no EACCES of a file that could not be made, in a
        # folder os.access, asking for the real user, takes for writable where open did not)
        if e.errno in (errno.EACCES, errno.EPERM) and os.path.lexists(path) \
                and _can_save_in(folder):
            raise OutputFolderError(
                f'cannot open the lock file {path} ({e.strerror or e}), so another annotator '
                f'in {folder} would go unnoticed: make it readable and writable for all (chmod '
                f'a+rw {path}), or remove it while no annotator works there') from None
        # none there (a peek: free), one the lock itself will report (a link), or a folder
        # where nothing can be saved: no save to keep apart from another annotator's
        if peek or e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return None
        raise OutputFolderError(f'cannot make the lock file {path}: {e.strerror or e}'
                                ) from None


def _try_lock(folder: str | os.PathLike, option: str, peek: bool) -> tuple[int, bool] | None:
    """Open the output folder's lock file and lock it (``flock``), waiting at most
    :data:`LOCK_WAIT_S` for another holder: what :func:`lock_output_folder` takes and
    :func:`check_output_folder_free` peeks.

    Args:
        folder: the output folder.
        option: the option that chose ``folder``, for the message when it is in use.
        peek: make nothing and report nothing but a holder or a lock file this process cannot
            open: a missing or unusual lock file, or one that cannot be locked here, is left
            for the lock to report.

    Returns:
        The locked file's descriptor (the caller closes it) and whether it is open for writing;
        None where there is nothing to lock: no lock file to peek at, none this process may
        open in a folder where nothing can be saved (read-only), or a file system whose
        ``flock`` fails (logged once when not peeking).

    Raises:
        OutputFolderInUseError: another process holds it (named by its id).
        OutputFolderError: the lock file cannot be made (not when peeking), cannot be opened
            in a folder this process can save in, or is not a regular file (not when peeking).
    """
    opened = _open_lock_file(folder, peek)
    if opened is None:
        return None
    fd, writable = opened
    try:
        lock_exclusive(fd, wait_s=LOCK_WAIT_S)  # (a peek too: two peeks in one instant)
        return fd, writable
    except BlockingIOError:
        pass  # held: refused below, the descriptor closed whatever naming the holder meets
    except OSError as e:  # ENOLCK: NFS without a lock daemon; EBADF: some read-only
        os.close(fd)
        if not peek:
            logger.warning('cannot lock the output folder %s (%s): two annotators on it would '
                           'overwrite each other\'s saves', folder, e.strerror or e)
        return None
    except BaseException:
        os.close(fd)
        raise
    try:
        raise _in_use_error(folder, fd, option)
    finally:
        os.close(fd)


def persons_files_in_subfolders(annotation_dir: Path) -> dict[str, Path]:
    """image name -> a person's file (not a model's untouched prediction:
    :func:`~.annotation.is_models_prediction`) naming it in a subfolder of the annotation
    folder, which the converter reads (recursively) but the annotator does not list: infer
    leaves such an image be (a prediction of it, accepted in a hurry, became the file the
    converter keeps and pushed the person's out of training: a helper's repro, files moved
    into ``round1/``), and the annotator says how many it shows as to do. Files that cannot
    be read are left to the converter to name."""
    found: dict[str, Path] = {}
    for path in scan_annotation_folder(annotation_dir)[0]:
        if path.parent == annotation_dir or not path.is_file():
            continue
        try:
            annotation = load_annotation(path)
        except AnnotationError:
            continue
        if not is_models_prediction(annotation):
            found.setdefault(image_key(annotation.image), path)
    return found


def check_output_folder_free(folder: str | os.PathLike, option: str = '--output-dir') -> None:
    """Refuse early a folder that another process holds (:func:`lock_output_folder`), making
    and locking nothing: for a tool with slow work to do before it takes the lock (a model to
    load), which a refused run should neither do nor leave a folder or lock file behind for.
    Only a lock file there, regular and held, or one this process cannot open in a folder it
    can save in, refuses; anything else is left to the lock.

    Raises:
        OutputFolderInUseError: another process holds it.
        OutputFolderError: its lock file cannot be opened, in a folder this process can save in.
    """
    if has_flock():
        locked = _try_lock(folder, option, peek=True)
        if locked is not None:
            os.close(locked[0])  # drops the peek's own lock


def lock_output_folder(folder: str | os.PathLike, option: str = '--output-dir'
                       ) -> OutputFolderLock | None:
    """Take the output folder for this process: two annotators on one folder would overwrite
    each other's saves (each checks a file's revision, then replaces it: another may write in
    between), and so would ``tools/infer.py`` writing predictions there (it takes the lock
    too: the annotator binds files to images when it starts, and a prediction written
    meanwhile could take a name it gave another image).

    An exclusive advisory lock (``flock``) on :data:`LOCK_FILE` in ``folder`` (made readable
    and writable for all, :data:`.file_lock.LOCK_FILE_MODE`, so that other users' annotators
    lock it too), which holds the holder's process id where it may write it; another process's
    lock is not waited for (beyond :data:`LOCK_WAIT_S`). Annotators in one process share their
    files through one :class:`AnnotationSession` each and are not locked apart.

    Args:
        folder: the output folder (it exists).
        option: the option that chose ``folder``, for the message when it is in use.

    Returns:
        The lock; None where there is nothing to lock with: no ``flock`` (Windows), a folder
        where nothing can be saved (read-only) and no lock file this process may open, or a
        file system whose ``flock`` fails (NFS without a lock daemon: one warning is logged).

    Raises:
        OutputFolderInUseError: another process holds it (the message names it by its id,
            :func:`.file_lock.lock_holder`).
        OutputFolderError: the lock file is not a regular file (left alone), cannot be made,
            or cannot be opened though the folder can be saved in (another user's, not
            readable): the message names it and says how to share it.
    """
    if not has_flock():
        return None
    locked = _try_lock(folder, option, peek=False)
    if locked is None:
        return None
    fd, writable = locked
    if writable:  # else the file keeps what it holds, which no refusal takes for this one's id
        write_holder(fd)
    return OutputFolderLock(Path(folder) / LOCK_FILE, fd, writable)
