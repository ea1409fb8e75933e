"""Driving the annotator in a real browser: Debian's Chromium through Playwright, for the
browser test and the annotator benchmark.

The editor's conventions (``animal_landmarks_mm/editor/editor.js``): the element
``#landmark-image``'s client rect covers the image's whole pixel extent at the current zoom and
pan, so image pixel ``(x, y)`` (pixel centres at integers) is shown at ``left + (x + 0.5) *
width / W``, ``top + (y + 0.5) * height / H``; each placed point of the current face is a
``.landmark-point`` with ``data-index``, inside ``#landmark-editor``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator

#: Debian's Chromium (tools/setup_env.sh installs it).
CHROMIUM = '/usr/bin/chromium'
#: No GPU, no network of its own (updates, sync, QUIC), no first-run pages.
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu',
                  '--disable-background-networking', '--disable-component-update',
                  '--no-first-run', '--disable-sync', '--disable-quic']

#: JavaScript (``locator.evaluate``): an element's client rect ``[left, top, width, height]``.
RECT_JS = 'e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }'
#: JavaScript (``page.evaluate``): the editor is started and shows an image.
EDITOR_READY_JS = ('() => { const e = window.landmarkEditor; return !!(e && e.doc && '
                   'document.getElementById("landmark-editor").dataset.ready === "1" && '
                   '!e.navigating); }')
#: JavaScript (``page.evaluate``): every edit is on disk (the page has nothing to send).
SAVED_JS = ('() => { const e = window.landmarkEditor; return !!(e && e.doc && !e.inFlight && '
            '!e.queue.length && document.getElementById("le-save").dataset.state === '
            '"saved"); }')


def chromium_available() -> bool:
    return os.access(CHROMIUM, os.X_OK)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def launch_chromium(playwright) -> Iterator:
    """Chromium with :data:`CHROMIUM_FLAGS` on a fresh user-data dir (no profile, cache or
    cookies from elsewhere), closed and removed afterwards; yields the browser context."""
    profile = tempfile.mkdtemp(prefix='chromium-profile-')
    context = None
    try:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True,
            viewport={'width': 1280, 'height': 720})
        yield context
    finally:
        if context is not None:
            context.close()
        shutil.rmtree(profile, ignore_errors=True)


def screen_position(point, image_size: tuple[int, int], rect) -> tuple[float, float]:
    """Where image pixel ``point`` is shown.

    Args:
        point: ``(x, y)`` in image pixels (pixel centres at integers).
        image_size: the image's ``(width, height)``.
        rect: ``#landmark-image``'s client rect ``[left, top, width, height]``
            (:data:`RECT_JS`).
    """
    left, top, width, height = rect
    return (left + (float(point[0]) + 0.5) * width / image_size[0],
            top + (float(point[1]) + 0.5) * height / image_size[1])


def image_position(screen, image_size: tuple[int, int], rect) -> tuple[float, float]:
    """The image pixel shown at ``screen`` (the inverse of :func:`screen_position`)."""
    left, top, width, height = rect
    return ((screen[0] - left) * image_size[0] / width - 0.5,
            (screen[1] - top) * image_size[1] / height - 0.5)


def point_positions(page) -> dict[int, tuple[float, float]]:
    """The current face's placed points as the page holds them: index -> image pixel."""
    raw = page.evaluate('() => Array.from(document.querySelectorAll('
                        '"#landmark-editor .landmark-point"), e => [Number(e.dataset.index), '
                        'Number(e.dataset.x), Number(e.dataset.y)])')
    return {int(k): (x, y) for k, x, y in raw}


def save_screenshot(page, path, max_bytes: int = 300_000) -> int:
    """A screenshot of ``page`` as a small PNG (a palette of at most 256 colours, fewer until
    it is under ``max_bytes``: noisy pictures compress badly); returns its size."""
    import io
    from pathlib import Path

    from PIL import Image
    shot = Image.open(io.BytesIO(page.screenshot())).convert('RGB')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for colors in (256, 192, 128, 64):
        small = shot.quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                              dither=Image.Dither.NONE)
        data = io.BytesIO()
        small.save(data, 'PNG', optimize=True)
        if data.tell() <= max_bytes:
            break
    path.write_bytes(data.getvalue())
    return data.tell()
