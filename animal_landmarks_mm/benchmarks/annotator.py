"""The annotator's point editor in headless Chromium: click to draw, opening a large picture,
an edit reaching the disk, and opening a large folder.

It prints numbers; it is not a timed test. The conditions (cores, other work running) matter:
say them with the numbers.
"""
from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def _ms(values) -> dict:
    values = np.asarray(values, float)
    return dict(p50=round(float(np.median(values)), 1),
                p95=round(float(np.percentile(values, 95)), 1), n=int(values.size))


def _picture(size: tuple[int, int], face_side: int, seed: int = 5):
    """A large picture with a small character in it, as on image boards, and its points."""
    from ..synthetic import render_face_image
    rng = np.random.default_rng(seed)
    face, points, _ = render_face_image(rng, face_side, face_side)
    picture = np.empty((size[1], size[0], 3), np.uint8)
    picture[:] = (np.linspace(60, 190, size[0])[None, :, None]).astype(np.uint8)  # a gradient
    x0, y0 = int(size[0] * 0.6), int(size[1] * 0.2)
    picture[y0:y0 + face_side, x0:x0 + face_side] = face
    return picture, points + (x0, y0)


def _folder(root: Path, size: tuple[int, int], face_side: int, folder_images: int
            ) -> tuple[Path, Path, np.ndarray]:
    """``folder_images`` images (one large JPEG, the others hard links of a small PNG) and an
    output folder where every other small image already has its annotation file."""
    import cv2

    from ..annotation import Face, ImageAnnotation, save_annotation
    images, out = root / 'images', root / 'out'
    images.mkdir()
    picture, points = _picture(size, face_side)
    cv2.imwrite(str(images / '0_large.jpg'), picture, [cv2.IMWRITE_JPEG_QUALITY, 92])
    cv2.imwrite(str(images / '1_small.png'), picture[:64, :64])
    for i in range(folder_images - 2):
        os.link(images / '1_small.png', images / f'img_{i:05d}.png')
    template = ImageAnnotation('x', 64, 64, [Face([(1.0 + k, 2.0 + k) for k in range(28)])])
    for i in range(0, folder_images - 2, 2):
        template.image = f'img_{i:05d}.png'
        save_annotation(out / f'img_{i:05d}.json', template)
    return images, out, points


def _in_browser(url: str, points: np.ndarray, size: tuple[int, int], out: Path) -> dict:
    """Open the large picture, click its 28 points at fit and 28 zoomed on the face, time an
    edit to the disk."""
    from playwright.sync_api import sync_playwright

    from ..testing.browser import (
        EDITOR_READY_JS,
        RECT_JS,
        SAVED_JS,
        launch_chromium,
        screen_position,
    )
    result = {}
    with sync_playwright() as playwright, launch_chromium(playwright) as context:
        page = context.new_page()
        page.set_default_timeout(60000)
        page.goto(f'{url}/?image=1_small.png')
        page.wait_for_function(EDITOR_READY_JS)
        opened = []
        for name in ('0_large.jpg', '1_small.png', '0_large.jpg'):  # cold, then cached
            before = len(page.evaluate('window.landmarkEditor.openTimes'))
            page.evaluate('name => window.landmarkEditor.go({image: name})', name)
            page.wait_for_function(f'n => window.landmarkEditor.openTimes.length > {before} && '
                                   'window.landmarkEditor.doc.image === n', arg=name)
            if name == '0_large.jpg':
                opened.append(page.evaluate('window.landmarkEditor.openTimes')[-1])
        result['open_large_ms'] = dict(first=round(opened[0], 1), again=round(opened[1], 1))
        page.evaluate('() => { window.landmarkEditor.timings.length = 0; '
                      'window.landmarkEditor.paintTimings.length = 0; }')

        def click(point) -> None:
            rect = page.locator('#landmark-image').evaluate(RECT_JS)
            page.mouse.click(*screen_position(point, size, rect))

        for point in points:  # at fit: the face is small on screen
            click(point)
        page.wait_for_function(SAVED_JS)
        at_fit = page.evaluate('window.landmarkEditor.timings.slice()')
        page.keyboard.press('f')  # zoom on the face
        page.click('[data-action="clear"]')
        page.wait_for_function(SAVED_JS)
        count = len(page.evaluate('window.landmarkEditor.timings'))
        for point in points:
            click(point)
        page.wait_for_function(SAVED_JS)
        timings = page.evaluate('window.landmarkEditor.timings.slice()')
        painted = page.evaluate('window.landmarkEditor.paintTimings.slice()')
        result.update(click_to_draw_ms=_ms(timings), click_to_paint_ms=_ms(painted),
                      click_to_draw_at_fit_ms=_ms(at_fit),
                      click_to_draw_zoomed_ms=_ms(timings[count:]),
                      zoom=round(page.evaluate('window.landmarkEditor.view.s'), 2))
        # an edit to the disk: drag-free moves of point 27 (select it, click its new place)
        target = out / '0_large.json'
        seconds, current = [], points[27]
        for k in range(10):
            page.keyboard.press('Escape')
            rect = page.locator('#landmark-image').evaluate(RECT_JS)
            page.mouse.click(*screen_position(current, size, rect))  # selects it
            new = current = current + (1.0 if k % 2 else -1.0, 0.5)
            before = time.perf_counter()
            click(new)
            while True:
                try:
                    saved = json.loads(target.read_text())['faces'][0]['landmarks'][27]
                except (OSError, ValueError, KeyError, IndexError):
                    saved = None
                if saved is not None and abs(saved[0] - new[0]) < 0.01:
                    break
                if time.perf_counter() - before > 30:
                    raise TimeoutError('an edit did not reach the disk in 30 s')
                time.sleep(0.002)
            seconds.append(time.perf_counter() - before)
        result['edit_to_disk_ms'] = _ms(np.array(seconds) * 1000)
    return result


def annotator_redraw(size: tuple[int, int] = (4000, 3000), face_side: int = 420,
                     folder_images: int = 5000) -> dict:
    """The annotator's point editor on a ``size`` JPEG with a small face, in a folder of
    ``folder_images`` images (half of them annotated).

    ``open_folder_ms``: the session opening the folder (listing it, reading every annotation
    file once to know which is whose, counting progress); ``open_large_ms``: in headless
    Chromium, asking for the picture to its being decoded and shown (first time, and again
    from the browser's cache); ``click_to_draw_ms``: pointerdown to the next animation frame
    after the point is in the page, measured in the page (``performance.now()``), 28 clicks
    at fit and 28 zoomed on the face; ``click_to_paint_ms``: to the task after that frame;
    ``edit_to_disk_ms``: a click to the file holding the edit.
    """
    from ..annotate import AnnotationSession
    from ..annotate_app import Annotator, launch
    from ..testing.browser import chromium_available, free_port

    with tempfile.TemporaryDirectory() as tmp:
        images, out, points = _folder(Path(tmp), size, face_side, folder_images)
        start = time.perf_counter()
        session = AnnotationSession(images, out)
        progress = session.progress()
        open_folder = time.perf_counter() - start
        result = dict(image=f'{size[0]}x{size[1]} JPEG, face {face_side} px',
                      folder_images=folder_images, annotation_files=progress.done,
                      open_folder_ms=round(open_folder * 1000, 1), cpus=os.cpu_count())
        if chromium_available():
            server = launch(Annotator(session), port=free_port(), block=False)
            try:
                result.update(_in_browser(server.url, points, size, out))
            finally:
                server.close()
        else:
            result['browser'] = 'skipped: /usr/bin/chromium not found'
        # this process's peak (the browser is another process; no GPU is used)
        result['peak_rss_mib'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result
