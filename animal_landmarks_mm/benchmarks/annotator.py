"""The annotator's point editor in headless Chromium: click to draw, opening a large picture,
an edit reaching the disk, opening a large folder, and one face annotated from scratch versus
reviewed from a model's prediction, as a bot user does it.

It prints numbers; it is not a timed test. The conditions (cores, other work running) matter:
say them with the numbers. A bot's time is machine time: a person's time is in the number of
actions (clicks, drags, keys) it took, each of which a person has to aim.
"""
from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from ..schema import NUM_KEYPOINTS


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


#: Large pictures after ``0_large.jpg`` in the benchmark's folder, each opened with ``n`` while
#: the one before is shown (the page decodes the next picture ahead).
NEXT_LARGE = 5
#: How long the benchmark's user works on a picture before ``n`` (s): time for the page to fetch
#: and decode the next one, as a person takes seconds per face.
SECONDS_ON_PICTURE = 3.0


def _next_large_names() -> list[str]:
    return [f'0_next_{k}.jpg' for k in range(1, NEXT_LARGE + 1)]


def editing_folder(root: Path, size: tuple[int, int], face_side: int, folder_images: int
            ) -> tuple[Path, Path, np.ndarray]:
    """``folder_images`` images (``0_large.jpg`` and, after it in the folder's order,
    :data:`NEXT_LARGE` more large JPEGs; the others hard links of a small PNG) and an output
    folder where every other small image already has its annotation file."""
    import cv2

    from ..annotation import Face, ImageAnnotation, save_annotation
    images, out = root / 'images', root / 'out'
    images.mkdir()
    picture, points = _picture(size, face_side)
    cv2.imwrite(str(images / '0_large.jpg'), picture, [cv2.IMWRITE_JPEG_QUALITY, 92])
    for seed, name in enumerate(_next_large_names(), start=6):
        cv2.imwrite(str(images / name), _picture(size, face_side, seed)[0],
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
    cv2.imwrite(str(images / '1_small.png'), picture[:64, :64])
    for i in range(folder_images - 2 - NEXT_LARGE):
        os.link(images / '1_small.png', images / f'img_{i:05d}.png')
    face = Face([(1.0 + k, 2.0 + k) for k in range(NUM_KEYPOINTS)])
    template = ImageAnnotation('x', 64, 64, [face])
    for i in range(0, folder_images - 2 - NEXT_LARGE, 2):
        template.image = f'img_{i:05d}.png'
        save_annotation(out / f'img_{i:05d}.json', template)
    return images, out, points


def editing_in_browser(context, url: str, points: np.ndarray, size: tuple[int, int], out: Path
                       ) -> dict:
    """In :func:`editing_folder`'s annotator: open the large picture, click its 28 points at fit and
    28 zoomed on the face, time an edit to the disk and ``n`` to each next large picture.

    Args:
        context: a Playwright browser context (:func:`..testing.browser.launch_chromium`).
        url: the annotator serving :func:`editing_folder`'s images.
        points: the face's true points in the large picture.
        size: the large pictures' size (width, height).
        out: the annotator's output folder.
    """
    from ..testing.browser import EDITOR_READY_JS, RECT_JS, SAVED_JS, screen_position
    result = {}
    page = context.new_page()
    try:
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
        # an edit to the disk: drag-free moves of the last point (select it, click its new
        # place, out of the point's grab radius: a click within it grabs the point, which a
        # click does not move)
        last = NUM_KEYPOINTS - 1
        target = out / '0_large.json'
        seconds, current = [], points[last]
        for k in range(10):
            page.keyboard.press('Escape')
            rect = page.locator('#landmark-image').evaluate(RECT_JS)
            page.mouse.click(*screen_position(current, size, rect))  # selects it
            new = current = current + (8.0 if k % 2 else -8.0, 0.5)
            before = time.perf_counter()
            click(new)
            while True:
                try:
                    saved = json.loads(target.read_text())['faces'][0]['landmarks'][last]
                except (OSError, ValueError, KeyError, IndexError):
                    saved = None
                if saved is not None and abs(saved[0] - new[0]) < 0.01:
                    break
                if time.perf_counter() - before > 30:
                    raise TimeoutError('an edit did not reach the disk in 30 s')
                time.sleep(0.002)
            seconds.append(time.perf_counter() - before)
        result['edit_to_disk_ms'] = _ms(np.array(seconds) * 1000)
        # n to the next large picture, after some seconds on the current one (the page has
        # fetched and decoded it meanwhile)
        page.keyboard.press('Escape')
        next_times = []
        for name in _next_large_names():
            time.sleep(SECONDS_ON_PICTURE)
            before = len(page.evaluate('window.landmarkEditor.openTimes'))
            page.keyboard.press('n')
            page.wait_for_function(f'n => window.landmarkEditor.openTimes.length > {before} && '
                                   'window.landmarkEditor.doc.image === n', arg=name)
            next_times.append(page.evaluate('window.landmarkEditor.openTimes')[-1])
        result['next_large_ms'] = _ms(next_times)
    finally:
        page.close()
    return result


#: How a fair model's prediction is off from the truth in the review measurement: most points
#: within :data:`CLOSE_PX` px, :data:`POINTS_OFF` of them off by :data:`OFF_PX` px; the bot drags
#: back those off by more than :data:`DRAG_OVER_PX` px (a person leaves a point that looks right).
POINTS_OFF = 8
CLOSE_PX = 1.5
OFF_PX = (5.0, 15.0)
DRAG_OVER_PX = 2.0


def _perturbed(truth: np.ndarray, rng: np.random.Generator, size: tuple[int, int]
               ) -> np.ndarray:
    """A fair model's points: :data:`POINTS_OFF` points off by :data:`OFF_PX` px in a random
    direction, the others within :data:`CLOSE_PX` px (kept inside the image)."""
    count = len(truth)
    radius = rng.uniform(0, CLOSE_PX, count)
    off = rng.choice(count, POINTS_OFF, replace=False)
    radius[off] = rng.uniform(*OFF_PX, POINTS_OFF)
    angle = rng.uniform(0, 2 * np.pi, count)
    moved = truth + radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    return np.clip(moved, -0.5, np.array(size) - 0.5)


def review_folder(root: Path, faces: int) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """``faces`` pictures of a character (640x480, the face filling it, as crawled pictures
    are cropped), each twice: ``scratch_<i>.png`` without a file, ``review_<i>.png`` with a
    ``status: predicted`` file of :func:`_perturbed` points; and ``start.png``, where the page
    starts. Returns the folders and the true points of each image, in the order to do them
    (scratch and review alternate)."""
    import cv2

    from ..annotation import (
        MODEL_ANNOTATOR,
        STATUS_PREDICTED,
        Face,
        ImageAnnotation,
        save_annotation,
    )
    from ..synthetic import render_face_image
    images, out = root / 'images', root / 'out'
    images.mkdir(parents=True)
    cv2.imwrite(str(images / 'start.png'), np.full((64, 64, 3), 128, np.uint8))
    truth = {}
    for i in range(faces):
        rng = np.random.default_rng(40 + i)
        picture, points, _ = render_face_image(rng, 640, 480)
        for name in (f'scratch_{i}.png', f'review_{i}.png'):
            cv2.imwrite(str(images / name), picture)
            truth[name] = points
        predicted = _perturbed(points, rng, (640, 480))
        save_annotation(out / f'review_{i}.json', ImageAnnotation(
            f'review_{i}.png', 640, 480,
            [Face([(float(x), float(y)) for x, y in predicted], scores=[0.8] * len(points))],
            status=STATUS_PREDICTED, meta=dict(annotator=MODEL_ANNOTATOR, model='benchmark')))
    return images, out, truth


def _wait_saved(path: Path, done, timeout: float = 60):
    """Poll ``path`` until ``done(annotation)`` holds; returns the annotation."""
    from ..annotation import AnnotationError, load_annotation
    deadline = time.perf_counter() + timeout
    while True:
        try:
            annotation = load_annotation(path) if path.is_file() else None
        except AnnotationError:  # never half-written (atomic), but be safe
            annotation = None
        if annotation is not None and done(annotation):
            return annotation
        if time.perf_counter() > deadline:
            raise TimeoutError(f'{path} was not saved in {timeout:.0f} s')
        time.sleep(0.002)


def scratch_versus_review(context, url: str, out: Path, truth: dict[str, np.ndarray]) -> dict:
    """One face done both ways, by a bot that waits for the page to draw each action: from
    scratch (28 clicks at the true points) and reviewing a prediction (drag the points off by
    more than :data:`DRAG_OVER_PX` px to the truth, Enter to accept). Each session is timed
    from asking for the image to its file on disk, finished.

    Args:
        context: a Playwright browser context (:func:`..testing.browser.launch_chromium`).
        url: the annotator serving :func:`review_folder`'s images.
        out: its output folder.
        truth: :func:`review_folder`'s true points.
    """
    from ..testing.browser import EDITOR_READY_JS, RECT_JS, screen_position
    point_drawn_js = ('([k, x, y]) => { const e = document.querySelector('
                      '`#landmark-editor .landmark-point[data-index="${k}"]`); return !!e && '
                      'Math.abs(e.dataset.x - x) < 0.05 && Math.abs(e.dataset.y - y) < 0.05; }')
    size = (640, 480)
    scratch, review = [], []
    page = context.new_page()
    try:
        page.set_default_timeout(60000)
        page.goto(f'{url}/?image=start.png')
        page.wait_for_function(EDITOR_READY_JS)

        def open_image(name: str) -> list[float]:
            page.evaluate('name => window.landmarkEditor.go({image: name})', name)
            return page.locator('#landmark-image').evaluate(RECT_JS)

        for name in truth:
            points = truth[name]
            if name.startswith('scratch_'):
                start = time.perf_counter()
                rect = open_image(name)
                for k, point in enumerate(points):
                    page.mouse.click(*screen_position(point, size, rect))
                    page.wait_for_function(point_drawn_js, arg=[k, *map(float, point)])
                saved = _wait_saved(out / name.replace('.png', '.json'),
                                    lambda a: a.status == 'annotated' and bool(a.faces))
                scratch.append(dict(seconds=time.perf_counter() - start, actions=len(points),
                                    error=_max_error(saved, points)))
                continue
            start = time.perf_counter()
            rect = open_image(name)
            shown = page.evaluate('() => window.landmarkEditor.edit.faces[0].points')
            predicted = np.array(shown, float)
            off = np.flatnonzero(np.linalg.norm(predicted - points, axis=1) > DRAG_OVER_PX)
            for k in off:
                x0, y0 = screen_position(predicted[k], size, rect)
                x1, y1 = screen_position(points[k], size, rect)
                page.mouse.move(x0, y0)
                page.mouse.down()
                page.mouse.move(x1, y1, steps=4)
                page.mouse.up()
                page.wait_for_function(point_drawn_js, arg=[int(k), *map(float, points[k])])
            page.keyboard.press('Enter')
            saved = _wait_saved(out / name.replace('.png', '.json'),
                                lambda a: a.status == 'annotated')
            review.append(dict(seconds=time.perf_counter() - start, actions=len(off) + 1,
                               drags=len(off), error=_max_error(saved, points)))
    finally:
        page.close()

    def summary(sessions: list[dict]) -> dict:
        seconds = [s['seconds'] for s in sessions]
        return dict(actions=int(np.median([s['actions'] for s in sessions])),
                    bot_s_p50=round(float(np.median(seconds)), 2),
                    bot_s_max=round(float(np.max(seconds)), 2), n=len(sessions),
                    max_error_px=round(max(s['error'] for s in sessions), 2))

    return dict(
        face_from_scratch=dict(summary(scratch),
                               how=f'{NUM_KEYPOINTS} clicks at the true points'),
        face_review=dict(summary(review), how=(
            f'status predicted, {NUM_KEYPOINTS - POINTS_OFF} points within '
            f'{CLOSE_PX} px of the truth, {POINTS_OFF} off by {OFF_PX[0]:g}-{OFF_PX[1]:g} px: '
            f'drag the {POINTS_OFF} back, Enter')),
        face_time='bot (machine) time per face, from asking for the image to its file saved; '
                  'a person adds the time to aim each action')


def _max_error(annotation, truth: np.ndarray) -> float:
    """The largest distance (px) of the saved points from the true ones."""
    return float(np.linalg.norm(np.array(annotation.faces[0].landmarks) - truth, axis=1).max())


def annotator_editing(size: tuple[int, int] = (4000, 3000), face_side: int = 420,
                     folder_images: int = 5000, review_faces: int = 3) -> dict:
    """The annotator's point editor on a ``size`` JPEG with a small face, in a folder of
    ``folder_images`` images (half of them annotated).

    ``open_folder_ms``: the session opening the folder (listing it, reading every annotation
    file once to know which is whose, counting progress); ``open_large_ms``: in headless
    Chromium, asking for the picture to its being decoded and shown (first time, and again
    from the browser's cache); ``next_large_ms``: ``n`` to the next large picture shown, after
    :data:`SECONDS_ON_PICTURE` s on the one before (the page decodes the next one ahead);
    ``click_to_draw_ms``: pointerdown to the next animation frame
    after the point is in the page, measured in the page (``performance.now()``), 28 clicks
    at fit and 28 zoomed on the face; ``click_to_paint_ms``: to the task after that frame;
    ``edit_to_disk_ms``: a click to the file holding the edit.

    ``face_from_scratch`` and ``face_review`` (``review_faces`` faces each, 640x480 pictures,
    in a session of their own): one face annotated by a bot in headless Chromium, waiting for
    each action to be drawn, from scratch (28 clicks) versus reviewing a fair model's
    prediction (:func:`_perturbed`: drag the points off by more than 2 px, Enter): the number
    of actions, the bot's time from asking for the image to the finished file on disk (machine
    time; ``bot_s_p50``, ``bot_s_max``) and the largest error of the saved points.
    """
    from ..annotate import AnnotationSession
    from ..annotate_app import Annotator, launch
    from ..testing.browser import chromium_available, free_port, launch_chromium

    with tempfile.TemporaryDirectory() as tmp:
        images, out, points = editing_folder(Path(tmp), size, face_side, folder_images)
        start = time.perf_counter()
        session = AnnotationSession(images, out)
        progress = session.progress()
        open_folder = time.perf_counter() - start
        result = dict(image=f'{size[0]}x{size[1]} JPEG, face {face_side} px',
                      folder_images=folder_images, annotation_files=progress.done,
                      open_folder_ms=round(open_folder * 1000, 1), cpus=os.cpu_count())
        if chromium_available():
            from playwright.sync_api import sync_playwright
            with sync_playwright() as playwright, launch_chromium(playwright) as context:
                server = launch(Annotator(session), port=free_port(), block=False)
                try:
                    result.update(editing_in_browser(context, server.url, points, size, out))
                finally:
                    server.close()
                images, out, truth = review_folder(Path(tmp) / 'review', review_faces)
                server = launch(Annotator(AnnotationSession(images, out, annotator='bot')),
                                port=free_port(), block=False)
                try:
                    result.update(scratch_versus_review(context, server.url, out, truth))
                finally:
                    server.close()
        else:
            result['browser'] = 'skipped: /usr/bin/chromium not found'
        # this process's peak (the browser is another process; no GPU is used)
        result['peak_rss_mib'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result
