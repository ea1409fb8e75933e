"""The annotator end to end: tools/annotate_landmarks.py served on 127.0.0.1, driven by a real
headless Chromium through Playwright, checked on the files it writes.

The editor's conventions (animal_landmarks_mm/testing/browser.py): image pixel (x, y) is shown
at ``left + (x + 0.5) * width / W`` of ``#landmark-image``'s client rect; placed points are
``.landmark-point[data-index]``.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from animal_landmarks_mm.annotate import MAX_REASON_CHARS, AnnotationSession
from animal_landmarks_mm.annotate_app import Annotator, launch
from animal_landmarks_mm.annotation import Face, ImageAnnotation, load_annotation, save_annotation
from animal_landmarks_mm.benchmarks import annotator as annotator_benchmark
from animal_landmarks_mm.benchmarks.annotator import review_folder, scratch_versus_review
from animal_landmarks_mm.synthetic import render_face_image
from animal_landmarks_mm.testing.browser import (
    EDITOR_READY_JS,
    RECT_JS,
    SAVED_JS,
    chromium_available,
    free_port,
    image_position,
    launch_chromium,
    point_positions,
    save_screenshot,
    screen_position,
)
from conftest import MAIN_CONFIG, REPO

#: The README's picture of the tool (resources/annotator.png) is a copy of this.
SCREENSHOT = REPO / 'work_dirs' / 'screenshots' / 'annotator.png'
#: A name that would be markup if it reached HTML unescaped.
XSS_NAME = '<b>x<i>y<img src=x onerror=alert(1)>.png'
WAIT_MS = 30000  # generous: a loaded 2-core machine
#: JavaScript: the point list shows the row of the point to place next (or there is none).
TARGET_ROW_SHOWN_JS = '''() => { const e = window.landmarkEditor, t = e.target();
  if (t === null) return true;
  const list = document.getElementById('le-points').getBoundingClientRect();
  const row = e.rows[t].row.getBoundingClientRect();
  return row.top >= list.top && row.bottom <= list.bottom; }'''
#: JavaScript: requests to annotator/api/WHAT are logged (window.apiLog: [WHAT, HTTP status];
#: window.apiPending: how many are unanswered), and the next ``times`` of WHAT wait ``ms``
#: before they go (a slow network or server).
SLOW_API_JS = '''([what, ms, times]) => {
  if (!window.apiLog) {
    const send = window.fetch;
    window.apiLog = [];
    window.apiDelays = {};
    window.apiPending = 0;
    window.fetch = async (url, options) => {
      const kind = (String(url).split('annotator/api/')[1] || '').split('?')[0];
      const delay = window.apiDelays[kind];
      window.apiPending += 1;
      try {
        if (delay && delay.times > 0) {
          delay.times -= 1;
          await new Promise((resolve) => setTimeout(resolve, delay.ms));
        }
        const response = await send(url, options);
        if (kind) window.apiLog.push([kind, response.status]);
        return response;
      } finally {
        window.apiPending -= 1;
      }
    };
  }
  window.apiDelays[what] = {ms, times};
}'''

sync_api = pytest.importorskip('playwright.sync_api',
                               reason='playwright is not installed (make setup installs it)')
if not chromium_available():
    pytest.skip('/usr/bin/chromium not found: tools/setup_env.sh installs the Debian chromium '
                'package where it can (root or sudo); it could not here',
                allow_module_level=True)


def _small_face_picture(seed: int, size: tuple[int, int], face: tuple[int, int, int, int]):
    """A large picture with a small character in it (as on image boards), and its points."""
    rng = np.random.default_rng(seed)
    x0, y0, w, h = face
    face_image, points, _ = render_face_image(rng, w, h)
    picture = np.empty((size[1], size[0], 3), np.uint8)
    picture[:] = rng.integers(90, 170, 3)
    picture[y0:y0 + h, x0:x0 + w] = face_image
    return picture, points + (x0, y0)


@pytest.fixture(scope='module')
def images(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Synthetic characters and their true points; one large picture with a small face, one
    sideways JPEG (EXIF orientation 6), one predicted file, one name that looks like HTML."""
    folder = tmp_path_factory.mktemp('annotator') / 'images'
    folder.mkdir()
    truth = {}
    for k, (w, h) in enumerate([(640, 480), (400, 300)]):
        image, points, _ = render_face_image(np.random.default_rng(k + 20), w, h)
        cv2.imwrite(str(folder / f'face_{k}.png'), image)
        truth[f'face_{k}.png'] = points
    picture, points = _small_face_picture(3, (2400, 1800), (1500, 300, 360, 300))
    cv2.imwrite(str(folder / 'large.jpg'), picture, [cv2.IMWRITE_JPEG_QUALITY, 90])
    truth['large.jpg'] = points
    sideways = Image.fromarray(np.full((120, 200, 3), 90, np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 200x120, shown 120x200
    sideways.save(folder / 'sideways.jpg', exif=exif.tobytes())
    cv2.imwrite(str(folder / XSS_NAME), np.full((100, 100, 3), 200, np.uint8))
    cv2.imwrite(str(folder / 'review.png'), np.full((300, 300, 3), 150, np.uint8))
    return folder, truth


def _start(folder: Path, out: Path, port: int, log: Path, *options: str) -> subprocess.Popen:
    with open(log, 'a') as log_file:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / 'tools' / 'annotate_landmarks.py'), '--image-dir',
             str(folder), '--output-dir', str(out), '--port', str(port), '--annotator', 'e2e',
             *options],
            stdout=log_file, stderr=subprocess.STDOUT, cwd=folder.parent,
            env=dict(os.environ, PYTHONWARNINGS='ignore'))
    deadline = time.time() + 300  # a model to load on a loaded machine
    while True:
        try:
            urllib.request.urlopen(f'http://127.0.0.1:{port}/annotator/api/config', timeout=2)
            return proc
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f'the annotator did not start:\n{log.read_text()[-3000:]}')
            time.sleep(0.3)


@pytest.fixture(scope='module')
def server(images):
    """The annotator on a free port; yields (url, output dir)."""
    folder, _ = images
    out = folder.parent / 'landmarks'
    points = [(100.0 + 3 * k, 100.0 + 2 * k) for k in range(28)]
    save_annotation(out / 'review.json', ImageAnnotation(
        'review.png', 300, 300, [Face(points, scores=[0.7] * 28)], status='predicted',
        meta=dict(model='sha256:abc')))
    port = free_port()
    proc = _start(folder, out, port, folder.parent / 'server.log')
    yield f'http://127.0.0.1:{port}', out
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope='module')
def browser():
    with sync_api.sync_playwright() as playwright, launch_chromium(playwright) as context:
        yield context


class Page:
    """The annotator's page, with clicks given in image pixels."""

    def __init__(self, context, url: str, image: str | None = None):
        self.page = context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.external = []
        self.dialogs = []
        self.page.on('request', lambda r: None if r.url.startswith(url) or
                     r.url.startswith('data:') else self.external.append(r.url))
        self.leaving_unsaved = False  # whether the person confirms leaving unsaved edits
        self.page.on('dialog', self._dialog)
        self.page.goto(url + (f'/?image={image}' if image else '/'))
        self.ready()

    def _dialog(self, dialog) -> None:
        if dialog.type == 'beforeunload' and self.leaving_unsaved:
            dialog.accept()
        else:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

    def ready(self) -> None:
        self.page.wait_for_function(EDITOR_READY_JS)

    def js(self, expression: str):
        """``expression`` evaluated in the page, with ``e`` the editor."""
        return self.page.evaluate(f'() => {{ const e = window.landmarkEditor; '
                                  f'return {expression}; }}')

    def slow(self, what: str, ms: int, times: int = 1) -> None:
        """The next ``times`` requests to annotator/api/``what`` wait ``ms`` first; from now
        on the requests to the API are logged (:meth:`requests`)."""
        self.page.evaluate(SLOW_API_JS, [what, ms, times])

    def requests(self, what: str) -> int:
        """How many requests to annotator/api/``what`` were answered since :meth:`slow`."""
        return self.page.evaluate('what => window.apiLog.filter(r => r[0] === what).length',
                                  what)

    @property
    def state(self) -> dict:
        return self.page.evaluate('() => { const e = window.landmarkEditor; return {image: '
                                  'e.doc.image, width: e.doc.width, height: e.doc.height}; }')

    def size(self) -> tuple[int, int]:
        state = self.state
        return state['width'], state['height']

    def rect(self) -> list[float]:
        return self.page.locator('#landmark-image').evaluate(RECT_JS)

    def at(self, x: float, y: float) -> tuple[float, float]:
        return screen_position((x, y), self.size(), self.rect())

    def click(self, x: float, y: float) -> None:
        self.page.mouse.click(*self.at(x, y))

    def key(self, key: str) -> None:
        self.page.keyboard.press(key)

    def saved(self) -> None:
        self.page.wait_for_function(SAVED_JS)

    def text(self, elem_id: str) -> str:
        return self.page.locator(f'#{elem_id}').inner_text()

    def wait_text(self, elem_id: str, text: str) -> None:
        self.page.wait_for_function(
            '([id, text]) => document.getElementById(id).textContent.includes(text)',
            arg=[elem_id, text])

    def wait_image(self, name: str) -> None:
        self.page.wait_for_function(
            'name => { const e = window.landmarkEditor; return e && e.doc && '
            'e.doc.image === name && !e.navigating; }', arg=name)

    def close(self) -> None:
        assert not self.external, f'the page fetched from elsewhere: {self.external[:3]}'
        assert not self.dialogs, f'the page opened dialogs: {self.dialogs}'
        self.page.close()


def test_28_clicks_land_exactly_drag_undo_redo_and_occluded(server, images, browser):
    url, out = server
    folder, truth = images
    page = Page(browser, url, 'face_0.png')
    points = truth['face_0.png']
    assert page.text('le-name') == 'face_0.png' and '0 done' in page.text('le-progress')
    assert '0: temple, image-left' in page.text('le-prompt')
    for k, (x, y) in enumerate(points):
        assert f'next: {k}:' in page.text('le-prompt')
        assert page.page.evaluate(TARGET_ROW_SHOWN_JS), f'the list hides point {k}'
        page.click(x, y)
    page.wait_text('le-prompt', 'complete')
    page.saved()
    saved = load_annotation(out / 'face_0.json')
    got = np.array(saved.faces[0].landmarks)
    scale = page.rect()[2] / 640  # shown px per image px
    error = (got - points) * scale
    assert np.abs(error).max() <= 0.5, f'clicks saved up to {np.abs(error).max():.3f} shown px off'
    assert np.abs(error.mean(0)).max() < 0.05, f'clicks biased by {error.mean(0)} shown px'
    assert saved.meta['annotator'] == 'e2e' and (saved.width, saved.height) == (640, 480)
    assert '1 done' in page.text('le-progress')
    assert len(page.page.locator('#landmark-editor .landmark-point').all()) == 28
    assert save_screenshot(page.page, SCREENSHOT) < 300_000

    # drag point 12 by (+30, -20) shown pixels, grabbed 3, 4 px off its centre (within its
    # reach): it moves by the drag, not to the pointer
    x12, y12 = page.at(*got[12])
    x12, y12 = x12 + 3, y12 + 4
    page.page.mouse.move(x12, y12)
    page.wait_text('le-tooltip', '12: left eye, upper lid, top')  # hover names it
    page.page.mouse.down()
    page.page.mouse.move(x12 + 10, y12 - 5, steps=2)
    page.page.mouse.move(x12 + 30, y12 - 20, steps=3)
    page.page.mouse.up()
    page.saved()
    moved = got[12] + np.array([30, -20]) / scale
    edited = np.array(load_annotation(out / 'face_0.json').faces[0].landmarks)
    assert np.abs(edited[12] - moved).max() <= 0.5 / scale
    assert np.array_equal(np.delete(edited, 12, 0), np.delete(got, 12, 0))

    # undo the drag, redo it (both keys), undo again
    def point_12():
        page.saved()
        return np.array(load_annotation(out / 'face_0.json').faces[0].landmarks[12])

    page.key('Control+z')
    assert np.allclose(point_12(), got[12])
    page.key('Control+Shift+Z')
    assert np.allclose(point_12(), moved, atol=0.5 / scale)
    page.key('Control+z')
    page.key('Control+y')
    assert np.allclose(point_12(), moved, atol=0.5 / scale)
    page.key('Control+z')
    assert np.allclose(point_12(), got[12])

    # occluded by mistake, then unset: click point 5 (selects it), o, o
    page.click(*got[5])
    page.key('o')
    page.saved()
    assert load_annotation(out / 'face_0.json').faces[0].visibility[5] == 1
    assert page.page.locator('.landmark-point[data-index="5"]').get_attribute(
        'data-state') == 'occluded'  # drawn hollow
    page.key('Escape')
    page.click(*got[5])
    page.key('o')
    page.saved()
    face = load_annotation(out / 'face_0.json').faces[0]
    assert face.visibility[5] == 2 and face.landmarks[5] == pytest.approx(tuple(got[5]))

    # the in-page click-to-draw timing the benchmark reads
    timings = page.page.evaluate('window.landmarkEditor.timings')
    assert len(timings) >= 28 and all(0 < t < 5000 for t in timings)
    page.close()


def test_large_picture_small_face_zoom_pan_and_exact_clicks_when_zoomed(server, images,
                                                                        browser):
    url, out = server
    folder, truth = images
    page = Page(browser, url, 'large.jpg')
    points = truth['large.jpg']
    assert page.size() == (2400, 1800)
    page.key('b')  # the face box: drag a rectangle (at fit, the face is small)
    corner, other = page.at(1500, 300), page.at(1860, 600)
    page.page.mouse.move(*corner)
    page.page.mouse.down()
    page.page.mouse.move(*other, steps=5)
    page.page.mouse.up()
    page.wait_text('le-message', 'box set')
    page.key('f')  # zoom on it
    page.page.wait_for_function('() => window.landmarkEditor.view.s > 1')
    for x, y in points:
        page.click(x, y)
    page.saved()
    face = load_annotation(out / 'large.json').faces[0]
    saved = np.array(face.landmarks)
    scale = page.rect()[2] / 2400
    assert scale > 1  # zoomed on the small face: more than a screen pixel per image pixel
    assert np.abs(saved - points).max() * scale <= 0.5
    assert face.bbox == pytest.approx((1500, 300, 1860, 600), abs=0.5 / page.page.evaluate(
        'window.landmarkEditor.view.fit'))

    # wheel zoom around the cursor: the image pixel under it stays under it
    cursor = (round(page.at(*points[20])[0]), round(page.at(*points[20])[1]))
    before = image_position(cursor, (2400, 1800), page.rect())
    page.page.mouse.move(*cursor)
    for _ in range(12):
        page.page.mouse.wheel(0, -240)
    page.page.wait_for_function('() => window.landmarkEditor.view.s >= 8')
    rect = page.rect()
    assert rect[2] / 2400 >= 8  # at least 8 screen px per image px
    after = image_position(cursor, (2400, 1800), rect)
    assert np.allclose(before, after, atol=0.01), (before, after)
    page.key('0')  # fit
    page.page.wait_for_function('() => window.landmarkEditor.view.s < 1')
    width = page.rect()[2]
    assert width <= 1280 and width / 2400 == pytest.approx(
        page.page.evaluate('window.landmarkEditor.view.fit'))

    # pan: dragging the picture moves it by as much, and places no point
    page.key('f')
    page.page.wait_for_function('() => window.landmarkEditor.view.s > 1')
    start = page.rect()
    count = len(point_positions(page.page))
    empty = page.at(1500 - 30 / scale, 450)  # left of the box, clear of its corners
    page.page.mouse.move(*empty)
    page.page.mouse.down()
    page.page.mouse.move(empty[0] + 60, empty[1] + 30, steps=4)
    page.page.mouse.move(empty[0] + 100, empty[1] + 50, steps=4)
    page.page.mouse.up()
    moved = page.rect()
    assert moved[0] - start[0] == pytest.approx(100, abs=0.01)
    assert moved[1] - start[1] == pytest.approx(50, abs=0.01)
    assert len(point_positions(page.page)) == count
    page.saved()
    assert np.allclose(load_annotation(out / 'large.json').faces[0].landmarks, saved)
    page.close()


def _drag(page, start, end, steps=5) -> None:
    page.page.mouse.move(*start)
    page.page.mouse.down()
    page.page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=steps)
    page.page.mouse.move(*end, steps=steps)
    page.page.mouse.up()


@pytest.fixture(scope='module')
def board_pictures(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray], dict[str, tuple]]:
    """Ten image-board-like pictures: 4000x3000 (or 3000x4000) JPEGs with one small face
    (200-500 px) somewhere, their true points and face boxes."""
    folder = tmp_path_factory.mktemp('board') / 'images'
    folder.mkdir()
    rng = np.random.default_rng(77)
    truth, boxes = {}, {}
    for k in range(10):
        size = (4000, 3000) if k % 3 else (3000, 4000)
        side = int(rng.integers(200, 501))
        w, h = side, int(side * rng.uniform(0.8, 1.0))
        x0, y0 = int(rng.integers(0, size[0] - w)), int(rng.integers(0, size[1] - h))
        picture, points = _small_face_picture(100 + k, size, (x0, y0, w, h))
        name = f'post_{k:02d}.jpg'
        cv2.imwrite(str(folder / name), picture, [cv2.IMWRITE_JPEG_QUALITY, 88])
        truth[name], boxes[name] = points, (x0, y0, x0 + w, y0 + h)
    return folder, truth, boxes


def test_ten_image_board_pictures_without_a_click_going_wrong(board_pictures, browser,
                                                              tmp_path):
    """What a new user does all day: for each large picture with a small face, drag the face
    box (b), zoom on it (f), click the 28 points, next (n). Every point lands within half a
    shown pixel, and the converter takes all ten files. On the way, the other tools of the
    editor: a point marked absent (x) and back (undo), a point selected in the list, labels
    hidden (l), a box corner dragged, space+drag panning."""
    folder, truth, boxes = board_pictures
    out = tmp_path / 'landmarks'
    port = free_port()
    proc = _start(folder, out, port, tmp_path / 'server.log')
    try:
        page = Page(browser, f'http://127.0.0.1:{port}', 'post_00.jpg')
        for k, name in enumerate(sorted(truth)):
            page.wait_image(name)
            size = (4000, 3000) if k % 3 else (3000, 4000)
            assert page.size() == size
            x0, y0, x1, y1 = boxes[name]
            page.key('b')
            _drag(page, page.at(x0, y0), page.at(x1, y1))
            page.wait_text('le-message', 'box set')
            page.key('f')
            page.page.wait_for_function('() => window.landmarkEditor.view.s > 1')
            points = truth[name]
            for x, y in points:
                page.click(x, y)
            page.wait_text('le-prompt', 'complete')
            page.saved()
            saved = np.array(load_annotation(out / f'post_{k:02d}.json').faces[0].landmarks)
            scale = page.rect()[2] / size[0]
            assert np.abs(saved - points).max() * scale <= 0.5, (name, scale)
            if k == 1:
                _other_tools(page, out / 'post_01.json', saved, scale)
            page.key('n')
        page.wait_text('le-progress', '10 done')
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    from animal_landmarks_mm.converter import AnnotationReader
    contents = AnnotationReader(folder, progress=False).read(out)
    assert len(contents.records) == 10 and contents.problems == []


def _other_tools(page, file: Path, saved: np.ndarray, scale: float) -> None:
    """x / undo, the point list, l, a box corner, space+drag (on a finished face)."""
    def face():
        page.saved()
        return load_annotation(file).faces[0]

    # x on a selected point: absent (no point drawn); Ctrl+Z brings it back where it was
    page.click(*saved[23])  # the face is complete: a click selects
    page.key('x')
    assert face().visibility[23] == 0 and face().landmarks[23] is None
    assert page.page.locator('.landmark-point[data-index="23"]').count() == 0
    page.key('Control+z')
    assert face().visibility[23] == 2 and np.allclose(face().landmarks[23], saved[23])
    # a row of the point list selects its point; o then applies to it
    page.page.locator('#le-points [data-index="7"]').click()
    page.key('o')
    assert face().visibility[7] == 1
    page.key('Control+z')
    assert face().visibility[7] == 2
    # l hides the labels and shows them again
    assert page.page.locator('#landmark-editor .le-label').count() > 0
    page.key('l')
    page.page.wait_for_function(
        '() => document.querySelectorAll("#landmark-editor .le-label").length === 0')
    page.key('l')
    page.page.wait_for_function(
        '() => document.querySelectorAll("#landmark-editor .le-label").length > 0')
    # the box's top-left corner, grabbed 3, 4 shown px off it and dragged 20 shown px left and
    # up: an edit of the box, the corner moved by the drag (not to the pointer)
    box = face().bbox
    corner = page.at(box[0], box[1])
    grab = (corner[0] + 3, corner[1] + 4)
    _drag(page, grab, (grab[0] - 20, grab[1] - 20))
    page.page.wait_for_function(
        f'() => window.landmarkEditor.face.bbox[0] < {box[0] - 10 / scale}')
    moved = face().bbox
    assert moved[0] == pytest.approx(box[0] - 20 / scale, abs=1 / scale)
    assert moved[1] == pytest.approx(box[1] - 20 / scale, abs=1 / scale)
    assert moved[2:] == pytest.approx(box[2:])
    # space+drag pans even over a point (which a plain drag would move)
    start = page.rect()
    over = page.at(*saved[12])
    page.page.keyboard.down(' ')
    _drag(page, over, (over[0] + 40, over[1] + 25))
    page.page.keyboard.up(' ')
    now = page.rect()
    assert (now[0] - start[0], now[1] - start[1]) == pytest.approx((40, 25), abs=0.01)
    assert np.allclose(face().landmarks, saved)  # nothing moved but the view


def test_reload_url_back_forward_and_the_next_to_do(server, images, browser):
    url, out = server
    page = Page(browser, url, 'face_1.png')
    page.click(50, 60)
    page.click(70, 80)
    page.saved()
    # the tab id is out of sessionStorage while the page lives (a duplicated tab, which gets
    # a copy of it, starts with its own id) and back for a reload, which keeps it
    tab_id = 'window.landmarkEditor.tab'
    stored = 'sessionStorage.getItem("landmark-editor-tab")'
    before = page.page.evaluate(tab_id)
    assert page.page.evaluate(stored) is None
    page.page.reload()
    page.ready()
    assert page.page.evaluate(tab_id) == before and page.page.evaluate(stored) is None
    assert page.state['image'] == 'face_1.png'  # the URL names the image
    shown = point_positions(page.page)
    assert sorted(shown) == [0, 1] and np.allclose([shown[0], shown[1]], [(50, 60), (70, 80)])
    assert 'draft' in page.text('le-status')
    page.key('n')
    page.wait_image('large.jpg')
    assert 'image=large.jpg' in page.page.url
    page.page.go_back()
    page.wait_image('face_1.png')
    page.page.go_forward()
    page.wait_image('large.jpg')
    page.page.goto(f'{url}/?image=.hidden.png')  # hidden names are refused; a fresh start
    page.ready()
    assert 'starting with a dot' in page.text('le-message') or \
        page.state['image'] != '.hidden.png'
    page.close()


def test_predicted_points_are_drawn_unreviewed_until_accepted(server, images, browser):
    url, out = server
    page = Page(browser, url, 'face_0.png')
    # gone to with the form's Go button (README: go to an image, then Enter accepts): the
    # button keeps no focus, so Space pans and Enter accepts rather than press Go again
    page.page.locator('#le-goto-input').fill('review.png')
    page.page.locator('#le-goto button[type="submit"]').click()
    page.wait_image('review.png')
    page.page.keyboard.down(' ')
    assert page.js('e.space')
    page.page.keyboard.up(' ')
    assert page.text('le-status') == 'predicted, to review'
    assert '1 predicted' in page.text('le-progress')
    assert page.page.locator('.landmark-point[data-predicted="1"]').count() == 28
    assert 'Enter to accept' in page.text('le-prompt')
    page.key('Enter')
    page.saved()
    saved = load_annotation(out / 'review.json')
    assert saved.status == 'annotated' and saved.meta['reviewed_by'] == 'e2e'
    assert page.page.locator('.landmark-point[data-predicted="1"]').count() == 0
    page.key('Control+z')  # accepting is undoable
    page.saved()
    assert load_annotation(out / 'review.json').status == 'predicted'
    page.key('Enter')
    page.saved()
    page.close()


def test_names_are_text_exif_is_honoured_and_nothing_moves_at_1280x720(server, images, browser):
    url, out = server
    page = Page(browser, url)
    page.page.locator('#le-goto-input').fill('<b>x')
    page.page.locator('#le-goto-input').press('Enter')
    page.wait_image(XSS_NAME)
    assert page.text('le-name') == XSS_NAME
    assert page.page.locator('#landmark-editor b, #landmark-editor img[src="x"]').count() == 0

    page.page.locator('#le-goto-input').fill('sideways.jpg')
    page.page.locator('#le-goto-input').press('Enter')
    page.wait_image('sideways.jpg')
    natural = page.page.locator('#landmark-image').evaluate(
        'e => [e.naturalWidth, e.naturalHeight]')
    assert natural == [120, 200] and page.size() == (120, 200)  # as mmcv decodes it

    # every control is on screen without scrolling, and stays put when a message appears
    size = page.page.viewport_size
    assert (size['width'], size['height']) == (1280, 720)
    assert page.page.locator('#landmark-editor').evaluate(RECT_JS) == [0, 0, 1280, 720]
    controls = page.page.locator('#landmark-editor button, #landmark-editor input, '
                                 '#landmark-editor select')
    before = controls.evaluate_all('es => es.map(e => { const r = e.getBoundingClientRect(); '
                                   'return [r.left, r.top, r.right, r.bottom]; })')
    assert max(r[3] for r in before) <= 720 and max(r[2] for r in before) <= 1280
    page.page.evaluate('window.landmarkEditor.say("a long message ".repeat(30), "error")')
    after = controls.evaluate_all('es => es.map(e => { const r = e.getBoundingClientRect(); '
                                  'return [r.left, r.top, r.right, r.bottom]; })')
    assert before == after
    page.page.locator('#le-chart').click()  # the chart enlarges on click
    assert page.page.locator('#le-chart-modal').is_visible()
    labels = page.page.locator('#le-chart-big-overlay text')
    assert labels.count() == 28 and labels.first.evaluate(
        'e => e.getBoundingClientRect().height') >= 12
    page.page.locator('#le-chart-modal').click()
    # skipped as unusable: saved so, and the page moves on to the next image to do
    page.page.locator('#le-skip-reason').fill('bad quality')
    page.page.locator('#le-skip button[type="submit"]').click()
    page.page.wait_for_function('() => window.landmarkEditor.doc.image !== "sideways.jpg"')
    skipped = load_annotation(out / 'sideways.json')
    assert skipped.status == 'skipped' and skipped.status_reason == 'bad quality'
    page.close()


def test_two_tabs_cannot_overwrite_each_other(server, images, browser):
    url, out = server
    first = Page(browser, url, 'face_1.png')
    second = Page(browser, url, 'face_1.png')
    first.click(100, 100)  # point 2 of the draft
    first.saved()
    second.click(120, 130)
    second.page.wait_for_function(
        '() => document.getElementById("le-save").dataset.state === "conflict"')
    assert 'another tab' in second.text('le-message')
    second.key('n')  # refuses to move on and lose the point, in the server's words
    second.page.wait_for_function('() => !window.landmarkEditor.navigating')
    assert 'was changed by someone else' in second.text('le-message')
    assert second.state['image'] == 'face_1.png'
    second.page.locator('[data-action="reload"]').click()  # shows what the first saved
    second.page.wait_for_function(
        '() => document.getElementById("le-save").dataset.state === "saved" && '
        'document.querySelectorAll(".landmark-point").length === 3')
    assert point_positions(second.page)[2] == pytest.approx((100, 100), abs=1e-4)
    first.close()
    second.close()


def test_edits_made_while_the_server_is_away_are_kept_and_sent(images, browser, tmp_path):
    folder = tmp_path / 'images'
    shutil.copytree(images[0], folder)
    out, port = tmp_path / 'out', free_port()
    log = tmp_path / 'server.log'
    proc = _start(folder, out, port, log)
    url = f'http://127.0.0.1:{port}'
    page = Page(browser, url, 'face_0.png')
    # briefly unreachable: the requests fail, the page keeps the edits and says so
    page.page.route('**/annotator/api/edit', lambda route: route.abort())
    page.click(10, 10)
    page.click(20, 20)
    page.wait_text('le-save', 'not saved yet (2)')
    assert page.page.locator('#le-save').get_attribute('data-state') == 'unsaved'
    page.page.unroute('**/annotator/api/edit')
    page.saved()
    assert np.allclose(session_points(out), [(10, 10), (20, 20)])
    # the server restarts: the page opens the image again and sends what it has not saved
    proc.terminate()
    proc.wait(timeout=30)
    page.click(30, 30)
    page.page.wait_for_function(
        '() => document.getElementById("le-save").dataset.state === "unsaved"')
    proc = _start(folder, out, port, log)
    try:
        page.saved()
        assert np.allclose(session_points(out), [(10, 10), (20, 20), (30, 30)])
        # x marks the next point (3) absent; x again right after unsets it, as o twice does
        page.key('x')
        page.key('x')
        page.saved()
        visibility = json.loads(draft_file(out).read_text())['faces'][0]['visibility']
        assert visibility[3:5] == [2, 2]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # while the server is away, another tab changes the draft: the page's edit made meanwhile
    # is refused as a conflict after the restart, not replayed over theirs
    page.click(40, 40)
    page.page.wait_for_function(
        '() => document.getElementById("le-save").dataset.state === "unsaved"')
    theirs = json.loads(draft_file(out).read_text())
    theirs['faces'][0]['points'][0] = [50.0, 60.0]
    draft_file(out).write_text(json.dumps(theirs))
    proc = _start(folder, out, port, log)
    try:
        page.page.wait_for_function(
            '() => document.getElementById("le-save").dataset.state === "conflict"')
        assert json.loads(draft_file(out).read_text()) == theirs
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    page.close()


def draft_file(out: Path) -> Path:
    return out / '.drafts' / 'face_0.json'


def session_points(out: Path) -> list:
    """The placed points of face_0.png's draft."""
    draft = json.loads(draft_file(out).read_text())
    return [p for p in draft['faces'][0]['points'] if p is not None]


def _png_without_pixels(width: int, height: int) -> bytes:
    """A PNG whose header is right (its size reads) and which has no pixels (no browser
    decodes it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack(
            '>I', zlib.crc32(kind + data))
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IEND', b'')


@pytest.fixture(scope='module')
def small_server(tmp_path_factory):
    """The annotator (in this process) on small plain pictures a.png ... h.png and, last,
    z_broken.png, which no browser decodes; yields (url, output dir)."""
    folder = tmp_path_factory.mktemp('small') / 'images'
    folder.mkdir()
    for k, name in enumerate('abcdefgh'):
        cv2.imwrite(str(folder / f'{name}.png'), np.full((150, 200, 3), 60 + 20 * k, np.uint8))
    (folder / 'z_broken.png').write_bytes(_png_without_pixels(200, 150))
    out = folder.parent / 'landmarks'
    server = launch(Annotator(AnnotationSession(folder, out, annotator='e2e')),
                    port=free_port(), block=False)
    yield server.url, out
    server.close()


def _placed(file: Path, points: list, face: int = 0) -> bool:
    """Whether the placed points of a face of a saved file (a draft or an annotation) are
    ``points`` (up to the screen's rounding)."""
    placed = [p for p in json.loads(file.read_text())['faces'][face]['points'] if p is not None]
    return len(placed) == len(points) and np.allclose(placed, points, atol=1e-3)


def test_keys_during_navigation_and_a_picture_the_browser_cannot_decode(small_server,
                                                                        browser):
    url, out = small_server
    page = Page(browser, url, 'f.png')
    history = page.page.evaluate('history.length')
    # n twice while the last edit is still being saved: one navigation, one history entry
    page.slow('edit', 800)
    page.click(10, 10)
    page.key('n')
    page.page.wait_for_timeout(100)
    page.key('n')
    page.wait_image('g.png')
    page.page.wait_for_function('() => window.apiPending === 0')  # a second one: answered
    assert page.state['image'] == 'g.png' and page.requests('open') == 1
    assert page.page.evaluate('history.length') == history + 1
    assert _placed(out / '.drafts' / 'f.json', [[10, 10]])
    # a key pressed while the next image opens is refused: neither image gets it; nor a click
    # pressed before n and let go while it opens: its point is taken back at n, not drawn and
    # then lost with the image left
    page.slow('open', 600)
    page.page.mouse.move(*page.at(50, 60))
    page.page.mouse.down()
    assert list(point_positions(page.page)) == [0]  # drawn at the press
    page.key('n')
    assert point_positions(page.page) == {}
    page.key('x')
    assert 'wait a moment' in page.text('le-message')
    page.page.mouse.up()
    assert point_positions(page.page) == {} and page.js('e.queue.length') == 0
    page.wait_image('h.png')
    assert page.js('[e.queue.length, e.edit.faces[0].visibility.every(v => v === 2), '
                   'e.edit.faces[0].points.every(p => p === null)]') == [0, True, True]
    assert not (out / '.drafts' / 'g.json').exists() and not (out / 'g.json').exists()
    # a picture the browser cannot decode: nothing is shown (not h.png's picture), the error
    # stays, and a click there places no point
    page.key('n')
    page.wait_image('z_broken.png')
    image = page.page.locator('#landmark-image')
    assert image.get_attribute('src') is None and image.evaluate(
        'e => getComputedStyle(e).visibility') == 'hidden'
    assert 'could not decode' in page.text('le-message')
    box = page.page.locator('#le-viewport').evaluate(RECT_JS)
    page.page.mouse.click(box[0] + box[2] / 2, box[1] + box[3] / 2)
    assert page.js('[e.queue.length, e.edit.faces[0].points.filter(Boolean).length]') == [0, 0]
    assert 'could not decode' in page.text('le-message')
    page.key('p')  # the picture before is shown again, and takes clicks again
    page.wait_image('h.png')
    assert image.get_attribute('src') and image.evaluate(
        'e => getComputedStyle(e).visibility') == 'visible'
    page.click(30, 40)
    page.saved()
    assert _placed(out / '.drafts' / 'h.json', [[30, 40]])
    page.close()


def test_back_pressed_twice_while_an_image_opens_goes_back_twice(small_server, browser):
    """The second Back came while the first one's image opened: it was dropped, and that
    image's address was written over the entry Back had reached."""
    url, out = small_server
    page = Page(browser, url, 'd.png')
    for name in ('e.png', 'f.png'):
        page.key('n')
        page.wait_image(name)
    page.slow('open', 700)
    page.page.go_back()  # to e.png, which takes 700 ms to open
    page.page.wait_for_function('() => window.landmarkEditor.navigating')
    page.page.go_back()  # to d.png, meanwhile
    page.wait_image('d.png')
    page.page.wait_for_function('() => !window.landmarkEditor.navigating')
    assert page.state['image'] == 'd.png' and 'image=d.png' in page.page.url
    assert page.requests('open') == 2
    page.page.go_forward()  # the entries are as they were
    page.wait_image('e.png')
    page.page.go_forward()
    page.wait_image('f.png')
    page.close()


def test_edits_racing_a_reload_a_lost_image_and_a_long_queue_are_all_sent(small_server,
                                                                          browser):
    url, out = small_server
    draft = out / '.drafts' / 'c.json'
    page = Page(browser, url, 'c.png')
    # Reload while an edit is on its way: the edits made after it are sent all the same
    page.slow('edit', 800)
    page.click(10, 10)
    page.page.locator('[data-action="reload"]').click()
    page.page.wait_for_function('() => !window.landmarkEditor.navigating')
    page.click(20, 20)
    page.page.wait_for_function(SAVED_JS, timeout=8000)
    # Reload sends the edit on its way first (it dropped it; work is never dropped unsent)
    assert _placed(draft, [[10, 10], [20, 20]])
    # the server forgets the image (here: the tab opens another one elsewhere, as a restart
    # does): the page opens it again once and sends its edits once, the ones made meanwhile
    # too, with no false conflict
    tab = page.js('e.tab')
    request = urllib.request.Request(
        f'{url}/annotator/api/open', data=json.dumps({'tab': tab, 'image': 'd.png'}).encode(),
        headers={'content-type': 'application/json'})
    urllib.request.urlopen(request, timeout=10).read()
    page.slow('open', 500)
    opened = page.requests('open')
    page.page.locator('[data-action="new-face"]').click()
    page.page.wait_for_function(  # told the image is gone: opening it again
        '() => window.apiLog.some(r => r[0] === "edit" && r[1] === 410)')
    page.key('s')
    page.click(30, 30)
    page.page.wait_for_function(
        '() => window.apiPending === 0 && window.apiDelays.open.times === 0', timeout=8000)
    page.page.wait_for_function(SAVED_JS, timeout=8000)
    assert page.requests('open') == opened + 1
    faces = json.loads(draft.read_text())['faces']
    assert len(faces) == 2 and _placed(draft, [[30, 30]], face=1)
    # more edits than the server takes in one request: sent in parts, not refused forever
    page.page.evaluate('() => { for (let k = 0; k < 1100; k++) '
                       'window.landmarkEditor.action("occluded"); }')
    page.page.wait_for_function(SAVED_JS, timeout=15000)
    assert json.loads(draft.read_text())['faces'][1]['visibility'][1] == 2  # 1100 toggles
    page.close()


def test_a_reload_refused_for_unsaved_work_counts_on_from_that_work(small_server, browser):
    url, out = small_server
    drafts = out / '.drafts'
    page = Page(browser, url, 'd.png')
    page.click(10, 10)
    page.saved()
    away = out / 'drafts_away'
    drafts.rename(away)
    drafts.write_text('')  # the drafts cannot be written
    try:
        page.click(20, 20)
        page.click(30, 30)
        page.page.wait_for_function(
            '() => document.getElementById("le-save").dataset.state === "unsaved"')
        page.leaving_unsaved = True
        page.page.reload()  # F5: the server keeps the tab's unsaved work and shows it (409)
        page.ready()
        assert len(point_positions(page.page)) == 3
    finally:
        drafts.unlink()
        away.rename(drafts)
    page.click(40, 40)  # the next edit after that work, not taken for one of it
    page.saved()
    page.page.wait_for_timeout(300)
    assert len(point_positions(page.page)) == 4
    assert _placed(drafts / 'd.json', [[10, 10], [20, 20], [30, 30], [40, 40]])
    page.close()


def test_touch_pointercancel_keys_in_any_layout_focused_buttons_and_zoom(small_server, browser):
    url, out = small_server
    page = Page(browser, url, 'a.png')
    assert page.page.locator('#le-message').get_attribute('aria-live') == 'polite'
    assert page.page.locator('#le-save').get_attribute('aria-live') == 'polite'
    page.click(20, 20)
    page.saved()
    stacks = '[e.undoStack.length, e.redoStack.length]'

    def key_down(**event) -> None:
        page.page.evaluate('event => document.dispatchEvent(new KeyboardEvent("keydown", '
                           'Object.assign({bubbles: true, cancelable: true}, event)))', event)

    # z with Caps Lock on (key "Z", no Shift) undoes; Ctrl+Z and Ctrl+Shift+Z in a Russian
    # layout (key "я" at KeyZ) undo and redo
    key_down(key='Z', code='KeyZ')
    assert page.js(stacks) == [0, 1]
    key_down(key='я', code='KeyZ', ctrlKey=True, shiftKey=True)
    assert page.js(stacks) == [1, 0]
    key_down(key='я', code='KeyZ', ctrlKey=True)
    assert page.js(stacks) == [0, 1]
    # Space and Enter press a focused button (Redo, Undo), as anywhere
    page.page.locator('[data-action="redo"]').focus()
    page.key(' ')
    assert page.js(stacks) == [1, 0]
    page.page.locator('[data-action="undo"]').focus()
    page.key('Enter')
    assert page.js(stacks) == [0, 1]
    page.key('Control+y')
    page.saved()
    # ö where a US keyboard has x (Turkish-F) is a letter of its own, no x: nothing is marked
    # absent; ч there (Russian) is x: point 1 absent, and x again right after unsets it
    absent = 'e.face.visibility.map((v, k) => v === 0 ? k : -1).filter(k => k >= 0)'
    for key in ('ö', 'Ö'):
        key_down(key=key, code='KeyX')
        assert page.js(absent) == [] and page.js(stacks) == [1, 0]
    key_down(key='ч', code='KeyX')
    assert page.js(absent) == [1]
    key_down(key='ч', code='KeyX')
    assert page.js(absent) == [] and page.js(stacks) == [3, 0]
    page.saved()
    # a space held while the window loses focus is not held for ever
    for leave in ('window.dispatchEvent(new Event("blur"))',
                  'document.dispatchEvent(new Event("visibilitychange"))'):
        page.page.keyboard.down(' ')
        assert page.js('e.space')
        page.page.evaluate(leave)
        assert not page.js('e.space')
        page.page.keyboard.up(' ')
    # + zooms around the mouse over the picture; - with the mouse off it, around the middle
    cursor = page.at(150, 40)
    page.page.mouse.move(*cursor)
    before = image_position(cursor, page.size(), page.rect())
    page.key('+')
    assert np.allclose(image_position(cursor, page.size(), page.rect()), before, atol=0.01)
    viewport = page.page.locator('#le-viewport').evaluate(RECT_JS)
    middle = (viewport[0] + viewport[2] / 2, viewport[1] + viewport[3] / 2)
    page.page.mouse.move(1270, 10)  # over the panel
    before = image_position(middle, page.size(), page.rect())
    page.key('-')
    assert np.allclose(image_position(middle, page.size(), page.rect()), before, atol=0.01)
    page.key('0')

    def only_point_0() -> bool:
        shown = point_positions(page.page)
        return list(shown) == [0] and np.allclose(shown[0], (20, 20), atol=1e-3)

    # a drag of a point the browser cancels (pointercancel) moves nothing
    grabbed = page.at(20, 20)
    page.page.mouse.move(*grabbed)
    page.page.mouse.down()
    page.page.mouse.move(grabbed[0] + 40, grabbed[1] + 30, steps=4)
    page.page.evaluate('() => document.getElementById("le-viewport").dispatchEvent(new '
                       'PointerEvent("pointercancel", {bubbles: true, pointerId: '
                       'window.landmarkEditor.gesture.id}))')
    page.page.mouse.up()
    assert only_point_0() and page.js('e.queue.length') == 0
    # two fingers: neither a click nor a drag; no point is drawn and left unsent
    cdp = browser.new_cdp_session(page.page)
    cdp.send('Emulation.setTouchEmulationEnabled', {'enabled': True, 'maxTouchPoints': 5})
    first, second = page.at(60, 60), page.at(120, 90)
    one = {'x': first[0], 'y': first[1], 'id': 1}
    two = {'x': second[0], 'y': second[1], 'id': 2}
    for kind, touches in (('touchStart', [one]), ('touchStart', [one, two]), ('touchEnd', [])):
        cdp.send('Input.dispatchTouchEvent', {'type': kind, 'touchPoints': touches})
    page.saved()
    assert only_point_0() and page.js(stacks) == [3, 0]
    cdp.send('Emulation.setTouchEmulationEnabled', {'enabled': False})
    cdp.detach()
    # Skip with Enter in its reason box, saved slowly: it is a navigation from the start, so
    # an x meanwhile is refused (not made to the skipped image, un-skipping it) and an n opens
    # nothing more; the keys are shortcuts again on the next image
    page.slow('edit', 800)
    page.page.locator('#le-skip-reason').fill('bad quality')
    page.page.locator('#le-skip-reason').press('Enter')
    page.key('x')
    assert 'wait a moment' in page.text('le-message')
    page.key('n')
    page.page.wait_for_function('() => { const e = window.landmarkEditor; '
                                'return e.doc.image !== "a.png" && !e.navigating; }')
    assert page.requests('open') == 1
    skipped = json.loads((out / 'a.json').read_text())
    assert skipped['status'] == 'skipped' and skipped['status_reason'] == 'bad quality'
    assert not (out / '.drafts' / 'a.json').exists()  # no edit after the skip
    skipped_to = page.state['image']
    page.key('n')
    page.page.wait_for_function('name => { const e = window.landmarkEditor; '
                                'return e.doc.image !== name && !e.navigating; }', arg=skipped_to)
    assert page.page.locator('#le-skip-reason').input_value() == 'bad quality'
    page.close()


def test_a_skip_the_server_refuses_stays_on_the_image_and_says_why(small_server, browser):
    """The reason field is as long as the server takes; a longer one (set by a script, past
    maxlength) is refused there, and the page stays on the image with the refusal shown."""
    url, out = small_server
    page = Page(browser, url, 'b.png')
    field = page.page.locator('#le-skip-reason')
    assert field.evaluate('e => e.maxLength') == MAX_REASON_CHARS
    field.evaluate('(e, n) => { e.value = "x".repeat(n + 1); }', MAX_REASON_CHARS)
    page.page.locator('#le-skip button[type="submit"]').click()
    page.wait_text('le-message', 'refused: a skip reason')
    page.page.wait_for_function('() => { const e = window.landmarkEditor; '
                                'return !e.navigating && !e.queue.length && !e.inFlight; }')
    page.page.wait_for_timeout(300)  # no navigation follows
    assert page.state['image'] == 'b.png' and page.js('e.doc.edit.status') != 'skipped'
    assert 'refused: a skip reason' in page.text('le-message')
    assert not (out / 'b.json').exists()
    field.fill('blurry')  # within the limit: skipped, and the page moves on
    page.page.locator('#le-skip button[type="submit"]').click()
    page.page.wait_for_function('() => window.landmarkEditor.doc.image !== "b.png"')
    assert load_annotation(out / 'b.json').status == 'skipped'
    page.close()


@pytest.fixture(scope='module')
def restarts(tmp_path_factory):
    """The annotator in this process on small pictures r0.png ... r14.png, with ``restart()``:
    what a server restart does (the folders read again, every tab's open image forgotten),
    without the seconds a new process takes. Yields (url, output dir, image dir, restart)."""
    folder = tmp_path_factory.mktemp('restarts') / 'images'
    folder.mkdir()
    for k in range(15):
        cv2.imwrite(str(folder / f'r{k}.png'), np.full((150, 200, 3), 40 + 12 * k, np.uint8))
    out = folder.parent / 'landmarks'
    annotator = Annotator(AnnotationSession(folder, out, annotator='e2e'))
    server = launch(annotator, port=free_port(), block=False)

    def restart() -> None:
        with annotator._lock:
            annotator.session = AnnotationSession(folder, out, annotator='e2e')
            annotator.tabs.clear()

    yield server.url, out, folder, restart
    server.close()


def _shows(page: Page, points: list) -> bool:
    """Whether the page shows ``points`` as the current face's (in index order; up to the
    screen's rounding)."""
    shown = point_positions(page.page)
    got = [shown[k] for k in sorted(shown)]
    return len(got) == len(points) and np.allclose(got, points, atol=1e-3)


def test_an_image_that_cannot_be_opened_after_a_restart_is_no_request_loop(restarts, browser):
    """The server restarted and cannot open the image again (unreadable now), or it is gone
    from the folder: the page keeps its edits, says so plainly, and asks again now and then
    (not in a loop: the server registered the image without edits, so an edit there is 410
    again); once the image can be opened, the edits are saved."""
    url, out, folder, restart = restarts
    page = Page(browser, url, 'r0.png')
    page.click(10, 10)
    page.saved()
    restart()
    picture = folder / 'r0.png'
    away = folder.parent / 'r0.png.away'
    picture.rename(away)  # listed, but unreadable now
    try:
        page.slow('open', 0, 0)  # logs the requests from here on
        page.click(20, 20)
        page.page.wait_for_timeout(2500)
        assert page.requests('open') <= 5, f'a request loop: {page.requests("open")} opens'
        assert 'cannot open r0.png again' in page.text('le-message')
        assert page.page.locator('#le-save').get_attribute('data-state') == 'unsaved'
        assert page.js('e.queue.length') == 1 and _shows(page, [[10, 10], [20, 20]])
    finally:
        away.rename(picture)
    page.page.wait_for_function(SAVED_JS, timeout=15000)  # the next try opens it: saved
    assert _placed(out / '.drafts' / 'r0.json', [[10, 10], [20, 20]])
    page.close()


def test_edits_of_an_image_gone_after_a_restart_say_so_and_reload_drops_them(restarts,
                                                                              browser):
    url, out, folder, restart = restarts
    page = Page(browser, url, 'r1.png')
    page.click(10, 10)
    page.saved()
    picture = folder / 'r1.png'
    away = folder.parent / 'r1.png.away'
    picture.rename(away)
    try:
        restart()  # the folder read again: r1.png is no image of it any more
        page.click(20, 20)
        page.wait_text('le-message', 'r1.png is gone from the image folder')
        save = page.page.locator('#le-save')
        page.page.wait_for_function(
            '() => document.getElementById("le-save").dataset.state === "unsaved"')
        assert 'gone' in save.inner_text() and '(1)' in save.inner_text()
        started = time.monotonic()
        page.key('n')  # refused at once (not after 4 s of asking), saying why
        page.page.wait_for_function('() => !window.landmarkEditor.navigating')
        assert time.monotonic() - started < 2.5
        assert page.state['image'] == 'r1.png' and 'gone' in page.text('le-message')
        assert page.js('e.queue.length') == 1
        page.page.locator('[data-action="reload"]').click()  # drops them, as it says
        page.page.wait_for_function('() => { const e = window.landmarkEditor; '
                                    'return e.doc.image !== "r1.png" && !e.navigating; }')
        page.saved()
        assert page.js('e.queue.length') == 0
    finally:
        away.rename(picture)
        restart()
    assert _placed(out / '.drafts' / 'r1.json', [[10, 10]])
    page.close()


def test_an_undo_or_redo_waiting_at_a_restart_is_saved_as_the_page_shows_it(restarts,
                                                                             browser):
    """The server's undo history goes with a restart: an undo (or redo) sent after it would
    undo nothing there, and the page would then take the server's state, its undo silently
    lost. It is sent as the state the page shows instead."""
    url, out, folder, restart = restarts
    draft = out / '.drafts' / 'r2.json'
    page = Page(browser, url, 'r2.png')
    page.click(10, 10)
    page.click(20, 20)
    page.saved()
    restart()
    page.key('z')
    page.saved()
    page.page.wait_for_timeout(300)  # adopted the server's answer
    assert _shows(page, [[10, 10]]) and _placed(draft, [[10, 10]])
    page.click(30, 30)
    page.key('z')
    page.saved()
    assert _placed(draft, [[10, 10]])
    restart()
    page.key('Shift+Z')
    page.saved()
    page.page.wait_for_timeout(300)
    assert _shows(page, [[10, 10], [30, 30]]) and _placed(draft, [[10, 10], [30, 30]])
    page.close()


#: JavaScript: whether the page asks before it is closed (its beforeunload handler cancels).
ASKS_BEFORE_CLOSING_JS = ('() => { const e = new Event("beforeunload", {cancelable: true}); '
                          'window.dispatchEvent(e); return e.defaultPrevented; }')


def test_a_reload_with_an_edit_not_saved_tries_again_and_asks_before_closing(restarts,
                                                                               browser):
    """F5 while an edit cannot be saved (the drafts cannot be written): the reloaded page
    shows that work (the server kept it), keeps trying to save it, and asks before it is
    closed, though it has nothing of its own left to send."""
    url, out, folder, restart = restarts
    drafts = out / '.drafts'
    page = Page(browser, url, 'r3.png')
    page.click(10, 10)
    page.saved()
    assert not page.page.evaluate(ASKS_BEFORE_CLOSING_JS)
    away = out / 'drafts_away'
    drafts.rename(away)
    drafts.write_text('')  # the drafts cannot be written
    try:
        page.click(20, 20)
        page.page.wait_for_function(
            '() => document.getElementById("le-save").dataset.state === "unsaved"')
        page.leaving_unsaved = True
        page.page.reload()
        page.ready()
        page.leaving_unsaved = False
        assert len(point_positions(page.page)) == 2
        assert page.page.locator('#le-save').get_attribute('data-state') == 'unsaved'
        assert page.text('le-save') == 'not saved yet (1)'
        assert page.page.evaluate(ASKS_BEFORE_CLOSING_JS)
    finally:
        drafts.unlink()
        away.rename(drafts)
    page.page.wait_for_function(SAVED_JS, timeout=10000)  # tried again: saved, no edit needed
    assert _placed(drafts / 'r3.json', [[10, 10], [20, 20]])
    assert not page.page.evaluate(ASKS_BEFORE_CLOSING_JS)
    page.close()



def test_work_a_reloaded_page_shows_unsaved_survives_a_restart(restarts, browser):
    """F5 while saves fail: the reloaded page showed the work the server held unsaved, but had
    no edit of it to send; the server restarted, the page opened the image again, sent nothing
    and took the file as it was (a review's repro). It sends what it shows instead."""
    url, out, folder, restart = restarts
    draft = out / '.drafts' / 'r10.json'
    page = Page(browser, url, 'r10.png')
    page.click(10, 10)
    page.saved()
    away = out / 'r10_draft_away'
    draft.rename(away)
    draft.mkdir()  # no draft can be written where a folder is
    page.click(20, 20)
    page.wait_text('le-message', 'not a regular file')
    page.leaving_unsaved = True
    page.page.reload()
    page.ready()
    page.leaving_unsaved = False
    assert page.js('e.queue.length') == 0 and _shows(page, [[10, 10], [20, 20]])
    draft.rmdir()
    away.rename(draft)  # the draft as the page last saw it (tried again only when asked)
    restart()  # the server forgets the tab, and the work it held
    page.key('s')
    page.page.wait_for_function(SAVED_JS)
    page.page.wait_for_timeout(300)  # adopted the server's answer
    assert _shows(page, [[10, 10], [20, 20]]) and _placed(draft, [[10, 10], [20, 20]])
    page.close()


def test_a_tab_in_conflict_takes_no_edit_and_reload_sets_its_change_aside(restarts, browser):
    """Changed in another tab: the page took edit after edit (none could be saved) and Reload
    dropped them all with no copy (a review's repro). It now refuses edits, saying why, and
    Reload keeps the change in .drafts/superseded/."""
    url, out, folder, restart = restarts
    first, second = Page(browser, url, 'r11.png'), Page(browser, url, 'r11.png')
    first.click(10, 10)
    first.saved()
    second.click(40, 40)
    second.page.wait_for_function(
        '() => document.getElementById("le-save").dataset.state === "conflict"')
    second.click(50, 50)
    second.wait_text('le-message', 'changed by someone else')
    assert _shows(second, [[40, 40]]) and second.js('e.queue.length') == 1
    second.leaving_unsaved = True
    second.page.locator('[data-action=reload]').click()
    second.page.wait_for_function(SAVED_JS)
    second.leaving_unsaved = False
    assert _shows(second, [[10, 10]])
    kept, = (out / '.drafts' / 'superseded').glob('r11.*.json')
    assert np.allclose(json.loads(kept.read_text())['faces'][0]['points'][0], [40, 40])
    second.wait_text('le-message', 'set aside')
    # the same after a server restart: the page sends its work again before the Reload (the
    # restarted server had no tab, and the change was dropped unsaid; a review's repro)
    first.page.goto(f'{url}/?image=r13.png')
    first.ready()
    second.page.goto(f'{url}/?image=r13.png')
    second.ready()
    first.click(10, 10)
    first.saved()
    second.click(40, 40)
    second.page.wait_for_function(
        '() => document.getElementById("le-save").dataset.state === "conflict"')
    restart()
    second.leaving_unsaved = True
    second.page.locator('[data-action=reload]').click()
    second.wait_text('le-message', 'set aside')
    second.leaving_unsaved = False
    kept, = (out / '.drafts' / 'superseded').glob('r13.*.json')
    assert np.allclose(json.loads(kept.read_text())['faces'][0]['points'][0], [40, 40])
    first.close()
    second.close()


def test_a_skip_over_a_face_begun_says_where_the_face_went_on_the_next_image(restarts,
                                                                          browser):
    """The skip's answer said where its unfinished face went, and the next image's own words
    replaced it at once (a review's find)."""
    url, out, folder, restart = restarts
    page = Page(browser, url, 'r14.png')
    page.click(10, 10)
    page.click(20, 20)
    page.saved()
    page.page.locator('#le-skip-reason').fill('blurry')
    page.page.locator('#le-skip-reason').press('Enter')
    page.page.wait_for_function('() => window.landmarkEditor.doc.image !== "r14.png"')
    page.wait_text('le-message', 'r14.png: 1 unfinished face (2 points) not in the skipped file')
    assert list((out / '.drafts' / 'superseded').glob('r14.*.json'))
    page.close()


def test_reload_sends_what_the_page_holds_unsent_before_it_drops_it(restarts, browser):
    """Reload over edits the server could not save dropped at once those the page had not
    sent yet (a slow request ahead of them): sent first now, they are set aside with the
    rest in .drafts/superseded/."""
    url, out, folder, restart = restarts
    page = Page(browser, url, 'r12.png')
    page.click(10, 10)
    page.saved()
    draft = out / '.drafts' / 'r12.json'
    draft.unlink()
    draft.mkdir()  # no draft can be written where a folder is
    try:
        page.slow('edit', 1500)
        page.click(20, 20)  # held 1.5 s before it goes
        page.click(30, 30)  # queued behind it
        page.leaving_unsaved = True
        page.page.locator('[data-action=reload]').click()
        page.wait_text('le-message', 'set aside')
        page.leaving_unsaved = False
    finally:
        draft.rmdir()
    kept, = (out / '.drafts' / 'superseded').glob('r12.*.json')
    points = json.loads(kept.read_text())['faces'][0]['points']
    assert np.allclose(points[:3], [[10, 10], [20, 20], [30, 30]])
    page.close()

def test_edit_keys_during_a_press_or_a_drag_take_it_back_first(restarts, browser):
    """A key that edits, pressed while the mouse button is held (a press whose point is
    drawn and not sent yet, or a drag), takes the press or drag back first, as n does: the
    page and the server then make the same edit, and letting go does nothing more."""
    url, out, folder, restart = restarts
    draft = out / '.drafts' / 'r4.json'
    page = Page(browser, url, 'r4.png')
    page.click(10, 10)
    page.click(20, 20)

    def in_step(points: list) -> bool:
        page.saved()
        page.page.wait_for_timeout(300)  # the server's answer adopted
        return _shows(page, points) and _placed(draft, points)

    assert in_step([[10, 10], [20, 20]])
    # z while a press is held: the last edit (point 1) is undone on both sides
    page.page.mouse.move(*page.at(40, 40))
    page.page.mouse.down()
    page.key('z')
    page.page.mouse.up()
    assert in_step([[10, 10]])
    # x while a press is held: the point the press would have placed (1) is absent
    page.page.mouse.down()
    page.key('x')
    page.page.mouse.up()
    assert in_step([[10, 10]])
    assert json.loads(draft.read_text())['faces'][0]['visibility'][:3] == [2, 0, 2]
    page.key('x')  # unset
    page.click(20, 20)
    assert in_step([[10, 10], [20, 20]])
    # z while point 0 is dragged: the drag is taken back, z undoes point 1; z again, the x
    # before it (point 1 absent again), on both sides
    start = page.at(10, 10)
    page.page.mouse.move(*start)
    page.page.mouse.down()
    page.page.mouse.move(start[0] + 30, start[1] + 30, steps=4)
    page.key('z')
    page.page.mouse.up()
    assert in_step([[10, 10]])
    page.key('z')
    assert in_step([[10, 10]]) and page.js('e.face.visibility[1]') == 0
    assert json.loads(draft.read_text())['faces'][0]['visibility'][1] == 0
    page.close()


def test_escape_while_a_box_is_drawn_stops_drawing_it(restarts, browser):
    """As the help says: Escape stops drawing a box, the one being dragged too (letting go
    then sets no box, predicts nothing)."""
    url, out, folder, restart = restarts
    page = Page(browser, url, 'r5.png')
    page.key('b')
    start = page.at(20, 20)
    page.page.mouse.move(*start)
    page.page.mouse.down()
    page.page.mouse.move(start[0] + 80, start[1] + 60, steps=4)
    assert page.page.locator('#le-overlay .le-box').count() == 1
    page.key('Escape')
    assert page.page.locator('#le-overlay .le-box').count() == 0
    page.page.mouse.up()
    page.page.wait_for_timeout(300)
    assert page.js('[e.boxMode, e.face.bbox, e.queue.length, e.undoStack.length]') == [
        False, None, 0, 0]
    assert page.page.locator('#le-overlay .le-box').count() == 0
    assert not (out / '.drafts' / 'r5.json').exists() and not (out / 'r5.json').exists()
    page.close()


def test_a_back_refused_for_unsaved_edits_leaves_the_address_naming_the_image_shown(
        restarts, browser):
    url, out, folder, restart = restarts
    page = Page(browser, url, 'r6.png')
    page.key('n')
    page.wait_image('r7.png')
    page.page.route('**/annotator/api/edit', lambda route: route.abort())
    page.click(10, 10)
    page.wait_text('le-save', 'not saved yet (1)')
    page.page.go_back()  # refused: the edit is not saved yet
    page.wait_text('le-message', 'not saved yet: your edits are kept in this page')
    page.page.wait_for_function('() => !window.landmarkEditor.navigating')
    assert page.state['image'] == 'r7.png' and 'image=r7.png' in page.page.url
    page.page.unroute('**/annotator/api/edit')
    page.saved()
    assert _placed(out / '.drafts' / 'r7.json', [[10, 10]])
    page.close()


def test_a_click_beside_the_picture_places_nothing_and_says_what_to_do(restarts, browser):
    """A click just outside the picture placed nothing without a word (a point of a face cut
    off by the frame looked lost)."""
    url, out, folder, restart = restarts
    page = Page(browser, url, 'r8.png')
    width, height = page.size()
    page.key('-')  # zoomed out: the picture has room around it in the view
    page.page.wait_for_function(
        '() => window.landmarkEditor.view.s < window.landmarkEditor.view.fit')
    page.click(width / 2, height + 2)  # 2 image px below the bottom edge
    page.page.wait_for_timeout(200)
    assert page.text('le-message') == (
        'nothing placed: 0 goes on the picture; for a point cut off by the frame press x '
        '(absent), or o (occluded) and click at the edge')
    assert page.js('[e.seq, e.face.points[0]]') == [0, None]
    page.close()


def test_a_click_on_the_selected_point_deselects_it_without_moving_it(restarts, browser):
    url, out, folder, restart = restarts
    draft = out / '.drafts' / 'r8.json'
    page = Page(browser, url, 'r8.png')
    page.click(10, 10)
    page.click(40, 30)
    page.saved()
    row = page.page.locator('#le-points [data-index="0"]')
    row.click()  # selects point 0
    assert page.js('e.selected') == 0
    page.click(11, 11)  # on point 0, within its reach: deselects it, moves nothing
    page.page.wait_for_timeout(300)
    assert page.js('[e.selected, e.queue.length, e.undoStack.length]') == [None, 0, 2]
    page.saved()
    assert _shows(page, [[10, 10], [40, 30]]) and _placed(draft, [[10, 10], [40, 30]])
    row.click()  # selected again, a click elsewhere puts it there
    page.click(60, 50)
    page.saved()
    assert _shows(page, [[60, 50], [40, 30]]) and _placed(draft, [[60, 50], [40, 30]])
    page.close()


def test_a_save_that_fails_the_same_way_each_time_is_tried_again_when_asked(restarts,
                                                                            browser):
    """A folder where the image's annotation file goes (made after the image opened): the
    edit is not saved, the page says why, and sends it again when asked (s), not every 3 s for
    ever."""
    url, out, folder, restart = restarts
    path = out / 'r9.json'
    save_annotation(path, ImageAnnotation(
        'r9.png', 200, 150, [Face([(5.0 + k, 6.0 + k) for k in range(28)])]))
    restart()
    page = Page(browser, url, 'r9.png')
    path.unlink()  # the same failure on every save: no file can be written where a folder is
    path.mkdir()
    page.slow('edit', 0, 0)  # logs the requests from here on
    page.page.locator('#le-points [data-index="0"]').click()
    page.click(50, 50)
    page.wait_text('le-message', 'not a regular file')
    assert page.page.locator('#le-save').get_attribute('data-state') == 'unsaved'
    page.page.wait_for_timeout(4000)
    assert page.requests('edit') == 1, 'sent again unasked'
    page.key('s')
    page.page.wait_for_function('() => window.apiLog.filter(r => r[0] === "edit").length === 2')
    page.wait_text('le-message', 'not a regular file')
    page.page.wait_for_timeout(3500)
    assert page.requests('edit') == 2 and page.js('e.queue.length') == 1
    assert page.page.locator('#le-save').get_attribute('data-state') == 'unsaved'
    assert path.is_dir() and not any(path.iterdir())
    page.close()


def test_predict_is_pre_annotated_while_the_person_works(images, browser, trained, tmp_path):
    folder, out = tmp_path / 'images', tmp_path / 'out'
    folder.mkdir()
    for name in ('face_0.png', 'face_1.png'):
        shutil.copy(images[0] / name, folder / name)
    port = free_port()
    proc = _start(folder, out, port, tmp_path / 'server.log', '--checkpoint',
                  str(trained[0] / 'epoch_1.pth'), '--config', str(MAIN_CONFIG))
    try:
        page = Page(browser, f'http://127.0.0.1:{port}', 'face_0.png')
        button = page.page.locator('[data-action="predict"]')
        ready = '() => document.querySelector(\'[data-action="predict"]\').dataset.prediction ' \
            '=== "ready"'
        page.page.wait_for_function(ready, timeout=300_000)  # the page asks until it is
        assert button.inner_text() == 'Predict ✓' and 'ready' in button.get_attribute('title')
        assert button.evaluate('e => e.scrollWidth <= e.clientWidth')  # the ✓ is not cut off
        page.click(60, 60)  # the person starts by hand: Predict stays ready
        page.saved()
        assert button.get_attribute('data-prediction') == 'ready'
        page.key('n')
        page.wait_image('face_1.png')
        page.page.wait_for_function(ready, timeout=300_000)
        assert not (out / 'face_1.json').exists()  # pre-annotation wrote nothing
        page.key('m')
        page.wait_text('le-message', 'pre-annotated')
        assert page.page.locator('.landmark-point[data-predicted="1"]').count() == 28
        page.saved()
        assert load_annotation(out / 'face_1.json').status == 'predicted'
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode in (0, -15), (tmp_path / 'server.log').read_text()[-3000:]


def test_the_benchmark_bot_does_a_face_from_scratch_and_by_review(browser, tmp_path):
    images, out, truth = review_folder(tmp_path, faces=1)
    server = launch(Annotator(AnnotationSession(images, out, annotator='bot')),
                    port=free_port(), block=False)
    try:
        result = scratch_versus_review(browser, server.url, out, truth)
    finally:
        server.close()
    scratch, review = result['face_from_scratch'], result['face_review']
    assert scratch['actions'] == 28 and scratch['max_error_px'] < 0.05
    assert review['actions'] == 9  # 8 drags and Enter
    assert review['max_error_px'] <= 1.5 + 0.05  # the 20 points left as the model put them
    reviewed = load_annotation(out / 'review_0.json')
    assert reviewed.status == 'annotated' and reviewed.meta['reviewed_by'] == 'bot'



def test_the_benchmark_edits_times_and_goes_on_with_n(browser, tmp_path, monkeypatch):
    """The annotator benchmark's editing part runs through (a change of the editor's gestures
    once left its edits undone and the benchmark stopped at its 30 s wait): its edits reach
    the disk where it put them and n shows each next large picture."""
    monkeypatch.setattr(annotator_benchmark, 'SECONDS_ON_PICTURE', 0.3)
    size = (1600, 1200)
    images, out, points = annotator_benchmark.editing_folder(tmp_path, size, 300, 12)
    server = launch(Annotator(AnnotationSession(images, out)), port=free_port(), block=False)
    try:
        result = annotator_benchmark.editing_in_browser(browser, server.url, points, size, out)
    finally:
        server.close()
    assert result['click_to_draw_ms']['n'] == 2 * 28
    assert result['edit_to_disk_ms']['n'] == 10
    assert result['next_large_ms']['n'] == annotator_benchmark.NEXT_LARGE
    assert result['next_large_ms']['p50'] > 0
    saved = load_annotation(out / '0_large.json').faces[0].landmarks
    # ten moves of 8 px left and right from the true place: back at it, 5 px lower
    assert np.allclose(saved[27], points[27] + (0, 5), atol=0.01)
    assert np.allclose(saved[:27], points[:27], atol=0.01)

@pytest.fixture
def serve(tmp_path):
    """``serve(predictor=None)`` starts the annotator (in this process, no pre-annotation) on
    two plain pictures a.png and b.png (200x150), with ``predictor`` as its model if given,
    and returns (url, output dir); each server started is stopped after the test."""
    servers = []

    def start(predictor=None) -> tuple[str, Path]:
        folder, out = tmp_path / 'images', tmp_path / 'landmarks'
        folder.mkdir()
        for k, name in enumerate(('a.png', 'b.png')):
            cv2.imwrite(str(folder / name), np.full((150, 200, 3), 80 + 40 * k, np.uint8))
        annotator = Annotator(AnnotationSession(folder, out, annotator='e2e'), predictor,
                              pre_annotate=0)
        servers.append(launch(annotator, port=free_port(), block=False))
        return servers[-1].url, out

    yield start
    for server in servers:
        server.close()


def test_a_drag_or_a_click_during_a_predict_edits_nothing_and_says_why(serve, browser):
    """A Predict's answer replaces the face's points: a point dragged meanwhile was committed
    on release, onto predicted points never seen, and a click was dropped without a word.
    While a Predict is under way a drag pans, and a click says why it placed nothing."""
    from test_annotate_app import FakePredictor
    model = FakePredictor(held=True)  # answers the Predict once released
    try:
        url, out = serve(model)
        page = Page(browser, url, 'a.png')
        page.click(30, 30)
        page.saved()
        page.key('m')  # over a point placed by hand: asked for twice (see the next test)
        page.key('m')
        page.page.wait_for_function('() => window.landmarkEditor.busy')
        view = page.js('[e.view.tx, e.view.ty]')
        start = page.at(30, 30)  # on point 0
        page.page.mouse.move(*start)
        page.page.mouse.down()
        page.page.mouse.move(start[0] + 40, start[1] + 25, steps=4)
        page.page.mouse.up()
        panned = [view[0] + 40, view[1] + 25]
        assert page.js('[e.view.tx, e.view.ty]') == pytest.approx(panned, abs=1)
        page.click(60, 60)
        assert page.text('le-message') == 'predicting — wait a moment'
        assert page.js('[e.seq, e.gesture]') == [2, None]  # the point, the Predict: no more
        model.release.set()
        page.page.wait_for_function('() => !window.landmarkEditor.busy')
        page.saved()
        assert page.js('e.applied') == 2
        assert _shows(page, [[k, 2 * k] for k in range(28)])  # the model's, on the whole image
    finally:
        model.release.set()
    page.close()


def test_predict_over_points_placed_by_hand_is_asked_for_twice(serve, browser):
    """A stray m (beside n) replaced a finished annotation with the model's points, saved as
    predicted at once. Over a face with points placed by hand, the first m only says what a
    second would do; an edit between (or another face) takes that back; over an empty face or a
    model's points, m predicts at once."""
    from test_annotate_app import FakePredictor
    url, out = serve(FakePredictor())
    page = Page(browser, url, 'a.png')
    page.key('m')  # nothing placed: predicts at once
    page.page.wait_for_function('() => window.landmarkEditor.edit.status === "predicted"')
    page.saved()
    assert page.js('e.face.predicted') is True
    page.key('m')  # the model's points again: at once too
    page.saved()
    assert page.js('[e.applied, e.face.predicted]') == [2, True]
    page.key('Enter')  # accepted: the points are an annotation now
    page.saved()
    assert load_annotation(out / 'a.json').status == 'annotated'
    page.key('m')
    assert page.text('le-message') == ('Predict replaces the 28 points you placed on this face '
                                       "with the model's: press m (or Predict) again to do it")
    # m held down: its repeats are no second press (they replaced the face; a review's find)
    page.page.evaluate('() => { for (let k = 0; k < 3; k++) document.dispatchEvent('
                       'new KeyboardEvent("keydown", {key: "m", code: "KeyM", repeat: true})); }')
    page.page.wait_for_timeout(300)
    assert page.js('[e.busy, e.queue.length, e.applied]') == ['', 0, 3]
    page.key('n')  # what the stray m was beside: leaves the annotation as it was
    page.wait_text('le-name', 'b.png')
    assert load_annotation(out / 'a.json').status == 'annotated'
    page.click(20, 20)  # one point by hand on b.png; an edit between the two m's disarms
    page.saved()
    page.key('m')
    page.click(40, 40)
    page.saved()
    page.key('m')
    assert page.text('le-message').startswith('Predict replaces the 2 points you placed')
    page.key('m')
    page.page.wait_for_function('() => window.landmarkEditor.face.predicted')
    page.saved()
    assert load_annotation(out / 'b.json').status == 'predicted'
    page.close()


def test_an_image_left_and_come_back_to_is_undone_as_it_was_left(serve, browser):
    """Leaving an image dropped its undo history on both sides: Predict over a finished
    face, then n, left the hand-made points beyond reach. Coming back (p), Ctrl+Z undoes it,
    and Ctrl+Shift+Z redoes it, as before leaving; after Reload there is nothing to undo."""
    from test_annotate_app import FakePredictor
    url, out = serve(FakePredictor())
    page = Page(browser, url, 'a.png')
    model = [[k, 2 * k] for k in range(28)]
    page.key('m')
    page.page.wait_for_function('() => window.landmarkEditor.face.predicted')
    page.key('Enter')
    page.page.locator('#le-points [data-index="5"]').click()  # selected: a click re-places it
    page.click(100, 100)
    page.saved()
    corrected = [p if k != 5 else [100, 100] for k, p in enumerate(model)]
    assert _shows(page, corrected) and load_annotation(out / 'a.json').status == 'annotated'
    page.key('m')
    page.key('m')  # asked for twice: the model's points over the corrected face
    page.page.wait_for_function('() => window.landmarkEditor.face.predicted')
    page.saved()
    page.key('n')
    page.wait_text('le-name', 'b.png')
    assert page.js('[e.undoStack.length, e.redoStack.length]') == [0, 0]
    page.key('p')
    page.wait_text('le-name', 'a.png')
    assert _shows(page, model) and page.js('e.undoStack.length') == 4
    page.key('Control+z')
    page.saved()
    assert _shows(page, corrected)
    saved = load_annotation(out / 'a.json')
    assert saved.status == 'annotated' and saved.faces[0].landmarks[5] == (100, 100)
    page.key('Control+Shift+Z')
    page.saved()
    assert _shows(page, model) and load_annotation(out / 'a.json').status == 'predicted'
    page.key('Control+z')
    page.saved()
    assert load_annotation(out / 'a.json').faces[0].landmarks[5] == (100, 100)
    page.page.locator('#landmark-editor [data-action="reload"]').click()
    page.page.wait_for_function('() => window.landmarkEditor.doc.applied === 0')
    assert page.js('[e.undoStack.length, e.redoStack.length]') == [0, 0]
    page.close()


def test_s_during_a_conflict_keeps_saying_whose_change_it_is(serve, browser):
    """s pressed while another tab's change stands in the way replaced the server's words
    (which file, changed by whom, Reload) with a bare 'not saved yet'."""
    url, out = serve()
    first, second = Page(browser, url, 'a.png'), Page(browser, url, 'a.png')
    first.click(10, 10)
    first.saved()
    second.click(20, 20)
    second.page.wait_for_function('() => window.landmarkEditor.doc.conflict')
    said = second.text('le-message')
    assert 'was changed by someone else' in said
    second.key('s')
    second.page.wait_for_function('() => !window.landmarkEditor.inFlight')
    second.page.wait_for_timeout(300)
    assert second.text('le-message') == said
    second.key('n')  # refused, in the same words
    second.page.wait_for_function('() => !window.landmarkEditor.navigating')
    assert second.text('le-message') == said and second.state['image'] == 'a.png'
    first.close()
    second.close()


def test_a_tab_the_server_forgot_among_many_is_not_told_it_restarted(serve, browser):
    """The server keeps MAX_TABS tabs: one left idle while more pages were loaded is forgotten
    (its image opened again, its edits sent again). It was told the server restarted."""
    from animal_landmarks_mm.annotate_app import MAX_TABS
    url, out = serve()
    page = Page(browser, url, 'a.png')
    page.click(10, 10)
    page.saved()
    for k in range(MAX_TABS):  # other page loads
        body = json.dumps(dict(tab=f'other-tab-{k:04d}', go='start')).encode()
        request = urllib.request.Request(f'{url}/annotator/api/open', data=body,
                                         headers={'Content-Type': 'application/json'})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
    page.click(20, 20)
    page.wait_text('le-message', "the server lost this tab's image (restarted, or too many "
                                 'tabs): sending 1 unsaved edits again')
    page.saved()
    assert _placed(out / '.drafts' / 'a.json', [[10, 10], [20, 20]])
    page.close()


def test_a_picture_shown_in_another_size_is_an_image_error(serve, browser):
    """A picture the browser shows in another size than training decodes (another EXIF
    orientation) was stretched over the image's size with a warning, and each click placed
    a point elsewhere than the person saw it: it is not shown, and takes no click."""
    url, out = serve()
    other = cv2.imencode('.png', np.full((200, 150, 3), 60, np.uint8))[1].tobytes()  # 150x200
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    page.route('**/annotator/image/**', lambda route: route.fulfill(
        body=other, content_type='image/png'))
    page.goto(url + '/?image=a.png')
    page.wait_for_function(EDITOR_READY_JS)
    message = page.locator('#le-message').inner_text()
    assert message == ('cannot show a.png: the browser shows it as 150x200, training decodes '
                       'it as 200x150 (EXIF orientation?) (skip it, or mend the file and '
                       'Reload)')
    image = page.locator('#landmark-image')
    assert image.get_attribute('src') is None and image.evaluate(
        'e => getComputedStyle(e).visibility') == 'hidden'
    box = page.locator('#le-viewport').evaluate(RECT_JS)
    page.mouse.click(box[0] + box[2] / 2, box[1] + box[3] / 2)
    assert page.evaluate('() => window.landmarkEditor.queue.length') == 0
    assert not (out / '.drafts' / 'a.json').exists()
    page.close()


def test_zoom_reload_and_ctrl_s_with_no_image_or_in_a_text_field(serve, browser):
    """+, - and Reload before any image is open threw (a TypeError on the missing image);
    Ctrl+S in a text field went to the browser (its Save Page dialog), not the editor."""
    url, out = serve()
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    errors = []
    page.on('pageerror', lambda error: errors.append(str(error)))
    page.route('**/annotator/api/open', lambda route: route.abort())  # no image opens
    page.goto(url + '/')
    page.wait_for_function('() => { const root = document.getElementById("landmark-editor"); '
                           'return !!root && root.dataset.ready === "1"; }')
    assert page.evaluate('() => window.landmarkEditor.doc') is None
    page.keyboard.press('+')
    page.keyboard.press('-')
    page.locator('[data-action="reload"]').click()
    page.wait_for_timeout(300)
    assert errors == []
    assert page.locator('#le-message').inner_text() == 'no image open yet: nothing to reload'
    page.unroute('**/annotator/api/open')
    page.goto(url + '/?image=a.png')
    page.wait_for_function(EDITOR_READY_JS)
    page.evaluate('() => window.addEventListener("keydown", (e) => { '
                  'window.lastKeyTaken = e.defaultPrevented; })')
    page.locator('#le-goto-input').focus()
    page.keyboard.press('Control+s')
    assert page.evaluate('() => window.lastKeyTaken') is True
    assert page.locator('#le-message').inner_text() == 'nothing to save: every edit is saved'
    assert errors == []
    page.close()
