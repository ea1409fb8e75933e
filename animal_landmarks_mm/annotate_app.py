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
- ``GET annotator/api/config``, ``annotator/chart.png``, ``annotator/static/*``: the layout,
  the click-order chart, the editor's code.

The page draws every edit at once and sends it; the server never draws pictures. Requests whose
``Host`` is not the annotator's own address are refused (:class:`HostGuard`: DNS rebinding).
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import mimetypes
import secrets
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import Request  # a module global: FastAPI resolves the routes' annotations here

from .annotate import (
    AnnotationConflictError,
    AnnotationSession,
    EditError,
    ImageEdit,
    UnsafeNameError,
)
from .annotation import STATUS_PREDICTED, STATUS_SKIPPED, AnnotationError
from .errors import AnimalLandmarksError
from .schema import GROUP_COLORS, LANDMARKS, SKELETON, VISIBILITY_FLAGS

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
#: Edit operations accepted in one request.
MAX_OPS = 1000

#: Keyboard shortcuts, shown in the page's help (the editor implements them).
SHORTCUTS: dict[str, str] = {
    'click': 'place the next point (or the selected one)',
    'click a point (face complete), a row of the list': 'select it: o, x, Delete act on it, '
                                                         'a click places it',
    'drag a point': 'move it (hover shows its number and name)',
    'drag the picture, space+drag': 'pan',
    'wheel, + / -': 'zoom around the cursor',
    'f / 0': 'zoom on the face / fit the picture',
    'Ctrl+Z (z), Ctrl+Shift+Z, Ctrl+Y': 'undo, redo',
    'o / x': 'occluded / absent on the selected (or next) point, again to unset',
    'Delete, Backspace': 'remove the selected point',
    'Escape': 'deselect, stop drawing a box',
    'l': 'labels on / off',
    'b': 'draw the face box (drag a rectangle)',
    'm': 'predict the points with the model',
    'Enter': 'accept the predicted points (after review)',
    'n / p, → / ←': 'next / previous image',
    'u': 'next image to do (no annotation, or predicted)',
    's, Ctrl+S': 'save now (every edit is saved anyway)',
    '?': 'this help',
}


# --- the session behind the pages ----------------------------------------------------------


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
    used: float = field(default_factory=time.monotonic)


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
def _turned_webp(path: Path, version: str) -> bytes | None:
    """A WebP image with an EXIF orientation other than upright, turned, as PNG bytes (None
    when upright). ``version`` keys the cache."""
    import io

    from PIL import Image, ImageOps
    with Image.open(path) as im:
        if im.getexif().get(0x0112, 1) in (0, 1):
            return None
        turned = ImageOps.exif_transpose(im)
        out = io.BytesIO()
        turned.save(out, 'PNG', compress_level=1)
    return out.getvalue()


def image_version(path: Path) -> str:
    """A version of an image file for its URL (the browser caches each version for good)."""
    stat = path.stat()
    return f'{stat.st_mtime_ns:x}-{stat.st_size:x}'


class Annotator:
    """The annotator's server side: tabs, their open images, edits and model assistance.

    Every method takes and returns plain data (the routes of :func:`create_app` are thin), so
    that it is tested without a browser.

    Args:
        session: the image and annotation folders.
        predictor: a :class:`~.infer.LandmarkPredictor` for model-assisted annotation.
        detector: a :class:`~.infer.FaceDetector` to find faces for the predictor.
        model: the model's name for the files' ``meta.model`` (e.g. its checkpoint).
    """

    def __init__(self, session: AnnotationSession, predictor=None, detector=None,
                 model: str | None = None):
        if not session.images:
            raise AnnotationError(f'no images in {session.image_dir}')
        self.session = session
        self.predictor = predictor
        self.detector = detector
        self.model = model or ('model' if predictor is not None else None)
        self.tabs: OrderedDict[str, TabSession] = OrderedDict()
        self._lock = threading.RLock()  # one edit or open at a time: they share the files

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
            visibility={str(k): v for k, v in VISIBILITY_FLAGS.items()},
            skip_reasons=list(SKIP_REASONS), predict=self.predictor is not None,
            detector=self.detector is not None, shortcuts=SHORTCUTS,
            chart=dict(url='annotator/chart.png', width=width, height=height, points=points))

    def status_label(self, edit: ImageEdit | None, image: str) -> str:
        """The image's state in words, as the header shows it."""
        session = self.session
        if edit is not None and session.has_draft(image):
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

    def state(self, tab: TabSession) -> dict:
        """The canonical state of a tab's image, as the page draws it."""
        session = self.session
        image = session.images[tab.index]
        progress = session.progress()
        state = dict(
            token=tab.token, image=image, index=tab.index, count=len(session.images),
            url=self.image_url(tab.index), next_url=self.image_url(tab.index + 1),
            applied=tab.applied, saved=tab.saved, message=tab.message,
            conflict=tab.conflict, save_error=tab.save_error,
            progress=dict(done=progress.done, predicted=progress.predicted,
                          to_do=progress.to_do, total=progress.total),
            status_label=self.status_label(tab.edit, image), edit=None)
        if tab.edit is not None:
            edit = tab.edit
            state.update(edit=edit.to_json(), width=edit.width, height=edit.height,
                         undo=len(edit.history), redo=len(edit.future),
                         file=session.annotation_path(image).name)
        return state

    def image_url(self, index: int) -> str | None:
        """The URL of the image at ``index`` (None: no such image, or gone)."""
        if not 0 <= index < len(self.session.images):
            return None
        try:
            version = image_version(self.session.image_path(self.session.images[index]))
        except OSError:
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
        if wanted.isdigit() and 1 <= int(wanted) <= len(images):
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
             discard: bool = False) -> dict:
        """Open an image in a tab.

        Args:
            tab: the tab's id (the page makes one).
            image: an image by its name; or ``index``, its place in the list (from 0); or
                ``go``: ``'start'`` (the first to do), ``'next'``, ``'prev'``, ``'todo'`` (the
                next to do) from ``current``; or ``wanted``: a number from 1, a name, a part.
            current: the image the page shows (for ``go`` and ``wanted``).
            discard: drop what the tab could not save (Reload) instead of saving it first.

        Returns:
            ``{'ok': True, 'state': ...}``, or ``{'ok': False, 'message': ...}`` when the image
            is not there, cannot be opened (then ``state`` holds it, without edits), or the
            tab's unsaved work cannot be saved (it stays put).
        """
        if not isinstance(tab, str) or not 8 <= len(tab) <= 100:
            raise EditError('a tab id is a text of 8 to 100 characters')
        with self._lock:
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
                    return dict(ok=False, reason='not_found', message=(
                        f'no image {wanted!r} (a number from 1 to {count}, or a name in '
                        f'{session.image_dir})'))
            elif go in ('next', 'prev'):
                target = max(current, 0) + (1 if go == 'next' else -1)
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
                raise EditError(f'open what? (image, index, go or wanted; got go={go!r})')
            if previous is not None and previous.edit is not None and not discard:
                failure = self._save(previous)
                if failure:
                    return dict(ok=False, reason='unsaved', message=failure + ' (Reload shows '
                                'the saved version and drops your change)')
            opened = TabSession(token=secrets.token_hex(8), index=target, edit=None,
                                message=message)
            self.tabs[tab] = opened
            self.tabs.move_to_end(tab)
            while len(self.tabs) > MAX_TABS:
                self.tabs.popitem(last=False)
            try:
                opened.edit = session.open(session.images[target])
            except (AnnotationError, UnsafeNameError) as e:
                opened.message = f'Cannot open: {e}'
                return dict(ok=False, reason='cannot_open', message=opened.message,
                            state=self.state(opened))
            return dict(ok=True, state=self.state(opened))

    # edits ------------------------------------------------------------------------------------

    def _save(self, tab: TabSession) -> str:
        """Save the tab's edits if there are any; returns why not ('' when saved)."""
        edit = tab.edit
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
            An HTTP status and the answer: 200 and the state (``message`` says what was
            refused, if anything), or 410 when the tab's image is not open here any more (a
            restarted server: the page reopens it and sends its unsaved operations again).
        """
        if not isinstance(ops, list) or len(ops) > MAX_OPS:
            raise EditError(f'ops must be a list of at most {MAX_OPS} operations')
        with self._lock:
            found = self._tab(tab)
            if found is None or found.token != token or found.edit is None:
                return 410, dict(reason='unknown_token', message='the image is not open here '
                                 'any more (the server restarted?); opening it again')
            messages = []
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
                try:
                    if op.get('op') == 'predict':
                        messages.append(self._predict(found.edit, op))
                    else:
                        found.edit.apply(op)
                except (AnimalLandmarksError, ValueError) as e:
                    messages.append(f'refused: {e}')
            self._save(found)
            found.message = '; '.join(m for m in messages if m)
            return 200, dict(state=self.state(found))

    def _predict(self, edit: ImageEdit, op: dict) -> str:
        """The model's 28 points for a face (its box, a detected face or the whole image);
        they stay predicted (to review) until accepted. Returns what was done."""
        if self.predictor is None:
            raise EditError('no model: start the annotator with --checkpoint and --config')
        import cv2
        if op.get('face') is not None:
            edit.select_face(op['face'])
        path = self.session.image_path(edit.image)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # EXIF applied, as mmcv does
        if image is None:
            raise AnnotationError(f'{path}: image unreadable')
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
        scores = getattr(sample.pred_instances, 'keypoint_scores', None)
        edit.set_face([tuple(p) for p in points], tuple(float(v) for v in box),
                      scores=None if scores is None else [float(s) for s in scores[0]],
                      model=self.model)
        return f'predicted 28 points{note}: drag the wrong ones, then Enter to accept'

    # files ------------------------------------------------------------------------------------

    def image_file(self, index: int) -> Path:
        """The image at ``index`` of the session's list (the only images served)."""
        if not 0 <= index < len(self.session.images):
            raise UnsafeNameError(f'no image number {index}')
        return self.session.image_path(self.session.images[index])

    def image_payload(self, index: int) -> tuple[Path | bytes, str]:
        """What the browser gets for the image at ``index``: the file itself (the browser
        decodes it, turned by its EXIF orientation as mmcv does), or, for a WebP image with an
        EXIF orientation (which Chromium ignores), the turned pixels as PNG. Returns the file
        or the bytes, and the media type."""
        path = self.image_file(index)
        media = mimetypes.guess_type(path.name)[0] or 'application/octet-stream'
        if path.suffix.lower() == '.webp':
            turned = _turned_webp(path, image_version(path))
            if turned is not None:
                return turned, 'image/png'
        return path, media


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


class HostGuard:
    """ASGI middleware: refuse HTTP and websocket requests whose ``Host`` is not one of
    ``allowed`` (403 and a one-line reason)."""

    def __init__(self, app, allowed: AllowedHosts):
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope, receive, send):
        if scope['type'] in ('http', 'websocket'):
            host = next((value.decode('latin-1') for key, value in scope.get('headers', ())
                         if key == b'host'), '')
            if host not in self.allowed:
                reason = (f'refused: Host {host!r} is not an address of this annotator '
                          '(start it with --allow-host NAME to answer to NAME)\n').encode()
                if scope['type'] == 'websocket':
                    await send({'type': 'websocket.close', 'code': 1008})
                    return
                await send({'type': 'http.response.start', 'status': 403,
                            'headers': [(b'content-type', b'text/plain; charset=utf-8'),
                                        (b'content-length', str(len(reason)).encode())]})
                await send({'type': 'http.response.body', 'body': reason})
                return
        await self.app(scope, receive, send)


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
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise EditError('the request body must be a JSON object')
        return body

    def refused(error: Exception, status: int = 400) -> JSONResponse:
        return JSONResponse(dict(ok=False, message=str(error)), status_code=status)

    @app.get('/annotator/api/config')
    def config():
        return annotator.config()

    @app.post('/annotator/api/open')
    async def open_image(request: Request):
        try:
            body = await json_body(request)
            keys = ('image', 'index', 'go', 'wanted', 'current')
            answer = await _in_thread(annotator.open, body.get('tab'), discard=bool(
                body.get('discard')), **{k: body.get(k) for k in keys})
        except (EditError, UnsafeNameError) as e:
            return refused(e)
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
        return JSONResponse(answer, status_code=status)

    @app.get('/annotator/image/{index}')
    def image(index: int):
        try:
            payload, media = annotator.image_payload(index)
        except UnsafeNameError as e:
            return refused(e, 404)
        except OSError:
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
    gr.mount_gradio_app(app, blocks, path='/', server_name=host, server_port=port,
                        footer_links=[], run_history=False, ssr_mode=False, mcp_server=False,
                        show_error=True, theme=theme)
    return HostGuard(app, AllowedHosts.for_bind(host, allow_hosts))


async def _in_thread(function, *args, **kwargs):
    """Run a blocking call (file writes, a model) off the event loop."""
    from starlette.concurrency import run_in_threadpool
    return await run_in_threadpool(function, *args, **kwargs)


class Server:
    """A running annotator (:func:`launch` with ``block=False``); ``close()`` stops it."""

    def __init__(self, server, thread: threading.Thread, url: str):
        self._server, self._thread, self.url = server, thread, url

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


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
        server.run()
        return None
    thread = threading.Thread(target=server.run, name='annotator', daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise OSError(f'the annotator could not start on {shown}:{port}')
        time.sleep(0.02)
    return Server(server, thread, f'http://{shown}:{port}')

