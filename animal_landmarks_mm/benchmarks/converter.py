"""The converter's throughput on thousands of annotation files."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ..annotation import Face, ImageAnnotation, save_annotation
from ..converter import convert
from ..schema import NUM_KEYPOINTS
from ..synthetic import render_face_image
from .common import peak_memory

#: Bytes of a drawn image copied into each benchmark image: its header and more (PIL reads
#: a PNG's chunks up to the first IDAT, a JPEG's markers up to its scan; cv2 writes both small).
HEADER_BYTES = 16384


def _distinct_copy(source: Path, target: Path, extra: int) -> None:
    """A file the size of ``source`` plus ``extra`` bytes, with its header and a hole for the
    rest (sparse: a few KB on disk). A distinct file, of a size no other copy has, so that the
    converter reads its header as it would a real picture's and never finds it a duplicate (a
    hard link is one, since the converter uses each picture once)."""
    size = source.stat().st_size + extra
    with open(source, 'rb') as f:
        header = f.read(HEADER_BYTES)
    with open(target, 'wb') as f:
        f.write(header)
        f.truncate(size)


def converter_throughput(num_files: int = 10_000, num_images: int = 20) -> dict:
    """Convert ``num_files`` annotation files of real-size images (2000-4000 px, half PNG and
    half JPEG, as image boards serve them); each file has its own image: the header of one of
    ``num_images`` drawn images and a hole the size of the rest (:func:`_distinct_copy`), so
    that every image's header really is read, from a file of its own."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image_dir, ann_dir = tmp / 'images', tmp / 'landmarks'
        image_dir.mkdir()
        ann_dir.mkdir()
        rng = np.random.default_rng(0)
        sources = []
        for k in range(num_images):
            width, height = (int(v) for v in rng.integers(2000, 4001, size=2))
            image, points, _ = render_face_image(np.random.default_rng([7, k]), width, height)
            source = tmp / f'source_{k}.{"png" if k % 2 else "jpg"}'
            cv2.imwrite(str(source), image)
            sources.append((source, width, height, points))
        bytes_per_image = np.mean([p.stat().st_size for p, *_ in sources])
        for i in range(num_files):
            source, width, height, points = sources[i % num_images]
            name = f'{i:06d}{source.suffix}'
            _distinct_copy(source, image_dir / name, extra=i)
            noisy = points + rng.normal(0, 0.5, (NUM_KEYPOINTS, 2))
            save_annotation(ann_dir / f'{i:06d}.json', ImageAnnotation(
                name, width, height, [Face([tuple(p) for p in noisy])]))
        start = time.perf_counter()
        summary = convert(ann_dir, image_dir, tmp / 'out', progress=False)
        seconds = time.perf_counter() - start
        assert sum(summary.counts.values()) == num_files, summary.format()
    return dict(files=num_files, image_sides='2000-4000 px', formats='PNG and JPEG',
                mean_image_mb=round(bytes_per_image / 2**20, 1), seconds=round(seconds, 2),
                files_per_s=round(num_files / seconds), **peak_memory())
