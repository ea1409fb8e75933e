"""The annotator end to end: tools/annotate_landmarks.py served on 127.0.0.1, driven by a real
headless Chromium through Playwright, checked on the files it writes."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from animal_landmarks_mm.annotate_app import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    PICTURE_GEOMETRY_JS,
    PICTURE_REDRAWN_JS,
    screen_position,
)
from animal_landmarks_mm.annotation import load_annotation
from animal_landmarks_mm.synthetic import render_face_image
from conftest import REPO

#: The README's picture of the tool (resources/annotator.png) is a copy of this.
SCREENSHOT = REPO / 'work_dirs' / 'screenshots' / 'annotator.png'

sync_api = pytest.importorskip('playwright.sync_api',
                               reason='playwright is not installed (make setup installs it)')
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f'{CHROMIUM} not found: tools/setup_env.sh installs the Debian chromium package '
                'where it can (root or sudo); it could not here', allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def images(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Three synthetic characters (one small, enlarged for display) and their true points."""
    folder = tmp_path_factory.mktemp('annotator') / 'images'
    folder.mkdir()
    truth = {}
    for k, (w, h) in enumerate([(640, 480), (400, 300), (700, 520)]):
        image, points, _ = render_face_image(np.random.default_rng(k + 20), w, h)
        name = f'face_{k}.png'
        cv2.imwrite(str(folder / name), image)
        truth[name] = points
    return folder, truth


@pytest.fixture(scope='module')
def server(images):
    """The annotator on a free port; yields (url, output dir)."""
    folder, _ = images
    out = folder.parent / 'landmarks'
    port = _free_port()
    log = folder.parent / 'server.log'
    with open(log, 'w') as log_file:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / 'tools' / 'annotate_landmarks.py'), '--image-dir',
             str(folder), '--output-dir', str(out), '--port', str(port), '--annotator', 'e2e'],
            stdout=log_file, stderr=subprocess.STDOUT, cwd=folder.parent,
            env=dict(os.environ, PYTHONWARNINGS='ignore'))
    url = f'http://127.0.0.1:{port}'
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f'the annotator did not start:\n{log.read_text()[-3000:]}')
            time.sleep(0.5)
    yield url, out
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope='module')
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


class Page:
    """The annotator's page, with clicks given in original image pixels."""

    def __init__(self, page, image_size: tuple[int, int]):
        self.page = page
        self.image_size = image_size

    def picture_src(self) -> str:
        return self.page.locator('#picture img').get_attribute('src')

    def wait_redraw(self, old_src: str) -> None:
        self.page.wait_for_function(PICTURE_REDRAWN_JS, arg=old_src, timeout=20000)

    def click(self, x: float, y: float) -> None:
        old = self.picture_src()
        geometry = self.page.locator('#picture img').evaluate(PICTURE_GEOMETRY_JS)
        self.page.mouse.click(*screen_position((x, y), self.image_size, geometry))
        self.wait_redraw(old)

    def key(self, key: str, redraw: bool = True) -> None:
        old = self.picture_src()
        self.page.locator('body').press(key)
        if redraw:
            self.wait_redraw(old)

    def text(self, elem_id: str) -> str:
        return self.page.locator(f'#{elem_id}').inner_text()

    def wait_text(self, elem_id: str, text: str) -> None:
        self.page.wait_for_function(
            '([id, text]) => document.getElementById(id).innerText.includes(text)',
            arg=[elem_id, text], timeout=20000)


def _open(browser, url: str, size: tuple[int, int]) -> Page:
    page = browser.new_page(viewport={'width': 1600, 'height': 1000})
    page.goto(url)
    page.wait_for_selector('#picture img', timeout=30000)
    page.wait_for_function('() => document.querySelector("#picture img").complete')
    return Page(page, size)


def test_annotate_save_reload_and_correct_in_a_real_browser(server, images, browser):
    url, out = server
    folder, truth = images
    points = truth['face_0.png']
    page = _open(browser, url, (640, 480))
    assert 'face_0.png' in page.text('header') and '0 of 3 done' in page.text('header')
    assert '0: temple, image-left' in page.text('prompt')

    for k, (x, y) in enumerate(points):
        assert f'next: {k}:' in page.text('prompt')
        page.click(x, y)
    assert 'complete' in page.text('prompt')
    page.key('s', redraw=False)  # the last click already saved it; Save says so
    page.wait_text('message', 'nothing to save')
    saved = load_annotation(out / 'face_0.json')
    got = np.array(saved.faces[0].landmarks)
    error = np.abs(got - points).max()
    assert error <= 1.0, f'clicked points saved {error:.2f} px from where they were clicked'
    assert saved.meta['annotator'] == 'e2e' and saved.width == 640 and saved.height == 480
    assert '1 of 3 done' in page.text('header')
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.page.screenshot(path=str(SCREENSHOT))

    # A fresh page starts at the next image without annotation; go back with the left arrow.
    page.page.close()
    page = _open(browser, url, (640, 480))
    assert 'face_1.png' in page.text('header')
    page.key('ArrowLeft')
    assert 'face_0.png' in page.text('header') and 'annotated' in page.text('header')
    # Correct point 12: click on it (picks it), then click its new place.
    x12, y12 = got[12]
    page.click(x12, y12)
    assert 'correcting: 12: left eye, upper lid, top' in page.text('prompt')
    page.click(x12 + 30, y12 - 20)
    edited = np.array(load_annotation(out / 'face_0.json').faces[0].landmarks)
    assert np.abs(edited[12] - (x12 + 30, y12 - 20)).max() <= 1.0
    assert np.array_equal(np.delete(edited, 12, 0), np.delete(got, 12, 0))
    page.page.close()


def test_small_image_enlarged_occluded_absent_and_skip(server, images, browser):
    url, out = server
    folder, truth = images
    page = _open(browser, url, (400, 300))
    assert 'face_1.png' in page.text('header')
    natural = page.page.locator('#picture img').evaluate('e => e.naturalWidth')
    assert natural > 400  # shown enlarged, and clicks still land on original pixels
    points = truth['face_1.png']
    page.key('o', redraw=False)  # point 0 occluded: placed by estimate
    page.wait_text('prompt', 'occluded: place it by estimate')
    page.click(*points[0])
    page.key('x', redraw=False)  # point 1 absent
    page.wait_text('prompt', 'next: 2:')
    for x, y in points[2:]:
        page.click(x, y)
    saved = load_annotation(out / 'face_1.json').faces[0]
    assert saved.visibility[:3] == [1, 0, 2] and saved.landmarks[1] is None
    assert np.abs(np.array(saved.landmarks[2:]) - points[2:]).max() <= 1.0
    # face_2: skipped as unusable; the tool moves on and the converter will leave it out
    page.key('u')
    assert 'face_2.png' in page.text('header')
    page.page.locator('#btn-skip').click()
    page.wait_text('header', '3 of 3 done')
    assert load_annotation(out / 'face_2.json').status == 'skipped'
    page.page.close()


def test_only_rendered_pictures_are_served(server, images):
    url, _ = server
    folder, _ = images
    for path in (folder / 'face_0.png', Path('/etc/passwd'), REPO / 'README.md'):
        for route in ('/gradio_api/file=', '/file='):
            try:
                with urllib.request.urlopen(f'{url}{route}{path}', timeout=10) as response:
                    status = response.status
            except urllib.error.HTTPError as e:
                status = e.code
            assert status >= 400, f'{route}{path} was served'
