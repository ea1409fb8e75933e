"""The landmark annotator: a point editor in the browser, served by a Gradio app over
:class:`~.annotate.AnnotationSession`.

``tools/annotate_landmarks.py`` starts it. The picture and its points are drawn in the browser
(``editor/editor.js``, in a ``gr.HTML`` component); this module serves the page, the image bytes
and a small JSON protocol, and holds no annotation logic of its own (that is :mod:`.annotate`,
tested without a browser):

- ``GET annotator/image/<index>?v=<version>``: an image of ``--image-dir``, its original bytes,
  by its place in the session's list (no name or path from the page reaches the disk), cached
  by the browser;
- ``POST annotator/api/open``: open an image for a tab (by name, by number, next, previous, next
  to do, a part of its name); the answer is the image's state and a ``token`` for its edits;
- ``POST annotator/api/edit``: edit operations (:meth:`.ImageEdit.apply`, plus ``predict``),
  each with the tab's sequence number: applied once and in order, so the page may send them
  again after a lost answer; the server saves after each batch (autosave) and answers the
  canonical state, ``applied`` and ``saved`` (the last sequence numbers applied and on disk);
- ``GET annotator/api/prediction?tab=&token=``: whether the model's points for the tab's image
  are ready (the page asks while they are being pre-annotated);
- ``GET annotator/api/config``, ``annotator/chart.png``, ``annotator/static/*``: the layout,
  the click-order chart, the editor's code.

With a model, a background thread pre-annotates (:class:`PreAnnotator`): while the person works
on an image, it predicts the points that Predict would give for that image and the next few to
do, so that Predict is instant there. It never writes a file, and it uses the model only when
the page is quiet and no prediction of the page waits (:class:`ModelGate`).

The page draws every edit at once and sends it; the server never draws pictures. Requests whose
``Host`` is not the annotator's own address are refused (:class:`HostGuard`: DNS rebinding), as
are uploads (the page has no file input). The annotator's own API (``annotator/api/open`` and
``annotator/api/edit``) reads request bodies of at most :data:`MAX_BODY_BYTES`; the bodies of
Gradio's own routes are Gradio's to bound.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import ipaddress
import json
import logging
import math
import mimetypes
import os
import secrets
import socket
import stat
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Request  # a module global: FastAPI resolves the routes' annotations here

from .annotate import (
    HISTORY_STEPS,
    MAX_REASON_CHARS,
    AnnotationConflictError,
    AnnotationSession,
    EditError,
    ImageEdit,
    UnsafeNameError,
)
from .annotation import (
    STATUS_PREDICTED,
    STATUS_SKIPPED,
    AnnotationError,
    image_orientation,
    image_size,
    is_sha256_hex,
    read_image,
)
from .errors import AnimalLandmarksError, first_line, printable
from .schema import GROUP_COLORS, LANDMARKS, NUM_KEYPOINTS, SKELETON, VISIBILITY_FLAGS, click_runs

logger = logging.getLogger(__name__)

SKIP_REASONS = ('no usable face', 'bad quality', 'not a character face', 'duplicate')
LOCAL_HOSTS = ('127.0.0.1', 'localhost', '::1')
ALL_INTERFACES = ('0.0.0.0', '::', '')
#: The editor's own files, served from the package (nothing from elsewhere reaches the page).
EDITOR_DIR = Path(__file__).resolve().parent / 'editor'
EDITOR_FILES = {'editor.js': 'text/javascript', 'editor.css': 'text/css'}
#: Tabs whose state the server keeps (the least recently used one is dropped beyond this; its
#: page reopens its image from disk, all its saved edits included).
MAX_TABS = 64
#: Images whose undo history a tab keeps after leaving them (the least recently left is
#: dropped beyond this, for all tabs together): coming back, Ctrl+Z undoes what was done there
#: before (a stray n, or Predict over a finished face, was else beyond undo).
KEPT_HISTORIES = 32
#: Edit operations accepted in one request.
MAX_OPS = 1000
#: The largest request body the annotator's API routes read, in bytes (a full batch of MAX_OPS
#: edits is about 100 KB): a larger one is refused (413) before it is read whole into memory.
#: Gradio's own routes are not counted here.
MAX_BODY_BYTES = 1 << 20
#: The last part of the paths of Gradio's routes that take files: the page has no component
#: that uploads, and Gradio would keep whatever any page sent and serve it back.
UPLOAD_ROUTES = ('upload', 'upload_progress', 'process_recording')
#: Images pre-annotated after the one opened (the next ones to do, in the visiting order).
PRE_ANNOTATE_AHEAD = 3
#: Faces pre-annotated per image: the largest ones the face detector finds.
PRE_ANNOTATE_FACES = 4
#: Predicted faces kept (one per image version and face box; the least recently used goes).
PREDICTION_CACHE_SIZE = 64
#: Seconds without a request of the page before the background worker uses the model: a
#: person clicking points (a request each) keeps it waiting, so it never slows their edits.
QUIET_S = 0.3

#: Keyboard shortcuts, shown in the page's help (the editor implements them).
SHORTCUTS: dict[str, str] = {
    'click': 'place the next point (or the selected one)',
    'click a point (face complete), a row of the list': 'select it: o, x, Delete act on it, '
                                                         'a click places it (a click on it '
                                                         'again deselects it)',
    'drag a point': 'move it (hover shows its number and name)',
    'drag the picture, space+drag': 'pan',
    'wheel, + / -': 'zoom around the cursor (+ / -: around the middle when the cursor is '
                    'elsewhere)',
    'f / 0': 'zoom on the face / fit the picture',
    'Ctrl+Z (z), Ctrl+Shift+Z (Shift+Z), Ctrl+Y': 'undo, redo (letter keys work in any '
                                                  'keyboard layout, Caps Lock or not)',
    'o / x': 'occluded / absent on the selected (or next) point, again to unset',
    'Delete, Backspace': 'remove the selected point',
    'Escape': 'deselect, stop drawing a box (or take back a drag under way)',
    'l': 'labels on / off',
    'b': 'draw the face box (drag a rectangle)',
    'm': 'predict the points with the model ("Predict ✓": pre-annotated, instant)',
    'Enter': 'accept the predicted points (after review)',
    'n / p, → / ←': 'next / previous image',
    'u': 'next image to do (no annotation, predicted, or an unfinished draft)',
    's, Ctrl+S': 'save now (every edit is saved anyway)',
    '?': 'this help',
}


# --- the session behind the pages ----------------------------------------------------------


class RequestTooLargeError(EditError):
    """A request body over :data:`MAX_BODY_BYTES` (answered 413)."""


def _check_tab_id(tab: Any) -> None:
    """Refuse a tab id that is no text of 8 to 100 characters (a list from a page's JSON
    could not even be looked up)."""
    if not isinstance(tab, str) or not 8 <= len(tab) <= 100:
        raise EditError('a tab id is a text of 8 to 100 characters')


@dataclass
class TabSession:
    """What one browser tab has open: the image's edits and how far its edits came."""

    token: str
    index: int
    edit: ImageEdit | None
    applied: int = 0  # the last sequence number applied
    saved: int = 0  # the last sequence number on disk
    message: str = ''
    conflict: bool = False
    save_error: str = ''
    # the save failed the way it will again (what is to be written cannot be): the page sends
    # again only when asked (s, another edit), not every few seconds
    save_permanent: bool = False
    used: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class _KeptHistory:
    """The undo history of an image a tab left, and the revisions of its files then: it is
    taken up again only over the same files (another tab's save, or a file edited by hand,
    meanwhile: the steps would undo into a state never seen). Not over the same faces: the
    image reopens as its file holds it (points rounded, a skipped image's unfinished face
    dropped), and from there the steps undo to what the tab had, as they would have."""

    history: deque
    future: list
    recorded: int
    revisions: tuple[str | None, str | None]

    @classmethod
    def of(cls, edit: ImageEdit) -> _KeptHistory:
        return cls(edit.history, list(edit.future), edit.recorded,
                   (edit.revision, edit.draft_revision))

    def matches(self, edit: ImageEdit) -> bool:
        return (edit.revision, edit.draft_revision) == self.revisions and not edit.read_only

    def give(self, edit: ImageEdit) -> None:
        edit.history, edit.future, edit.recorded = self.history, list(self.future), \
            self.recorded


def _seen_revisions(seen: Any) -> tuple[str | None, str | None] | None:
    """The ``seen`` of :meth:`Annotator.open`, checked: ``(revision, draft_revision)``, each
    a sha256 in hex or None (no file)."""
    if seen is None:
        return None
    if not isinstance(seen, dict):
        raise EditError('seen must be {"revision": ..., "draft_revision": ...}')
    revisions = seen.get('revision'), seen.get('draft_revision')
    for value in revisions:
        if value is not None and not is_sha256_hex(value):
            raise EditError(f'a revision is a sha256 in hex or null, not {str(value)[:80]!r}')
    return revisions


def _box_for_face(boxes: np.ndarray, edit: ImageEdit) -> tuple[float, float, float, float]:
    """Of detected boxes, the one for the current face: the box around its points, else the
    largest not already holding another face of the image."""
    def holds(box, points) -> bool:
        xy = np.array([p for p in points if p is not None]).reshape(-1, 2)
        return len(xy) > 0 and bool(((xy >= box[:2]) & (xy <= box[2:])).all(1).mean() > 0.5)

    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for k in np.argsort(-areas):
        if holds(boxes[k], edit.current.points):
            return tuple(float(v) for v in boxes[k])
    others = [f.points for i, f in enumerate(edit.faces) if i != edit.face]
    for k in np.argsort(-areas):
        if not any(holds(boxes[k], points) for points in others):
            return tuple(float(v) for v in boxes[k])
    return tuple(float(v) for v in boxes[int(np.argmax(areas))])


@functools.cache
def label_parts() -> list[dict]:
    """How the editor turns each point's number away from its neighbours, from the schema's click
    runs: ``points`` of a part and what its labels point away from (``away_from``): ``'face'``,
    the face's centre (the contour); ``'self'``, the part's own centre (eyes, mouth: labels
    spread around them); an index into this list, the same side's eye (a brow); ``'beside'``, a
    fixed side (a point alone, the nose tip: clear of the upper lip)."""
    runs = click_runs()
    names = list(runs)
    parts = []
    for name, members in runs.items():
        group = LANDMARKS[members[0]].group
        side = name.split()[0]
        if group == 'contour':
            away = 'face'
        elif group == 'eyebrows' and f'{side} eye' in runs:
            away = names.index(f'{side} eye')
        else:
            away = 'self'
        parts.append(dict(points=members, away_from=away))
    in_runs = {k for members in runs.values() for k in members}
    parts += [dict(points=[k], away_from='beside') for k in range(NUM_KEYPOINTS)
              if k not in in_runs]
    return parts


def chart() -> tuple[bytes, int, int, list[list[float]]]:
    """The click-order chart: a drawn character (PNG) and its 28 points, which the page
    numbers (large enough to read, enlarged on click)."""
    import cv2

    from .synthetic import reference_face
    size = 600
    image, points = reference_face(size)
    x0, y0 = (points.min(0) - 0.08 * size).astype(int).clip(0)
    x1, y1 = (points.max(0) + 0.08 * size).astype(int)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    ok, png = cv2.imencode('.png', crop)
    assert ok
    return (png.tobytes(), crop.shape[1], crop.shape[0],
            [[round(float(x), 2), round(float(y), 2)] for x, y in points - (x0, y0)])


@functools.lru_cache(maxsize=4)
def _picture_as_trained(path: Path, version: str) -> bytes | None:
    """The picture of an image that a browser, shown the file, would turn otherwise than
    training does (a WebP's EXIF orientation Chromium ignores, a PNG's ``eXIf`` chunk after the
    pixels: :func:`.image_orientation`), as training decodes it (:func:`.read_image`), as PNG
    bytes with no EXIF; None for an image the browser shows alike, served as it is. ``version``
    keys the cache.

    Raises:
        AnnotationError: the file is no image, cannot be decoded, or has too many pixels; one
            line naming it.
    """
    import cv2
    if image_orientation(path).shown_alike:
        return None
    ok, png = cv2.imencode('.png', read_image(path), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise AnnotationError(f'{path}: cannot be encoded as PNG to be shown')
    return png.tobytes()


def image_version(path: Path) -> str:
    """A version of an image file for its URL (the browser caches each version for good):
    its modification time and size, and its name's digest. The URL names the image by its
    place in the list, which another image takes when the list changes (an image added, a
    --files order, another folder on the port): two files of one size and time (frames of a
    tar, whole-second times) had one URL, and the page showed the cached picture of the other.
    """
    stat = path.stat()
    name = hashlib.sha256(os.fsencode(path)).hexdigest()[:12]
    return f'{stat.st_mtime_ns:x}-{stat.st_size:x}-{name}'


# --- pre-annotation: the model's points before Predict is pressed -----------------------------

#: A face box ``(x0, y0, x1, y1)`` in image pixels.
Box = tuple[float, float, float, float]
#: An image file's version: its path, modification time (ns) and size.
ImageKey = tuple[str, int, int]


def image_key(path: Path) -> ImageKey:
    """The version of an image file that a prediction is for (a changed file is a new key)."""
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size


def box_key(box: Box) -> Box:
    """A box as the caches compare it (to 1/1000 px: a box that went through JSON and float32
    is the same box)."""
    return tuple(round(float(v), 3) for v in box)


def lazy_image(path: Path) -> Callable[[], np.ndarray]:
    """A function that decodes the image the first time it is called (BGR, EXIF applied as
    mmcv does) and returns the same pixels after: a prediction found in the caches needs none.

    Raises (when called):
        AnnotationError: the image cannot be decoded.
    """
    decoded: list[np.ndarray] = []

    def image() -> np.ndarray:
        if not decoded:
            decoded.append(read_image(path))
        return decoded[0]

    return image


def whole_image_box(width: int, height: int) -> Box:
    """The box Predict uses when there is no drawn or detected one (mmpose's whole image)."""
    return 0.0, 0.0, float(width), float(height)


@dataclass(frozen=True)
class PredictedFace:
    """The model's points for one face box: ``points`` ``(28, 2)``, ``scores`` ``(28,)``."""

    points: np.ndarray
    scores: np.ndarray | None


class ModelGate:
    """Who uses the model (and the face detector) next: one user at a time, the page first.

    The page's predictions take the model as soon as it is free; the background worker takes it
    only when no prediction of the page is waiting, no request of the page is being served and
    none was for ``quiet_s`` seconds. A model call cannot be interrupted, so the page waits at
    most for the one background call under way. (``torch.set_num_threads`` would be the other
    lever, but it is process-wide: it would slow the page's predictions too.)

    Args:
        quiet_s: how long the page must have been quiet before the background uses the model.
    """

    def __init__(self, quiet_s: float = QUIET_S):
        self.quiet_s = quiet_s
        self._condition = threading.Condition()
        self._busy = False
        self._page_waiting = 0  # predictions of the page waiting for the model
        self._serving = 0  # requests of the page being served
        self._last_request = -math.inf  # when the last one ended (time.monotonic)
        self.closed = False

    @property
    def page_waiting(self) -> int:
        """Predictions of the page waiting for the model now."""
        return self._page_waiting

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Around each request of the page (an edit, an open): the background waits."""
        with self._condition:
            self._serving += 1
        try:
            yield
        finally:
            with self._condition:
                self._serving -= 1
                self._last_request = time.monotonic()
                self._condition.notify_all()

    @contextlib.contextmanager
    def for_page(self) -> Iterator[None]:
        """Use the model for the page: as soon as it is free, before the background."""
        with self._condition:
            self._page_waiting += 1
            try:
                self._condition.wait_for(lambda: not self._busy)
            finally:
                self._page_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            self._release()

    @contextlib.contextmanager
    def for_background(self) -> Iterator[bool]:
        """Use the model in the background: waits until the page is quiet; yields False (and
        holds nothing) when the gate was closed meanwhile."""
        with self._condition:
            while True:
                if self.closed:
                    break
                quiet_for = time.monotonic() - self._last_request
                if self._busy or self._page_waiting or self._serving:
                    self._condition.wait()
                elif quiet_for < self.quiet_s:
                    self._condition.wait(self.quiet_s - quiet_for)
                else:
                    self._busy = True
                    break
            acquired = not self.closed
        try:
            yield acquired
        finally:
            if acquired:
                self._release()

    def _release(self) -> None:
        with self._condition:
            self._busy = False
            self._condition.notify_all()

    def close(self) -> None:
        """Let no background call start any more (the page's still may)."""
        with self._condition:
            self.closed = True
            self._condition.notify_all()


class PreAnnotator:
    """The model's points for the images next in line, predicted in one background thread and
    kept in memory, so that Predict answers at once.

    For each image of its plan it does what Predict does for a face without a drawn box: the
    face detector's boxes (the :data:`PRE_ANNOTATE_FACES` largest; none found, or no detector:
    the whole image), then the points of each box. Results are cached by image version (path,
    modification time, size) and box, least recently used dropped beyond ``cache_size``; the
    page's own predictions go through the same cache. Nothing is written to disk: the points
    reach a file only when the person presses Predict.

    Args:
        predictor: a :class:`~.infer.LandmarkPredictor` or :class:`~.infer.OnnxLandmarkPredictor`
            (``predict(image_bgr, boxes_xyxy)``).
        detector: a :class:`~.infer.FaceDetector` (``detector(image_bgr)`` -> boxes), or None.
        gate: who uses the model when (shared with the requests of the page).
        cache_size: predicted faces kept (detections: as many images).
    """

    def __init__(self, predictor, detector=None, gate: ModelGate | None = None,
                 cache_size: int = PREDICTION_CACHE_SIZE):
        self.predictor = predictor
        self.detector = detector
        self.gate = gate or ModelGate()
        self.cache_size = cache_size
        self._faces: OrderedDict[tuple[ImageKey, Box], PredictedFace] = OrderedDict()
        self._detections: OrderedDict[ImageKey, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._plan_changed = threading.Condition()
        self._plan: list[Path] = []  # images still to pre-annotate, in order
        self._working: Path | None = None  # the image being pre-annotated
        self._thread: threading.Thread | None = None
        self.closed = False
        #: predictions of the page answered from the cache, computed for it, made in advance
        self.hits = 0
        self.computed = 0
        self.pre_annotated = 0

    # the cache ---------------------------------------------------------------------------------

    def _get(self, cache: OrderedDict, key):
        with self._cache_lock:
            found = cache.get(key)
            if found is not None:
                cache.move_to_end(key)
            return found

    def _put(self, cache: OrderedDict, key, value) -> None:
        with self._cache_lock:
            cache[key] = value
            cache.move_to_end(key)
            while len(cache) > self.cache_size:
                cache.popitem(last=False)

    def cached_detections(self, key: ImageKey) -> np.ndarray | None:
        """The face detector's boxes for an image version, if known (no detector: none)."""
        if self.detector is None:
            return np.zeros((0, 4), np.float32)
        return self._get(self._detections, key)

    def cached_face(self, key: ImageKey, box: Box) -> PredictedFace | None:
        """The points for a box of an image version, if predicted already."""
        return self._get(self._faces, (key, box_key(box)))

    # the model, through the gate ------------------------------------------------------------

    def detections(self, key: ImageKey, image: Callable[[], np.ndarray]) -> np.ndarray:
        """The face detector's boxes (cached, else detected now for the page). ``image``
        decodes the picture (only called on a miss)."""
        found = self.cached_detections(key)
        if found is not None:
            return found
        with self.gate.for_page():
            found = self.cached_detections(key)  # the background may have just made them
            if found is None:
                found = self._detect(key, image())
        return found

    def face(self, key: ImageKey, image: Callable[[], np.ndarray], box: Box
             ) -> tuple[PredictedFace, bool]:
        """The points for ``box`` for the page: cached (made in advance, or asked before), else
        predicted now, before any background work. Returns them and whether they were cached.
        """
        found = self.cached_face(key, box)
        if found is None:
            with self.gate.for_page():
                found = self.cached_face(key, box)
                if found is None:
                    found = self._predict(key, image(), box)
                    self.computed += 1
                    return found, False
        self.hits += 1
        return found, True

    def _detect(self, key: ImageKey, image: np.ndarray) -> np.ndarray:
        boxes = np.asarray(self.detector(image), np.float32).reshape(-1, 4)
        self._put(self._detections, key, boxes)
        return boxes

    def _predict(self, key: ImageKey, image: np.ndarray, box: Box) -> PredictedFace:
        sample = self.predictor.predict(image, np.array([box], np.float32))
        scores = getattr(sample.pred_instances, 'keypoint_scores', None)
        face = PredictedFace(np.array(sample.pred_instances.keypoints[0], np.float64),
                             None if scores is None else np.array(scores[0], np.float64))
        self._put(self._faces, (key, box_key(box)), face)
        return face

    # the background worker ------------------------------------------------------------------

    def schedule(self, images: list[Path]) -> None:
        """Pre-annotate these images, in this order, instead of what was planned (the person
        moved on); the worker thread starts on the first call."""
        if self.closed:
            return
        with self._plan_changed:
            self._plan = [path for path in images if path != self._working]
            self._plan_changed.notify_all()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name='pre-annotator',
                                            daemon=True)
            self._thread.start()

    def planned(self, path: Path) -> bool:
        """Whether the image is still to be pre-annotated, or being pre-annotated now."""
        with self._plan_changed:
            return path == self._working or path in self._plan

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the plan is done (True), or ``timeout`` seconds passed (False)."""
        with self._plan_changed:
            return self._plan_changed.wait_for(
                lambda: not self._plan and self._working is None, timeout)

    @property
    def alive(self) -> bool:
        """Whether the worker thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _work(self) -> None:
        while True:
            with self._plan_changed:
                self._plan_changed.wait_for(lambda: self._plan or self.closed)
                if self.closed:
                    return
                self._working = self._plan.pop(0)
            try:
                self._pre_annotate(self._working)
            except Exception as e:  # an unreadable image, a model error: Predict will say
                logger.warning('pre-annotating %s failed: %s', self._working, e)
            finally:
                with self._plan_changed:
                    self._working = None
                    self._plan_changed.notify_all()

    def _pre_annotate(self, path: Path) -> None:
        """What Predict gives for ``path`` without a drawn box, one model call at a time."""
        key, image = image_key(path), lazy_image(path)
        boxes = self.cached_detections(key)
        if boxes is None:
            with self.gate.for_background() as acquired:
                if not acquired:
                    return
                boxes = self.cached_detections(key)
                if boxes is None:
                    boxes = self._detect(key, image())
        if len(boxes):
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            wanted = [tuple(float(v) for v in boxes[k])
                      for k in np.argsort(-areas)[:PRE_ANNOTATE_FACES]]
        else:
            wanted = [whole_image_box(*image_size(path))]
        for box in wanted:
            if self.cached_face(key, box) is not None:
                continue
            with self.gate.for_background() as acquired:
                if not acquired:
                    return
                if self.cached_face(key, box) is None:  # the page may have asked meanwhile
                    self._predict(key, image(), box)
                    self.pre_annotated += 1

    def close(self, timeout: float = 60) -> None:
        """Stop the worker (after the model call under way, if any) and wait for it."""
        self.closed = True
        self.gate.close()
        with self._plan_changed:
            self._plan = []
            self._plan_changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning('the pre-annotation thread did not stop in %.0f s', timeout)


class Annotator:
    """The annotator's server side: tabs, their open images, edits and model assistance.

    Every method takes and returns plain data (the routes of :func:`create_app` are thin), so
    that it is tested without a browser. With a model, opening an image starts pre-annotating
    it and the next ones (:class:`PreAnnotator`); :meth:`close` stops that (the app's server
    calls it when it stops; ``with Annotator(...)`` does too).

    Args:
        session: the image and annotation folders.
        predictor: a :class:`~.infer.LandmarkPredictor` for model-assisted annotation.
        detector: a :class:`~.infer.FaceDetector` to find faces for the predictor.
        model: the model's name for the files' ``meta.model`` (e.g. its checkpoint).
        pre_annotate: images to pre-annotate after the one opened (0: none; the one opened
            is pre-annotated too unless 0).
        quiet_s: how long the page must be quiet before the background uses the model.
    """

    def __init__(self, session: AnnotationSession, predictor=None, detector=None,
                 model: str | None = None, pre_annotate: int = PRE_ANNOTATE_AHEAD,
                 quiet_s: float = QUIET_S):
        if not session.images:
            raise AnnotationError(f'no images in {session.image_dir}')
        self.session = session
        self.predictor = predictor
        self.detector = detector
        self.model = model or ('model' if predictor is not None else None)
        self.tabs: OrderedDict[str, TabSession] = OrderedDict()
        #: (tab, image) -> the undo history the tab left there (see KEPT_HISTORIES)
        self.kept_histories: OrderedDict[tuple[str, str], _KeptHistory] = OrderedDict()
        self._lock = threading.RLock()  # one edit or open at a time: they share the files
        self.gate = ModelGate(quiet_s)
        self.pre_annotate = max(int(pre_annotate), 0)
        #: the model's points, cached; made in advance when ``pre_annotate`` (None: no model)
        self.pre = PreAnnotator(predictor, detector, self.gate) if predictor is not None \
            else None

    def close(self) -> None:
        """Stop pre-annotating (the model call under way finishes first); idempotent."""
        if self.pre is not None:
            self.pre.close()

    def __enter__(self) -> Annotator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # what the page shows ----------------------------------------------------------------------

    def config(self) -> dict:
        """What the editor needs once: the layout of the 28 points, keys, options, the chart."""
        _, width, height, points = chart()
        return dict(
            count=len(self.session.images),
            landmarks=[dict(name=lm.name, description=lm.description, group=lm.group,
                            color='#' + bytes(GROUP_COLORS[lm.group]).hex())
                       for lm in LANDMARKS],
            skeleton=[list(pair) for pair in SKELETON],
            visibility={name: flag for flag, name in VISIBILITY_FLAGS.items()},
            label_parts=label_parts(),
            history_steps=HISTORY_STEPS, kept_histories=KEPT_HISTORIES, max_ops=MAX_OPS,
            skip_reasons=list(SKIP_REASONS), max_reason_chars=MAX_REASON_CHARS,
            predict=self.predictor is not None,
            detector=self.detector is not None, shortcuts=SHORTCUTS,
            chart=dict(url='annotator/chart.png', width=width, height=height, points=points))

    def status_label(self, edit: ImageEdit | None, image: str) -> str:
        """The image's state in words, as the header shows it."""
        session = self.session
        try:
            drafted = edit is not None and session.has_draft(image)
        except (UnsafeNameError, OSError):  # the image is now a link out of its folder, or
            # the drafts cannot be looked at: the save says why; the state is still drawn
            drafted = False
        if drafted:
            return 'draft (unfinished)'
        status = session.status(image)
        if status == STATUS_SKIPPED:
            reason = edit.status_reason if edit is not None else ''
            return f'skipped: {reason}' if reason else 'skipped'
        if status == STATUS_PREDICTED:
            return 'predicted, to review'
        if status is not None:
            return 'annotated'
        return 'not started'

    def state(self, tab: TabSession, ahead: bool = True) -> dict:
        """The canonical state of a tab's image, as the page draws it.

        Args:
            tab: the tab.
            ahead: name the picture ``u`` would show (``to_do_url``), which the page decodes
                ahead when it shows an image; an edit's answer leaves it None (finding it
                walks the folder: milliseconds on each edit of a large folder mostly done).
        """
        session = self.session
        image = session.images[tab.index]
        progress = session.progress()
        # the pictures n and u would show next, for the page to decode ahead (u's only where it
        # is another: in a folder half done, or in review order, it is seldom the next one)
        to_do = session.next_to_do(tab.index) if ahead else None
        state = dict(
            token=tab.token, image=image, index=tab.index, count=len(session.images),
            url=self.image_url(tab.index), next_url=self.image_url(tab.index + 1),
            to_do_url=(self.image_url(to_do) if to_do not in (None, tab.index, tab.index + 1)
                       else None),
            applied=tab.applied, saved=tab.saved, message=tab.message,
            conflict=tab.conflict, save_error=tab.save_error,
            save_permanent=tab.save_permanent,
            progress=dict(done=progress.done, predicted=progress.predicted,
                          to_do=progress.to_do, total=progress.total),
            status_label=self.status_label(tab.edit, image), edit=None,
            prediction=self.prediction_status(tab.edit))
        if tab.edit is not None:
            edit = tab.edit
            try:
                file = session.annotation_path(image).name
            except UnsafeNameError:  # a link out of the folder now: the save error says so
                file = None
            state.update(edit=edit.to_json(), width=edit.width, height=edit.height,
                         undo=len(edit.history), redo=len(edit.future),
                         file=file, problem=edit.problem(),
                         seen=dict(revision=edit.revision, draft_revision=edit.draft_revision))
        return state

    def image_url(self, index: int) -> str | None:
        """The URL of the image at ``index`` (None: no such image, or gone)."""
        if not 0 <= index < len(self.session.images):
            return None
        try:
            version = image_version(self.session.image_path(self.session.images[index]))
        except (OSError, UnsafeNameError):  # gone, or a link that now leads elsewhere
            return None
        return f'annotator/image/{index}?v={version}'

    # tabs -------------------------------------------------------------------------------------

    def _tab(self, tab: str) -> TabSession | None:
        found = self.tabs.get(tab)
        if found is not None:
            self.tabs.move_to_end(tab)
            found.used = time.monotonic()
        return found

    def _find(self, wanted: str, current: int) -> int | None:
        """An image given by its number (from 1), its name, or a part of its name (the next
        match after ``current``)."""
        images, wanted = self.session.images, wanted.strip()
        # ASCII digits only ('²' is a digit int() refuses), and few (int() of 5,000 digits
        # raises)
        if wanted.isascii() and wanted.isdigit() and len(wanted) <= 12 and \
                1 <= int(wanted) <= len(images):
            return int(wanted) - 1
        try:
            return self.session.index(wanted)
        except UnsafeNameError:
            pass
        order = images[current + 1:] + images[:current + 1]
        found = next((name for name in order if wanted and wanted in name), None)
        return None if found is None else self.session.index(found)

    def open(self, tab: str, *, image: str | None = None, index: int | None = None,
             go: str | None = None, wanted: str | None = None, current: int | None = None,
             discard: bool = False, seen: dict | None = None) -> dict:
        """Open an image in a tab.

        Args:
            tab: the tab's id (the page makes one).
            image: an image by its name; or ``index``, its place in the list (from 0); or
                ``go``: ``'start'`` (the first to do), ``'next'``, ``'prev'``, ``'todo'`` (the
                next to do) from ``current``; or ``wanted``: a number from 1, a name, a part.
            current: the image the page shows (for ``go`` and ``wanted``).
            discard: drop what the tab could not save (Reload) instead of saving it first;
                true or false only (a page's ``"false"`` is text, which ``bool`` takes for
                true: the tab's unsaved work would be dropped).
            seen: the revisions of the image's files the page last knew (``state['seen']``),
                when it opens the image again to send edits the server lost (a restart): an
                edit is then saved only over those same files, else it is a conflict, as if
                the tab had never lost it.

        Returns:
            ``{'ok': True, 'state': ...}``, or ``{'ok': False, 'message': ...}`` when the image
            is not there, cannot be opened (then ``state`` holds it, without edits), or the
            tab's unsaved work cannot be saved (it stays put; ``state`` is the tab's image
            with that work, so a reloaded page shows it and can Reload).
        """
        _check_tab_id(tab)
        seen = _seen_revisions(seen)
        if not isinstance(discard, bool):
            raise EditError(f'discard is true or false, not '
                            f'{printable(repr(discard), one_line=True, limit=80)}')
        with self.gate.serving(), self._lock:
            session, count = self.session, len(self.session.images)
            previous = self._tab(tab)
            if current is None:
                current = previous.index if previous is not None else -1
            if not isinstance(current, int) or isinstance(current, bool) or \
                    not -1 <= current < count:
                current = -1
            message = ''
            if image is not None:
                try:
                    target = session.index(image)
                except UnsafeNameError as e:
                    return dict(ok=False, reason='not_found', message=str(e))
            elif index is not None:
                if isinstance(index, bool) or not isinstance(index, int) or \
                        not 0 <= index < count:
                    return dict(ok=False, reason='not_found',
                                message=f'no image number {index!r}')
                target = index
            elif wanted is not None:
                target = self._find(str(wanted), max(current, 0))
                if target is None:
                    shown = printable(repr(str(wanted)), one_line=True, limit=80)
                    return dict(ok=False, reason='not_found', message=(
                        f'no image {shown} (a number from 1 to {count}, or a name in '
                        f'{session.image_dir})'))
            elif go in ('next', 'prev'):  # from no image (-1), next is the first
                target = current + 1 if go == 'next' else max(current, 0) - 1
                if not 0 <= target < count:
                    return dict(ok=False, reason='end', message='no more images this way')
            elif go in ('todo', 'start'):
                target = session.next_to_do(current if go == 'todo' else -1)
                if target is None:
                    message = 'every image is done'
                    if go == 'todo':
                        return dict(ok=False, reason='end', message=message)
                    target = 0
            else:
                raise EditError('open what? (image, index, go or wanted; got go='
                                f'{printable(repr(go), one_line=True, limit=80)})')
            if previous is not None and previous.edit is not None and not discard:
                failure = self._save(previous)
                if failure:
                    return dict(ok=False, reason='unsaved', message=failure + ' (Reload shows '
                                'the saved version and sets your change aside)',
                                state=self.state(previous))
                self._keep_history(tab, previous.edit)
            set_aside = ''
            if previous is not None and previous.edit is not None and discard and \
                    previous.edit.dirty and not previous.edit.read_only:
                # Reload drops what could not be saved (a conflict, a full disk): kept in
                # .drafts/superseded/, as a draft that can no longer be saved is, not lost
                set_aside = self._set_aside(previous.edit)
            opened = TabSession(token=secrets.token_hex(8), index=target, edit=None,
                                message=message)
            self.tabs[tab] = opened
            self.tabs.move_to_end(tab)
            while len(self.tabs) > MAX_TABS:
                _, forgotten = self.tabs.popitem(last=False)
                if forgotten.edit is not None and forgotten.edit.dirty and \
                        not forgotten.edit.read_only:
                    # the work it held unsaved (a full disk, a conflict) was dropped with it:
                    # kept in .drafts/superseded/, as Reload keeps it
                    self._set_aside(forgotten.edit)
            self._schedule_pre_annotation(target)
            try:
                opened.edit = session.open(session.images[target])
            except (AnnotationError, UnsafeNameError) as e:
                opened.message = f'Cannot open: {printable(str(e), one_line=True)}'
            except OSError as e:  # a file it cannot read that no check foresaw
                where = os.fsdecode(e.filename) if e.filename is not None else \
                    session.images[target]
                opened.message = printable(f'Cannot open: {where}: {e.strerror or e}',
                                           one_line=True)
            if opened.edit is None:
                opened.message = '; '.join(m for m in (set_aside, opened.message) if m)
                return dict(ok=False, reason='cannot_open', message=opened.message,
                            state=self.state(opened))
            if opened.edit.notice or set_aside:
                opened.message = '; '.join(m for m in (message, set_aside, opened.edit.notice)
                                           if m)
            kept = self.kept_histories.pop((tab, opened.edit.image), None)
            # not on Reload (discard: its point is to drop the page's work) nor on a reopen
            # after a restart (seen: that page's history is its own, see the editor's reopen)
            if kept is not None and not discard and seen is None and kept.matches(opened.edit):
                kept.give(opened.edit)
            if seen is not None:
                opened.edit.revision, opened.edit.draft_revision = seen
            return dict(ok=True, state=self.state(opened))

    def _keep_history(self, tab: str, edit: ImageEdit) -> None:
        """Keep the undo history of an image the tab leaves (its edits on disk)."""
        if edit.read_only or not (edit.history or edit.future):
            return
        key = (tab, edit.image)
        self.kept_histories.pop(key, None)
        self.kept_histories[key] = _KeptHistory.of(edit)
        while len(self.kept_histories) > KEPT_HISTORIES:
            self.kept_histories.popitem(last=False)

    # pre-annotation ---------------------------------------------------------------------------

    def _to_pre_annotate(self, index: int) -> bool:
        """Whether Predict is likely next for the image: no annotation file yet (a draft may
        be pending). Annotated, skipped and predicted images (to review) are left alone."""
        return self.session.status(self.session.images[index]) is None

    def _schedule_pre_annotation(self, index: int) -> None:
        """Pre-annotate the image opened at ``index`` and the next :attr:`pre_annotate` images
        to do after it, in the visiting order (not wrapping around)."""
        if self.pre is None or not self.pre_annotate:
            return
        images, plan = self.session.images, []
        if self._to_pre_annotate(index):
            plan.append(index)
        ahead = 0
        for k in range(index + 1, len(images)):
            if ahead == self.pre_annotate:
                break
            if self._to_pre_annotate(k):
                plan.append(k)
                ahead += 1
        paths = []
        for k in plan:
            try:
                paths.append(self.session.image_path(images[k]))
            except UnsafeNameError:  # a link that now leads elsewhere: not read
                continue
        self.pre.schedule(paths)

    def _face_box(self, edit: ImageEdit, detections: np.ndarray | None
                  ) -> tuple[Box | None, str]:
        """The box Predict uses for the current face, and how it was found: the drawn one,
        else a detected one (:func:`_box_for_face`), else the whole image. None when the
        detections are needed and not known (``detections`` None)."""
        if edit.current.bbox is not None:
            return tuple(edit.current.bbox), ''
        if self.detector is not None:
            if detections is None:
                return None, ''
            if len(detections):
                return _box_for_face(detections, edit), (
                    f' (face detector: {len(detections)} faces; box drawn)')
        return whole_image_box(edit.width, edit.height), (
            ' (whole image: draw a box with b for a closer prediction)')

    def prediction_status(self, edit: ImageEdit | None) -> str:
        """Whether Predict would be instant for the image's current face: ``'ready'`` (its
        points are cached), ``'pending'`` (being pre-annotated), ``'idle'`` (Predict will
        compute them), ``'off'`` (no model, or no image)."""
        if self.pre is None or edit is None:
            return 'off'
        try:
            path = self.session.image_path(edit.image)
            key = image_key(path)
        except (OSError, UnsafeNameError):
            return 'off'
        box, _ = self._face_box(edit, self.pre.cached_detections(key))
        if box is not None and self.pre.cached_face(key, box) is not None:
            return 'ready'
        return 'pending' if self.pre.planned(path) else 'idle'

    def prediction(self, tab: str, token: str) -> dict:
        """What the page asks while its image is being pre-annotated: ``{'prediction': ...}``
        (:meth:`prediction_status`; ``'off'`` for an image no longer open in the tab)."""
        with self._lock:
            found = self.tabs.get(tab) if isinstance(tab, str) else None
            if found is None or found.token != token:
                return dict(prediction='off')
            return dict(prediction=self.prediction_status(found.edit))

    # edits ------------------------------------------------------------------------------------

    def _set_aside(self, edit: ImageEdit) -> str:
        """Keep the unsaved work of ``edit``, which a Reload drops, in ``.drafts/superseded/``
        (:meth:`.AnnotationSession.set_aside_work`); the page's words for where it went, or
        why it could not be kept."""
        try:
            kept = self.session.set_aside_work(edit)
        except (OSError, UnsafeNameError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else e
            return printable(f'your unsaved change of {edit.image} could not be set aside '
                             f'({why}): dropped', one_line=True, limit=2000)
        return printable(f'your unsaved change of {edit.image} is set aside in {kept}',
                         one_line=True, limit=2000)

    def _unfinished_faces_set_aside(self, edit: ImageEdit) -> str:
        """A skip drops from the file the faces begun and not finished (a file holds none of
        them): those with points are kept in ``.drafts/superseded/`` first, as the whole
        edit (:meth:`.AnnotationSession.set_aside_work`); the page's words ('' for none)."""
        begun = [f for f in edit.faces if not f.complete() and any(p is not None
                                                                    for p in f.points)]
        if not begun:
            return ''
        placed = sum(p is not None for f in begun for p in f.points)
        what = (f'{len(begun)} unfinished face{"s" if len(begun) > 1 else ""} ({placed} '
                'points) not in the skipped file')
        try:
            kept = self.session.set_aside_work(edit)
        except (OSError, UnsafeNameError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else e
            return printable(f'{what}, and not set aside ({why})', one_line=True, limit=2000)
        return printable(f'{what}: kept in {kept}', one_line=True, limit=2000)

    def _save(self, tab: TabSession) -> str:
        """Save the tab's edits if there are any; returns why not ('' when saved)."""
        edit = tab.edit
        tab.save_permanent = False
        if edit is None or not edit.dirty:
            tab.saved, tab.save_error = tab.applied, ''
            return ''
        try:
            self.session.save(edit)
        except AnnotationConflictError as e:
            tab.conflict, tab.save_error = True, f'Not saved: {e}'
            return tab.save_error
        except OSError as e:
            tab.save_error = (f'Not saved: cannot write in {self.session.output_dir}: '
                              f'{e.strerror or e}; your edits are kept in this page and sent '
                              'again')
            return tab.save_error
        except ValueError as e:  # what is to be written cannot be (AnnotationError names it)
            tab.save_error = (f'Not saved: {printable(first_line(e), one_line=True, limit=300)}'
                              '; your edits are kept in this page: press s to try again')
            tab.save_permanent = True
            return tab.save_error
        tab.saved, tab.conflict, tab.save_error = tab.applied, False, ''
        return ''

    def edit(self, tab: str, token: str, ops: list[dict]) -> tuple[int, dict]:
        """Apply a tab's edit operations, each once and in order, then save.

        Args:
            tab: the tab's id.
            token: the token of the image the operations are for (from :meth:`open`).
            ops: operations of :meth:`.ImageEdit.apply` or ``{"op": "predict", "face": f}``,
                each with ``"seq"``: 1, 2, 3... for the image. Those already applied are
                skipped (a resend after a lost answer); a gap stops the batch (the page sends
                again from ``applied + 1``).

        Returns:
            An HTTP status and the answer: 200, the state (its ``message`` says what was
            refused, if anything) and ``refused``, the sequence numbers of the operations
            refused in this batch (the page stays on an image whose skip was refused), or
            410 when the tab's image is not open here any more (a restarted server, or a tab
            forgotten beyond :data:`MAX_TABS`: the page reopens it and sends its unsaved
            operations again).
        """
        _check_tab_id(tab)
        if not isinstance(ops, list) or len(ops) > MAX_OPS:
            raise EditError(f'ops must be a list of at most {MAX_OPS} operations')
        with self.gate.serving(), self._lock:
            found = self._tab(tab)
            if found is None or found.token != token or found.edit is None:
                # a restarted server knows no tab; a running one forgets the least recently
                # used beyond MAX_TABS (a long idle tab, after many page loads)
                return 410, dict(reason='unknown_token', message="the server lost this tab's "
                                 'image (restarted, or too many tabs); opening it again')
            # a batch that changes nothing (refused edits, a flag set to what it was) leaves
            # nothing to save: a rewrite would be a false conflict for another tab
            content, was_dirty = found.edit.content(), found.edit.dirty
            was_skipped = found.edit.status == STATUS_SKIPPED
            messages, refused = [], []
            for op in ops:
                seq = op.get('seq') if isinstance(op, dict) else None
                if isinstance(seq, bool) or not isinstance(seq, int):
                    messages.append('an edit without a sequence number was ignored')
                    continue
                if seq <= found.applied:
                    continue
                if seq != found.applied + 1:
                    break
                found.applied = seq
                steps = found.edit.recorded
                try:
                    if op.get('op') == 'predict':
                        messages.append(self._predict(found.edit, op))
                    else:
                        found.edit.apply(op)
                except (AnimalLandmarksError, ValueError) as e:
                    messages.append(f'refused: {e}')
                    refused.append(seq)
                except Exception as e:  # the model failed (torch, onnxruntime, cv2): one line
                    logger.exception('edit %s of %s failed', op.get('op'), found.edit.image)
                    messages.append(f'refused: {op.get("op")} failed ({first_line(e)[:200]})')
                    refused.append(seq)
                if op.get('op') not in ('undo', 'redo') and found.edit.recorded == steps:
                    found.edit.record_unchanged()  # the page counted it as a step
            if not was_dirty and found.edit.content() == content:
                found.edit.dirty = False
            if not was_skipped and found.edit.status == STATUS_SKIPPED:  # skipped now (not a
                # skip sent again, or given another reason: one copy of the face)
                messages.append(self._unfinished_faces_set_aside(found.edit))
            self._save(found)
            problem = found.edit.problem()
            if problem is not None:  # complete by count, but no annotation the converter takes
                messages.append(f'not done, kept as a draft: {problem}')
            found.message = '; '.join(m for m in messages if m)
            return 200, dict(state=self.state(found, ahead=False), refused=refused)

    def _predict(self, edit: ImageEdit, op: dict) -> str:
        """The model's 28 points for a face (its box, a detected face or the whole image);
        they stay predicted (to review) until accepted. Points pre-annotated for that image
        version and box are used as they are; otherwise the model runs now, before any
        background work. Returns what was done."""
        if self.pre is None:
            raise EditError('no model: start the annotator with --checkpoint')
        if op.get('face') is not None:
            edit.select_face(op['face'])
        path = self.session.image_path(edit.image)
        key, image = image_key(path), lazy_image(path)  # decoded only when the caches miss
        detections = self.pre.detections(key, image) if edit.current.bbox is None and \
            self.detector is not None else None
        box, note = self._face_box(edit, detections)
        face, cached = self.pre.face(key, image, box)
        edit.set_face([(float(x), float(y)) for x, y in face.points],
                      tuple(float(v) for v in box),
                      scores=None if face.scores is None else [float(s) for s in face.scores],
                      model=self.model)
        ready = ', pre-annotated' if cached else ''
        return (f'predicted {NUM_KEYPOINTS} points{note}{ready}: drag the wrong ones, then Enter '
                'to accept')

    # files ------------------------------------------------------------------------------------

    def image_file(self, index: int) -> Path:
        """The image at ``index`` of the session's list (the only images served)."""
        if not 0 <= index < len(self.session.images):
            raise UnsafeNameError(f'no image number {index}')
        return self.session.image_path(self.session.images[index])

    def image_payload(self, index: int) -> tuple[Path | bytes, str]:
        """What the browser gets for the image at ``index``: the file itself (the browser
        decodes it, turned by its EXIF orientation as mmcv does), or, where the browser would
        turn it otherwise (a WebP's orientation, which Chromium ignores; a PNG's ``eXIf`` after
        its pixels), the picture as training decodes it, as PNG (:func:`_picture_as_trained`).
        Returns the file or the bytes, and the media type.

        Raises:
            UnsafeNameError: no such image, or a link out of the folder.
            OSError: the file is gone, or no regular file.
            AnnotationError: a picture that cannot be read or decoded, or over PIL's pixel
                limit; one line naming the file.
        """
        path = self.image_file(index)
        if not stat.S_ISREG(path.stat().st_mode):  # gone (OSError) or no file: refused now,
            # not half-way through the answer
            raise FileNotFoundError(errno.ENOENT, 'not a file', str(path))
        turned = _picture_as_trained(path, image_version(path))
        if turned is not None:
            return turned, 'image/png'
        return path, mimetypes.guess_type(path.name)[0] or 'application/octet-stream'


# --- who may ask -------------------------------------------------------------------------------


def _host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port, lower case (``[::1]:80`` -> ``::1``)."""
    header = header.strip().lower()
    if header.startswith('['):
        return header[1:header.find(']')] if ']' in header else header
    if header.count(':') == 1:
        return header.split(':')[0]
    return header


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class AllowedHosts:
    """The ``Host`` names the annotator answers to.

    A page on another site can make the browser send requests to the annotator under its own
    name (DNS rebinding); the browser then still sends that site's name in ``Host``, so only
    the annotator's own names are answered, as Jupyter does. An address typed as digits cannot
    be rebound: when listening on every interface, any IP address is answered.
    """

    names: frozenset[str]
    any_ip: bool = False

    @classmethod
    def for_bind(cls, host: str, extra: tuple[str, ...] | list[str] = ()) -> AllowedHosts:
        """The names for a server listening on ``host`` (plus ``--allow-host`` names)."""
        names = set(LOCAL_HOSTS)
        any_ip = host in ALL_INTERFACES
        if any_ip:
            for name in (socket.gethostname(), socket.getfqdn()):
                names.add(name.lower())
                try:
                    names.update(info[4][0] for info in socket.getaddrinfo(name, None))
                except OSError:
                    pass
        elif host not in LOCAL_HOSTS:
            names.add(_host_name(host) if not host.startswith('[') else host[1:-1])
            names.add(host.lower())
        names.update(_host_name(name) for name in extra)
        return cls(frozenset(n.lower() for n in names), any_ip)

    def __contains__(self, header: str) -> bool:
        name = _host_name(header)
        return name in self.names or (self.any_ip and _is_ip(name))


def _is_upload(scope) -> bool:
    """Whether an HTTP request sends files: to one of Gradio's :data:`UPLOAD_ROUTES`, or any
    ``multipart/form-data`` body (the annotator's own routes take JSON only)."""
    path = scope.get('path', '').rstrip('/').lower()
    if path.rsplit('/', 1)[-1] in UPLOAD_ROUTES:
        return True
    media = next((value for key, value in scope.get('headers', ()) if key == b'content-type'),
                 b'')
    return media.split(b';')[0].strip().lower() == b'multipart/form-data'


class HostGuard:
    """ASGI middleware: refuse HTTP and websocket requests whose ``Host`` is not one of
    ``allowed``, and every upload (:func:`_is_upload`: the annotator takes no file from a
    page), with 403 and a one-line reason."""

    def __init__(self, app, allowed: AllowedHosts):
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope, receive, send):
        if scope['type'] in ('http', 'websocket'):
            host = next((value.decode('latin-1') for key, value in scope.get('headers', ())
                         if key == b'host'), '')
            if host not in self.allowed:
                if scope['type'] == 'websocket':
                    await send({'type': 'websocket.close', 'code': 1008})
                    return
                await self._refuse(send, f'refused: Host {host!r} is not an address of this '
                                   'annotator (start it with --allow-host NAME to answer to '
                                   'NAME)')
                return
            if scope['type'] == 'http' and _is_upload(scope):
                await self._refuse(send, 'refused: this annotator takes no uploads (it has no '
                                   'file input)')
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send, reason: str) -> None:
        """Answer 403 with ``reason``, one line of text."""
        body = f'{reason}\n'.encode()
        await send({'type': 'http.response.start', 'status': 403,
                    'headers': [(b'content-type', b'text/plain; charset=utf-8'),
                                (b'content-length', str(len(body)).encode())]})
        await send({'type': 'http.response.body', 'body': body})


# --- the app -----------------------------------------------------------------------------------


def _file_version(name: str) -> str:
    return hashlib.sha256((EDITOR_DIR / name).read_bytes()).hexdigest()[:12]


def build_blocks(annotator: Annotator):
    """The Gradio Blocks of the page: one ``gr.HTML``, the editor (``editor/editor.html``),
    whose script and style the app serves itself."""
    import gradio as gr

    head = (f'<link rel="stylesheet" href="annotator/static/editor.css?v='
            f'{_file_version("editor.css")}">'
            f'<script src="annotator/static/editor.js?v={_file_version("editor.js")}"></script>')
    with gr.Blocks(title='Landmark annotator', analytics_enabled=False,
                   fill_height=True, fill_width=True) as blocks:
        gr.HTML(value='', html_template=(EDITOR_DIR / 'editor.html').read_text(),
                js_on_load='window.LandmarkEditor.mount(element);', head=head,
                apply_default_css=False, container=False, padding=False,
                elem_id='landmark-editor-root')
    return blocks


def create_app(annotator: Annotator, host: str = '127.0.0.1', port: int = 7860,
               allow_hosts: tuple[str, ...] | list[str] = ()):
    """The annotator's ASGI app: the routes of the module docstring and the Gradio page,
    behind :class:`HostGuard`."""
    import gradio as gr
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, JSONResponse, Response

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    async def json_body(request: Request) -> dict:
        # Only JSON, said so: a page of another site can send text/plain or form bodies
        # without asking, but not application/json (the browser asks first, and this server
        # never allows it), so no other site can open images or push this user's tab out.
        media = request.headers.get('content-type', '').split(';')[0].strip().lower()
        if media != 'application/json':
            raise EditError(f'the request body must be JSON, sent as application/json '
                            f'(not {media[:80] or "no content type"!r})')
        too_large = RequestTooLargeError(f'the request body is over {MAX_BODY_BYTES} bytes')
        declared = request.headers.get('content-length', '')
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():  # counted as it comes: a length may be absent
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise too_large
            chunks.append(chunk)
        try:
            body = json.loads(b''.join(chunks))
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deeply
            body = None
        if not isinstance(body, dict):
            raise EditError('the request body must be a JSON object')
        return body

    def refused(error: Exception, status: int = 400) -> JSONResponse:
        if isinstance(error, RequestTooLargeError):
            status = 413
        if isinstance(error, OSError) and error.strerror:  # '[Errno 13] ...' is no sentence
            where = '' if error.filename is None else f'{os.fsdecode(error.filename)}: '
            message = f'{where}{error.strerror}'
        else:
            message = str(error)
        return JSONResponse(dict(ok=False, message=printable(message, one_line=True)),
                            status_code=status)

    @app.options('/annotator/{path:path}')
    def no_cross_origin(path: str):
        # a browser asks here before another page's application/json request: answered with
        # no CORS header, it sends nothing. Unanswered here, the request fell through to the
        # Gradio app, whose CORS middleware allowed any localhost page (another port)
        return Response('refused: the annotator answers no other page\'s requests\n',
                        status_code=403, media_type='text/plain')

    @app.get('/annotator/api/config')
    def config():
        return annotator.config()

    @app.post('/annotator/api/open')
    async def open_image(request: Request):
        try:
            body = await json_body(request)
            keys = ('image', 'index', 'go', 'wanted', 'current', 'seen')
            answer = await _in_thread(annotator.open, body.get('tab'),
                                      discard=body.get('discard', False),
                                      **{k: body.get(k) for k in keys})
        except (EditError, UnsafeNameError) as e:
            return refused(e)
        except (AnimalLandmarksError, OSError) as e:  # the files changed under the server
            return refused(e, 409)
        status = {'not_found': 404, 'unsaved': 409}.get(answer.get('reason'), 200)
        return JSONResponse(answer, status_code=status)

    @app.post('/annotator/api/edit')
    async def edit(request: Request):
        try:
            body = await json_body(request)
            status, answer = await _in_thread(annotator.edit, body.get('tab'),
                                              body.get('token'), body.get('ops'))
        except EditError as e:
            return refused(e)
        except (AnimalLandmarksError, OSError) as e:  # the files changed under the server (a
            # folder it may not read): one line, and the page keeps its edits and asks again
            return refused(e, 409)
        return JSONResponse(answer, status_code=status)

    @app.get('/annotator/api/prediction')
    async def prediction(tab: str = '', token: str = ''):
        # not a request that makes the background wait: the page asks while it works
        return await _in_thread(annotator.prediction, tab, token)

    @app.get('/annotator/image/{index}')
    def image(index: int):
        try:
            payload, media = annotator.image_payload(index)
        except UnsafeNameError as e:
            return refused(e, 404)
        except AnnotationError as e:  # a picture that cannot be read or decoded (a truncated
            # one), or of too many pixels: it names the file
            return refused(e, 422)
        except OSError:  # the stat before any read: the file is no more
            return refused(FileNotFoundError(f'image {index} is gone from the folder'), 404)
        # the URL carries the file's version: a new version is a new URL
        headers = {'Cache-Control': 'private, max-age=604800'}
        if isinstance(payload, bytes):
            return Response(payload, media_type=media, headers=headers)
        return FileResponse(payload, media_type=media, headers=headers)

    @app.get('/annotator/chart.png')
    def chart_png():
        return Response(chart()[0], media_type='image/png',
                        headers={'Cache-Control': 'private, max-age=86400'})

    @app.get('/annotator/static/{name}')
    def static(name: str):
        if name not in EDITOR_FILES:
            return refused(FileNotFoundError(f'no file {name!r}'), 404)
        return FileResponse(EDITOR_DIR / name, media_type=EDITOR_FILES[name],
                            headers={'Cache-Control': 'no-cache'})

    theme = gr.themes.Default(font=['system-ui', 'sans-serif'],
                              font_mono=['ui-monospace', 'monospace'])  # no web fonts
    blocks = build_blocks(annotator)
    # max_file_size=0: Gradio refuses any file, should an upload get past HostGuard
    gr.mount_gradio_app(app, blocks, path='/', server_name=host, server_port=port,
                        footer_links=[], run_history=False, ssr_mode=False, mcp_server=False,
                        show_error=True, theme=theme, max_file_size=0)
    return HostGuard(app, AllowedHosts.for_bind(host, allow_hosts))


async def _in_thread(function, *args, **kwargs):
    """Run a blocking call (file writes, a model) off the event loop."""
    from starlette.concurrency import run_in_threadpool
    return await run_in_threadpool(function, *args, **kwargs)


class Server:
    """A running annotator (:func:`launch` with ``block=False``); ``close()`` stops it and its
    pre-annotation."""

    def __init__(self, server, thread: threading.Thread, url: str, annotator: Annotator):
        self._server, self._thread, self.url = server, thread, url
        self.annotator = annotator

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self.annotator.close()


def exposure_warning(host: str, port: int) -> str | None:
    """What to tell someone serving the annotator beyond this machine (None: local only)."""
    if host in LOCAL_HOSTS:
        return None
    return (f'the annotator listens on {host}: anyone who can reach this machine on port '
            f'{port} can read the images and change the annotations (no login)')


def launch(annotator: Annotator, host: str = '127.0.0.1', port: int = 7860,
           block: bool = True, allow_hosts: tuple[str, ...] | list[str] = ()) -> Server | None:
    """Serve the annotator on ``host:port`` (127.0.0.1 unless asked: there is no login).

    Returns:
        The running server (``.close()`` stops it) when ``block`` is False.
    """
    import uvicorn

    warning = exposure_warning(host, port)
    if warning:
        logger.warning(warning)
    app = create_app(annotator, host, port, allow_hosts)
    config = uvicorn.Config(app, host=host, port=port, log_level='warning', lifespan='on',
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    shown = f'[{host}]' if ':' in host else host
    if block:
        try:
            server.run()
        finally:
            annotator.close()
        return None
    thread = threading.Thread(target=server.run, name='annotator', daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            annotator.close()
            raise OSError(f'the annotator could not start on {shown}:{port}')
        time.sleep(0.02)
    return Server(server, thread, f'http://{shown}:{port}', annotator)

