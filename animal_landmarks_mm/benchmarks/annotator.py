"""The annotator's click-to-redraw time and opening a large folder."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import peak_memory


def _browser_clicks(url: str, points: list, image_size: tuple[int, int]) -> list[float]:
    """Seconds from a click in headless Chromium to the redrawn picture being shown."""
    from playwright.sync_api import sync_playwright

    from ..annotate_app import (
        CHROMIUM,
        CHROMIUM_FLAGS,
        PICTURE_GEOMETRY_JS,
        PICTURE_REDRAWN_JS,
        screen_position,
    )
    seconds = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={'width': 1600, 'height': 1000})
        page.goto(url)
        page.wait_for_selector('#picture img', timeout=60000)
        for point in points:
            img = page.locator('#picture img')
            old = img.get_attribute('src')
            geometry = img.evaluate(PICTURE_GEOMETRY_JS)
            start = time.perf_counter()
            page.mouse.click(*screen_position(point, image_size, geometry))
            page.wait_for_function(PICTURE_REDRAWN_JS, arg=old, timeout=20000)
            seconds.append(time.perf_counter() - start)
        browser.close()
    return seconds


def annotator_redraw(side: int = 2000, clicks: int = 56, folder_images: int = 5000) -> dict:
    """The annotator's click-to-redraw on a ``side`` x ``side`` image, and opening a folder.

    ``server``: the click handler (map the click, edit, autosave, draw the points) plus the JPEG
    encoding Gradio does for the picture and the chart; ``browser``: the whole round trip in
    headless Chromium (click to redrawn picture shown), when Chromium is installed.
    ``open_folder``: listing a folder of ``folder_images`` images and counting the done ones.
    """
    import socket

    import cv2
    import gradio as gr

    from ..annotate import AnnotationSession
    from ..annotate_app import CHROMIUM, Annotator, TabState, launch
    from ..synthetic import render_face_image

    def ms(values) -> dict:
        values = np.array(values) * 1000
        return dict(median=round(float(np.median(values)), 1),
                    p95=round(float(np.percentile(values, 95)), 1))

    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / 'images'
        images.mkdir()
        image, points, _ = render_face_image(np.random.default_rng(5), side, side)
        cv2.imwrite(str(images / '0_big.png'), image)
        cv2.imwrite(str(images / 'small.png'), image[:64, :64])
        for i in range(folder_images - 1):
            os.link(images / 'small.png', images / f'img_{i:05d}.png')
        (images / 'small.png').unlink()

        start = time.perf_counter()
        session = AnnotationSession(images, Path(tmp) / 'out')
        session.progress()
        open_folder = time.perf_counter() - start

        annotator = Annotator(session)
        state = TabState()
        annotator.jump(state, '0_big.png')
        picture, chart = gr.Image(format='jpeg'), gr.Image(format='jpeg')
        server = []
        for k in range(clicks):
            if state.edit.current.complete():
                annotator.clear_all(state)
            u, v = annotator.view(state).to_display([points[k % 28]])[0]
            event = gr.SelectData(None, dict(index=[round(u), round(v)], value=None))
            start = time.perf_counter()
            outputs = annotator.click(state, event)
            picture.postprocess(outputs[1])
            chart.postprocess(outputs[8])
            server.append(time.perf_counter() - start)
        result = dict(image=f'{side}x{side}', server_ms=ms(server))

        if os.access(CHROMIUM, os.X_OK):
            annotator.clear_all(state)
            with socket.socket() as s:
                s.bind(('127.0.0.1', 0))
                port = s.getsockname()[1]
            app = launch(annotator, port=port, block=False)
            try:
                # a fresh tab opens the first image without annotation: the big one
                seconds = _browser_clicks(f'http://127.0.0.1:{port}', list(points[:28]),
                                          (side, side))
                result['browser_ms'] = ms(seconds[1:])  # the first includes warming up
            finally:
                app.close()
        result.update(folder_images=folder_images,
                      open_folder_ms=round(open_folder * 1000, 1), **peak_memory())
    return result


