"""The landmark annotator: a Gradio app over :class:`~.annotate.AnnotationSession`.

``tools/annotate_landmarks.py`` starts it. The app holds no annotation logic of its own (that is
:mod:`.annotate`, tested without a browser); it maps clicks to image pixels, draws, and wires
buttons and keys to the session:

- a click on the shown image gives its pixel in the *shown* picture (Gradio maps the browser's
  display scale away); :class:`View` maps that to the original image exactly, whether the picture
  is the whole image, enlarged, reduced or a zoom on the face;
- every edit is saved at once (a draft until the image is finished, then the annotation file),
  so closing the tab or a crash loses nothing, and a second tab on the same image is refused
  instead of overwriting (:class:`~.annotate.AnnotationConflictError`);
- redrawing keeps the decoded image and draws 28 points over a copy: ``tools/benchmark.py
  --only annotator`` measures it.
"""
from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
from mmengine.logging import print_log

from .annotate import AnnotationConflictError, AnnotationSession, ImageEdit
from .annotation import STATUS_SKIPPED, AnnotationError
from .schema import ABSENT, GROUP_COLORS, LANDMARKS, NUM_KEYPOINTS, OCCLUDED, SKELETON, describe

#: The shown picture's longer side is kept within these (pixels): small images are enlarged
#: so that they can be clicked precisely, huge ones reduced so that redrawing stays fast
#: (zoom on the face for full precision there).
DISPLAY_MIN_SIDE, DISPLAY_MAX_SIDE = 960, 1600
#: Zooming on a face shows its points' extent plus this share of its size on each side.
ZOOM_MARGIN = 0.35
#: With the face complete, a click this close (shown pixels) to a point picks it for moving.
PICK_RADIUS = 18
SKIP_REASONS = ('no usable face', 'bad quality', 'not a character face', 'duplicate')
LOCAL_HOSTS = ('127.0.0.1', 'localhost', '::1')

#: The browser that drives the app in the browser test and the benchmark: Debian's Chromium
#: (tools/setup_env.sh installs it), through Playwright.
CHROMIUM = '/usr/bin/chromium'
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu',
                  '--disable-background-networking', '--disable-component-update',
                  '--no-first-run']
#: JavaScript: whether the picture shown differs from ``old`` (its former src) and is loaded.
PICTURE_REDRAWN_JS = ('old => { const i = document.querySelector("#picture img");'
                      ' return i && i.src !== old && i.complete && i.naturalWidth > 0; }')
#: JavaScript: the picture element's box and natural size, for :func:`screen_position`.
PICTURE_GEOMETRY_JS = ('e => { const r = e.getBoundingClientRect(); return [r.left, r.top, '
                       'r.width, r.height, e.naturalWidth, e.naturalHeight]; }')

#: Keyboard shortcuts: key (KeyboardEvent.key) -> (button elem_id, what it does).
SHORTCUTS: dict[str, tuple[str, str]] = {
    'z': ('btn-clear-last', 'clear the last point (or stop correcting)'),
    'Backspace': ('btn-clear-last', 'same as z'),
    'o': ('btn-occluded', 'the next point is occluded: place it by estimate'),
    'x': ('btn-absent', 'the next point is absent'),
    's': ('btn-save', 'save (also Ctrl+S)'),
    'n': ('btn-next', 'next image (also the right arrow)'),
    'ArrowRight': ('btn-next', 'next image'),
    'p': ('btn-prev', 'previous image (also the left arrow)'),
    'ArrowLeft': ('btn-prev', 'previous image'),
    'u': ('btn-next-todo', 'next image without annotation'),
    'f': ('btn-zoom', 'zoom on the face / whole image'),
    'b': ('btn-box', 'draw a face box: click two corners'),
    'm': ('btn-predict', 'predict the points with the model'),
}

_SHORTCUT_JS = '''
() => {
  const keys = %s;
  document.addEventListener('keydown', (event) => {
    const target = event.target;
    if (target && (['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName) ||
                   target.isContentEditable)) return;
    if (event.altKey || event.metaKey) return;
    if (event.ctrlKey && event.key !== 's') return;
    const id = keys[event.key];
    const button = id && document.getElementById(id);
    if (!button) return;
    event.preventDefault();
    button.click();
  });
}
'''


@dataclass(frozen=True)
class View:
    """A part of the image shown at some size.

    Coordinates are pixel centres at integers (the annotation format's convention), in the
    image and in the shown picture alike; the mapping is the one ``cv2.resize`` uses, so a
    point drawn at :meth:`to_display` lies where its pixel is shown.

    Attributes:
        x0, y0: the part's top-left corner in the image (whole pixels).
        width, height: its size in image pixels.
        shown_width, shown_height: the shown picture's size.
    """

    x0: int
    y0: int
    width: int
    height: int
    shown_width: int
    shown_height: int

    @classmethod
    def fit(cls, x0: int, y0: int, width: int, height: int) -> View:
        """Show ``width x height`` pixels at ``(x0, y0)`` at a size that is easy to click."""
        side = max(width, height)
        scale = DISPLAY_MIN_SIDE / side if side < DISPLAY_MIN_SIDE else \
            min(1.0, DISPLAY_MAX_SIDE / side)
        return cls(x0, y0, width, height, max(1, round(width * scale)),
                   max(1, round(height * scale)))

    @property
    def scale(self) -> tuple[float, float]:
        return self.shown_width / self.width, self.shown_height / self.height

    def to_image(self, u: float, v: float) -> tuple[float, float]:
        """A shown pixel ``(u, v)`` in image pixels."""
        sx, sy = self.scale
        return self.x0 + (u + 0.5) / sx - 0.5, self.y0 + (v + 0.5) / sy - 0.5

    def to_display(self, points: np.ndarray) -> np.ndarray:
        """Image points ``(N, 2)`` in shown pixels."""
        return (np.asarray(points, np.float64) - (self.x0, self.y0) + 0.5) * self.scale - 0.5


def screen_position(point, image_size: tuple[int, int], geometry) -> tuple[float, float]:
    """Where image pixel ``point`` is on the page: the picture shows the image at its natural
    size, scaled down to fit its element and centred (CSS ``object-fit: scale-down``).

    Args:
        point: ``(x, y)`` in original image pixels.
        image_size: the original image's ``(width, height)``.
        geometry: the picture element's ``[left, top, width, height, naturalWidth,
            naturalHeight]`` (:data:`PICTURE_GEOMETRY_JS`).
    """
    left, top, width, height, natural_w, natural_h = geometry
    shown = (np.asarray(point, float) + 0.5) * (natural_w / image_size[0],
                                                natural_h / image_size[1]) - 0.5
    ratio = min(width / natural_w, height / natural_h, 1)
    return (left + (width - natural_w * ratio) / 2 + (shown[0] + 0.5) * ratio,
            top + (height - natural_h * ratio) / 2 + (shown[1] + 0.5) * ratio)


def face_extent(edit: ImageEdit) -> tuple[float, float, float, float] | None:
    """``(x0, y0, x1, y1)`` of the current face: its box, else its points (two at least)."""
    face = edit.current
    points = [p for p in face.points if p is not None]
    if face.bbox is not None:
        points += [face.bbox[:2], face.bbox[2:]]
    if len(points) < 2:
        return None
    xy = np.array(points)
    return (*xy.min(0), *xy.max(0))


def zoom_crop(extent: tuple[float, float, float, float], width: int, height: int
              ) -> tuple[int, int, int, int]:
    """A square-ish crop ``(x0, y0, w, h)`` around ``extent`` with a margin, inside the image."""
    x0, y0, x1, y1 = extent
    side = max(x1 - x0, y1 - y0, 16.0) * (1 + 2 * ZOOM_MARGIN)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = min(width, round(side)), min(height, round(side))
    left = int(np.clip(round(cx - w / 2), 0, width - w))
    top = int(np.clip(round(cy - h / 2), 0, height - h))
    return left, top, w, h


class ImageCache:
    """The last few decoded images (BGR, as mmcv reads them) and shown pictures (RGB).

    A click then only copies the shown picture and draws on it.
    """

    def __init__(self, images: int = 4, pictures: int = 8):
        self._images: OrderedDict = OrderedDict()
        self._pictures: OrderedDict = OrderedDict()
        self._sizes = images, pictures
        self._lock = threading.Lock()

    @staticmethod
    def _put(cache: OrderedDict, key, value, size: int) -> None:
        cache[key] = value
        while len(cache) > size:
            cache.popitem(last=False)

    def image(self, path: Path) -> np.ndarray:
        """The image decoded with its EXIF orientation applied, like mmcv does."""
        key = (path, path.stat().st_mtime_ns)
        with self._lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise AnnotationError(f'{path}: image unreadable')
        with self._lock:
            self._put(self._images, key, image, self._sizes[0])
        return image

    def picture(self, path: Path, view: View) -> np.ndarray:
        """The part of the image that ``view`` shows, at its shown size, RGB (do not modify)."""
        key = (path, path.stat().st_mtime_ns, view)
        with self._lock:
            if key in self._pictures:
                self._pictures.move_to_end(key)
                return self._pictures[key]
        image = self.image(path)
        part = image[view.y0:view.y0 + view.height, view.x0:view.x0 + view.width]
        size = (view.shown_width, view.shown_height)
        if size != (view.width, view.height):
            shrink = view.shown_width < view.width
            part = cv2.resize(part, size, interpolation=cv2.INTER_AREA if shrink
                              else cv2.INTER_LINEAR)
        picture = cv2.cvtColor(part, cv2.COLOR_BGR2RGB)
        with self._lock:
            self._put(self._pictures, key, picture, self._sizes[1])
        return picture


_SHIFT = 4  # cv2 draws at 1/16 pixel


def _fixed(point) -> tuple[int, int]:
    return int(round(point[0] * (1 << _SHIFT))), int(round(point[1] * (1 << _SHIFT)))


def draw_points(picture: np.ndarray, faces: list[tuple[np.ndarray, list[int]]], current: int,
                selected: int | None = None, boxes: list | None = None,
                numbers: bool = True) -> np.ndarray:
    """Draw faces' points in their group colours, with numbers and the group lines.

    Args:
        picture: RGB picture, drawn on in place.
        faces: per face, ``(28, 2)`` shown-pixel points (NaN where none) and the visibility
            flags; an occluded point is drawn hollow.
        current: the face being edited (the others are drawn thinner, without numbers).
        selected: a point of the current face being corrected (ringed).
        boxes: face boxes ``(x0, y0, x1, y1)`` in shown pixels, or a single corner ``(x, y)``
            while a box is being drawn.
        numbers: write each point's number beside it.

    Returns:
        ``picture``.
    """
    side = max(picture.shape[:2])
    radius = max(3.0, side / 200)
    thickness = max(1, round(side / 600))
    font_scale = max(0.4, side / 1900)
    colours = [GROUP_COLORS[lm.group] for lm in LANDMARKS]
    for f, (points, visibility) in enumerate(faces):
        is_current = f == current
        placed = ~np.isnan(points).any(1)
        for a, b in SKELETON:
            if placed[a] and placed[b]:
                cv2.line(picture, _fixed(points[a]), _fixed(points[b]), colours[a],
                         thickness, cv2.LINE_AA, _SHIFT)
        r = radius if is_current else radius * 0.6
        for k in np.flatnonzero(placed):
            centre, rr = _fixed(points[k]), int(r * (1 << _SHIFT))
            if visibility[k] == OCCLUDED:
                cv2.circle(picture, centre, rr, colours[k], thickness + 1, cv2.LINE_AA, _SHIFT)
            else:
                cv2.circle(picture, centre, rr + (1 << _SHIFT), (0, 0, 0), -1, cv2.LINE_AA,
                           _SHIFT)
                cv2.circle(picture, centre, rr, colours[k], -1, cv2.LINE_AA, _SHIFT)
            if is_current and numbers:
                origin = (int(points[k][0] + r + 1), int(points[k][1] - r - 1))
                cv2.putText(picture, str(k), origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                            (0, 0, 0), thickness + 2, cv2.LINE_AA)
                cv2.putText(picture, str(k), origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                            (255, 255, 255), thickness, cv2.LINE_AA)
        if is_current and selected is not None and placed[selected]:
            ring = _fixed(points[selected]), int(radius * 2.5 * (1 << _SHIFT))
            cv2.circle(picture, *ring, (0, 0, 0), thickness + 3, cv2.LINE_AA, _SHIFT)
            cv2.circle(picture, *ring, (255, 255, 255), thickness + 1, cv2.LINE_AA, _SHIFT)
    for box in boxes or []:
        if len(box) == 4:
            cv2.rectangle(picture, _fixed(box[:2]), _fixed(box[2:]), (255, 255, 0),
                          thickness + 1, cv2.LINE_AA, _SHIFT)
        else:
            cv2.drawMarker(picture, tuple(int(v) for v in box), (255, 255, 0),
                           cv2.MARKER_CROSS, int(radius * 6), thickness + 1, cv2.LINE_AA)
    return picture


@functools.cache
def _chart_face(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The drawn character of the chart, cropped to its points (RGB), and its points."""
    from .synthetic import reference_face
    image, points = reference_face(size)
    x0, y0 = (points.min(0) - 0.08 * size).astype(int).clip(0)
    x1, y1 = (points.max(0) + 0.08 * size).astype(int)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1, ::-1])
    return crop, points - (x0, y0)


def reference_chart(target: int | None = None, size: int = 900) -> np.ndarray:
    """The 28 points, numbered, on a drawn character: the order to click in (RGB), with the
    point to click next ringed."""
    crop, points = _chart_face(size)
    return draw_points(crop.copy(), [(points, [2] * NUM_KEYPOINTS)], current=0,
                       selected=target)


@dataclass
class TabState:
    """What one browser tab is doing (Gradio keeps one per tab)."""

    index: int = 0
    edit: ImageEdit | None = None
    zoom: tuple[int, int, int, int] | None = None  # crop (x0, y0, w, h) while zoomed
    box_corner: tuple[float, float] | None = None  # first corner of a box being drawn
    drawing_box: bool = False
    # What the tab's dropdowns show, so that a click does not resend them (the image list
    # of a large folder takes the browser a quarter of a second to redraw).
    shown: tuple | None = None
    point_picked: bool = False


class Annotator:
    """The app's behaviour: one method per user action, each returning what to show.

    Args:
        session: the image and annotation folders.
        predictor: a :class:`~.infer.LandmarkPredictor` for model-assisted annotation.
        detector: a :class:`~.infer.FaceDetector` to find faces for the predictor.
    """

    def __init__(self, session: AnnotationSession, predictor=None, detector=None):
        if not session.images:
            raise AnnotationError(f'no images in {session.image_dir}')
        self.session = session
        self.predictor = predictor
        self.detector = detector
        self.cache = ImageCache()

    # what the tab shows ---------------------------------------------------------------------

    def view(self, state: TabState) -> View:
        edit = state.edit
        if state.zoom is not None:
            return View.fit(*state.zoom)
        return View.fit(0, 0, edit.width, edit.height)

    def render(self, state: TabState) -> np.ndarray:
        """The shown picture with the points drawn (RGB)."""
        edit, view = state.edit, self.view(state)
        picture = self.cache.picture(self.session.image_path(edit.image), view).copy()
        faces = []
        for face in edit.faces:
            points = np.array([(np.nan, np.nan) if p is None else p for p in face.points])
            faces.append((view.to_display(points), face.visibility))
        boxes = [view.to_display(np.reshape(f.bbox, (2, 2))).ravel() for f in edit.faces
                 if f.bbox is not None]
        if state.box_corner is not None:
            boxes.append(view.to_display([state.box_corner])[0])
        return draw_points(picture, faces, edit.face, edit.selected, boxes)

    def header(self, state: TabState) -> str:
        edit = state.edit
        done, total = self.session.progress()
        if self.session.draft_path(edit.image).is_file():
            status = 'draft (unfinished)'
        elif self.session.is_done(edit.image):
            status = f'skipped: {edit.status_reason}' if edit.status == STATUS_SKIPPED \
                else 'annotated'
        else:
            status = 'not started'
        return (f'**{edit.image}** ({edit.width}x{edit.height}) · image {state.index + 1} of '
                f'{total} · {status} · **{done} of {total} done**')

    def prompt(self, state: TabState) -> str:
        if state.drawing_box:
            corner = 'second' if state.box_corner is not None else 'first'
            return f'### Face box: click its {corner} corner'
        return f'### {state.edit.prompt()}'

    def outputs(self, state: TabState, message: str = '') -> tuple:
        edit = state.edit
        if edit is None:  # the image could not be opened; the message says why
            name = self.session.images[state.index]
            state.shown = None
            return (state, None, f'**{name}**', '### cannot open this image', message,
                    gr.skip(), gr.update(value=name), gr.skip(), reference_chart())
        faces = [f'face {i + 1}' for i in range(len(edit.faces))]
        shown = (edit.image, len(faces), edit.face)
        unchanged, state.shown = shown == state.shown, shown
        point = gr.update(value=None) if state.point_picked and edit.selected is None \
            else gr.skip()
        state.point_picked = state.point_picked and edit.selected is not None
        return (state, self.render(state), self.header(state), self.prompt(state), message,
                gr.skip() if unchanged else gr.update(choices=faces, value=faces[edit.face]),
                gr.skip() if unchanged else gr.update(value=edit.image), point,
                reference_chart(None if state.drawing_box else edit.target()))

    # saving and moving ----------------------------------------------------------------------

    def _save(self, state: TabState) -> tuple[bool, str]:
        """Save the edits if there are any; returns whether nothing is left unsaved, and what
        happened, for the message line."""
        edit = state.edit
        if edit is None or not edit.dirty:
            return True, ''
        try:
            path = self.session.save(edit)
        except AnnotationConflictError as e:
            return False, f'**Not saved:** {e}'
        return True, f'saved {path.relative_to(self.session.output_dir)}'

    def _open(self, state: TabState, index: int) -> str:
        """Save the current image, then open another; stays put when saving fails."""
        saved, message = self._save(state)
        if not saved:
            return message + ' (use Reload to see the saved version; your change is lost then)'
        state.index = index
        state.zoom, state.box_corner, state.drawing_box = None, None, False
        try:
            state.edit = self.session.open(self.session.images[index])
        except AnnotationError as e:
            state.edit = None
            return f'**Cannot open:** {e}'
        return message

    def start(self, state: TabState) -> tuple:
        """A new tab: the first image without annotation."""
        state = TabState()
        index = self.session.next_unannotated()
        message = self._open(state, 0 if index is None else index)
        if index is None:
            message = 'every image has an annotation'
        return self.outputs(state, message)

    def go(self, state: TabState, step: int) -> tuple:
        index = state.index + step
        if not 0 <= index < len(self.session.images):
            return self.outputs(state, 'no more images this way')
        return self.outputs(state, self._open(state, index))

    def next_unannotated(self, state: TabState) -> tuple:
        # every edit is saved as it is made, so the files say what is done
        index = self.session.next_unannotated(state.index)
        if index is None:
            return self.outputs(state, 'every image has an annotation')
        return self.outputs(state, self._open(state, index))

    def jump(self, state: TabState, wanted: str) -> tuple:
        """Go to an image given by its number (from 1), its name, or a part of its name (the
        next match after the current image)."""
        images, wanted = self.session.images, (wanted or '').strip()
        if wanted.isdigit() and 1 <= int(wanted) <= len(images):
            index = int(wanted) - 1
        elif wanted in images:
            index = images.index(wanted)
        else:
            order = images[state.index + 1:] + images[:state.index + 1]
            found = next((name for name in order if wanted and wanted in name), None)
            if found is None:
                state.shown = None  # puts the current name back in the box
                return self.outputs(state, f'no image {wanted!r} (a number from 1 to '
                                    f'{len(images)}, or a file name in {self.session.image_dir})')
            index = images.index(found)
        return self.outputs(state, self._open(state, index))

    def reload(self, state: TabState) -> tuple:
        """Open the image again as saved, dropping what could not be saved."""
        if state.edit is not None:
            state.edit.dirty = False
        return self.outputs(state, self._open(state, state.index) or 'reloaded')

    def save(self, state: TabState) -> tuple:
        return self.outputs(state, self._save(state)[1] or 'nothing to save')

    # editing --------------------------------------------------------------------------------

    def _edited(self, state: TabState, message: str = '') -> tuple:
        saved, failure = self._save(state)
        return self.outputs(state, message if saved else failure)

    def click(self, state: TabState, evt: gr.SelectData) -> tuple:
        """A click on the picture (``evt.index``: the shown pixel)."""
        if state.edit is None or evt.index is None:
            return self.outputs(state)
        edit, view = state.edit, self.view(state)
        x, y = view.to_image(*evt.index)
        x, y = min(max(x, 0.0), edit.width), min(max(y, 0.0), edit.height)
        if state.drawing_box:
            if state.box_corner is None:
                state.box_corner = (x, y)
                return self.outputs(state)
            (ax, ay), state.box_corner, state.drawing_box = state.box_corner, None, False
            if abs(x - ax) < 2 or abs(y - ay) < 2:
                return self.outputs(state, 'box too small; draw it again (b)')
            edit.current.bbox = (min(ax, x), min(ay, y), max(ax, x), max(ay, y))
            edit.dirty = True
            if self.predictor is not None:
                return self.predict(state)
            return self._edited(state, 'box set')
        if edit.target() is None:
            picked = edit.pick_nearest(x, y, PICK_RADIUS / min(view.scale))
            if picked is None:
                return self.outputs(state, 'face complete: click a point to move it, or pick '
                                    'one by number; New face for another face')
            return self.outputs(state)
        edit.click(x, y)
        return self._edited(state)

    def clear_last(self, state: TabState) -> tuple:
        state.box_corner, state.drawing_box = None, False
        state.edit.clear_last()
        return self._edited(state)

    def clear_all(self, state: TabState) -> tuple:
        state.edit.clear_all()
        state.zoom = None
        return self._edited(state)

    def mark(self, state: TabState, flag: int) -> tuple:
        index = state.edit.mark(flag)
        if index is None:
            return self.outputs(state, 'the face is complete; pick a point by number first')
        what = 'occluded: click where it would be' if flag == OCCLUDED else 'absent'
        return self._edited(state, f'point {describe(index)} marked {what}')

    def select_point(self, state: TabState, choice: str | None) -> tuple:
        if choice:
            state.edit.select(int(choice.split(':')[0]))
            state.point_picked = True
        return self.outputs(state)

    def select_face(self, state: TabState, choice: str | None) -> tuple:
        if choice:
            state.edit.face = int(choice.split()[-1]) - 1
            state.edit.selected, state.zoom = None, None
        return self.outputs(state)

    def new_face(self, state: TabState) -> tuple:
        state.edit.new_face()
        state.zoom = None
        return self._edited(state)

    def skip(self, state: TabState, reason: str | None) -> tuple:
        state.edit.skip(reason or SKIP_REASONS[0])
        saved, message = self._save(state)
        if not saved:
            return self.outputs(state, message)
        index = self.session.next_unannotated(state.index)
        if index is None:
            return self.outputs(state, f'{message} · every image has an annotation')
        return self.outputs(state, self._open(state, index) or message)

    def toggle_zoom(self, state: TabState) -> tuple:
        if state.zoom is not None:
            state.zoom = None
            return self.outputs(state)
        extent = face_extent(state.edit)
        if extent is None:
            return self.outputs(state, 'nothing to zoom on: place two points or draw a box')
        state.zoom = zoom_crop(extent, state.edit.width, state.edit.height)
        return self.outputs(state)

    def draw_box(self, state: TabState) -> tuple:
        state.drawing_box, state.box_corner = not state.drawing_box, None
        return self.outputs(state)

    def predict(self, state: TabState) -> tuple:
        """The model's 28 points for the current face (its box, a detected face or the whole
        image); the user then only corrects them."""
        if self.predictor is None:
            return self.outputs(state, 'no model: start with --checkpoint and --config')
        edit = state.edit
        image = self.cache.image(self.session.image_path(edit.image))
        note = ''
        box = edit.current.bbox
        if box is None and self.detector is not None:
            found = self.detector(image)
            if len(found):
                box = _box_for_face(found, edit)
                note = f' (face detector: {len(found)} faces; box drawn)'
        if box is None:
            box = (0.0, 0.0, float(edit.width), float(edit.height))
            note = ' (whole image: draw a box with b for a closer prediction)'
        sample = self.predictor.predict(image, np.array([box], np.float32))
        points = sample.pred_instances.keypoints[0]
        edit.set_face([tuple(p) for p in points], tuple(float(v) for v in box))
        return self._edited(state, f'predicted 28 points{note}; click a point to move it')


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


def _shortcut_help() -> str:
    rows = [f'| `{key}` | {what} |' for key, (_, what) in SHORTCUTS.items()
            if key not in ('Backspace', 'ArrowRight', 'ArrowLeft')]
    return '| key | does |\n|---|---|\n' + '\n'.join(rows)


def build_app(annotator: Annotator):
    """The Gradio Blocks of the annotator (launch with :func:`launch`)."""
    session = annotator.session
    with gr.Blocks(title='Landmark annotator', analytics_enabled=False,
                   delete_cache=(600, 1800)) as app:
        state = gr.State(TabState())
        small = dict(size='sm', min_width=60)  # two or three buttons to a row
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                header = gr.Markdown(elem_id='header')
                picture = gr.Image(format='jpeg', interactive=False, show_label=False,
                                   buttons=['fullscreen'], height='82vh', elem_id='picture')
            with gr.Column(scale=1, min_width=320):
                prompt = gr.Markdown(elem_id='prompt')
                chart = gr.Image(reference_chart(0), label='Click order', interactive=False,
                                 format='jpeg', buttons=[], height=260, elem_id='chart')
                message = gr.Markdown(elem_id='message')
                with gr.Row():
                    clear_last = gr.Button('Clear last (z)', elem_id='btn-clear-last',
                                           **small)
                    clear_all = gr.Button('Clear all', elem_id='btn-clear-all', **small)
                with gr.Row():
                    occluded = gr.Button('Occluded (o)', elem_id='btn-occluded', **small)
                    absent = gr.Button('Absent (x)', elem_id='btn-absent', **small)
                point = gr.Dropdown([describe(k) for k in range(NUM_KEYPOINTS)], value=None,
                                    label='Correct a point: pick it, then click its place',
                                    elem_id='point')
                with gr.Row():
                    face = gr.Dropdown(['face 1'], value='face 1', label='Face',
                                       elem_id='face', scale=1)
                    new_face = gr.Button('New face', elem_id='btn-new-face', **small,
                                         scale=1)
                with gr.Row():
                    zoom = gr.Button('Zoom face / whole (f)', elem_id='btn-zoom', **small)
                    box = gr.Button('Box (b)', elem_id='btn-box', **small)
                    predict = gr.Button('Predict (m)', elem_id='btn-predict', **small,
                                        visible=annotator.predictor is not None)
                with gr.Row():
                    prev = gr.Button('← Previous (p)', elem_id='btn-prev', **small)
                    save = gr.Button('Save (s)', elem_id='btn-save', variant='primary',
                                     **small)
                    next_ = gr.Button('Next (n) →', elem_id='btn-next', **small)
                next_todo = gr.Button('Next without annotation (u)', elem_id='btn-next-todo',
                                      **small)
                reload = gr.Button('Reload (drop what could not be saved)', elem_id='btn-reload',
                                   **small)
                # A textbox, not a dropdown: a dropdown of thousands of names slows every redraw.
                image = gr.Textbox(label=f'Go to image: its number (1-{len(session.images)}) '
                                   'or name, then Enter', elem_id='image', max_lines=1)
                with gr.Row():
                    reason = gr.Dropdown(list(SKIP_REASONS), value=SKIP_REASONS[0],
                                         allow_custom_value=True, label='Skip reason',
                                         elem_id='reason', scale=2)
                    skip = gr.Button('Skip image', elem_id='btn-skip', **small, scale=1)
                with gr.Accordion('Keyboard shortcuts', open=False):
                    gr.Markdown(_shortcut_help())

        outputs = [state, picture, header, prompt, message, face, image, point, chart]

        def needs_image(action):
            """``action`` only when an image is open (one that failed to open has no edits)."""
            def run(state, *args):
                if state.edit is None:
                    return annotator.outputs(state, 'no image open: go to another one')
                return action(state, *args)
            return run

        quick = dict(outputs=outputs, show_progress='hidden', trigger_mode='multiple',
                     concurrency_limit=1, concurrency_id='edits')
        picture.select(annotator.click, [state], **quick)
        clear_last.click(needs_image(annotator.clear_last), [state], **quick)
        clear_all.click(needs_image(annotator.clear_all), [state], **quick)
        occluded.click(needs_image(lambda s: annotator.mark(s, OCCLUDED)), [state], **quick)
        absent.click(needs_image(lambda s: annotator.mark(s, ABSENT)), [state], **quick)
        point.input(needs_image(annotator.select_point), [state, point], **quick)
        face.input(needs_image(annotator.select_face), [state, face], **quick)
        new_face.click(needs_image(annotator.new_face), [state], **quick)
        zoom.click(needs_image(annotator.toggle_zoom), [state], **quick)
        box.click(needs_image(annotator.draw_box), [state], **quick)
        predict.click(needs_image(annotator.predict), [state], **quick)
        prev.click(lambda s: annotator.go(s, -1), [state], **quick)
        next_.click(lambda s: annotator.go(s, 1), [state], **quick)
        next_todo.click(annotator.next_unannotated, [state], **quick)
        save.click(needs_image(annotator.save), [state], **quick)
        reload.click(annotator.reload, [state], **quick)
        image.submit(annotator.jump, [state, image], **quick)
        skip.click(needs_image(annotator.skip), [state, reason], **quick)
        app.load(annotator.start, [state], **quick)
    return app


def launch(annotator: Annotator, host: str = '127.0.0.1', port: int = 7860,
           block: bool = True):
    """Serve the annotator on ``host:port`` (127.0.0.1 unless asked: there is no login).

    Returns:
        The running Gradio app (``.close()`` stops it) when ``block`` is False.
    """
    import json

    if host not in LOCAL_HOSTS:
        print_log(f'the annotator listens on {host}: anyone who can reach this machine on '
                  f'port {port} can read the images and change the annotations (no login)',
                  logger='current', level=logging.WARNING)
    keys = {key: elem_id for key, (elem_id, _) in SHORTCUTS.items()}
    theme = gr.themes.Default(font=['system-ui', 'sans-serif'],
                              font_mono=['ui-monospace', 'monospace'])  # no web fonts
    app = build_app(annotator)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block,
               show_error=True, quiet=True, ssr_mode=False, mcp_server=False,
               footer_links=['gradio'], theme=theme, js=_SHORTCUT_JS % json.dumps(keys))
    return app
