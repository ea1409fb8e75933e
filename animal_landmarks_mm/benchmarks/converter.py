"""The converter's throughput on thousands of annotation files."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..annotation import Face, ImageAnnotation, load_annotation, save_annotation
from ..converter import AnnotationConverter
from ..schema import NUM_KEYPOINTS
from ..synthetic import make_synthetic_dataset
from .common import peak_memory


def converter_throughput(num_files: int = 10_000, num_images: int = 20) -> dict:
    """Convert ``num_files`` annotation files (each its own image path, hard-linked to one of
    ``num_images`` real synthetic images so that every header really is read)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_synthetic_dataset(tmp / 'src', num_images, seed=0, min_size=128, max_size=160,
                               progress=False)
        sources = sorted((tmp / 'src' / 'images').glob('*.png'))
        templates = [load_annotation(p) for p in sorted((tmp / 'src' / 'landmarks').glob('*'))]
        image_dir, ann_dir = tmp / 'images', tmp / 'landmarks'
        image_dir.mkdir()
        ann_dir.mkdir()
        rng = np.random.default_rng(0)
        for i in range(num_files):
            k = i % len(sources)
            os.link(sources[k], image_dir / f'{i:06d}.png')
            t = templates[k]
            pts = np.array(t.faces[0].landmarks) + rng.normal(0, 0.5, (NUM_KEYPOINTS, 2))
            save_annotation(ann_dir / f'{i:06d}.json', ImageAnnotation(
                f'{i:06d}.png', t.width, t.height, [Face([tuple(p) for p in pts.clip(0)])]))
        start = time.perf_counter()
        summary = AnnotationConverter(image_dir, tmp / 'out', progress=False).convert(ann_dir)
        seconds = time.perf_counter() - start
        assert sum(summary.counts.values()) == num_files, summary.format()
    return dict(files=num_files, seconds=round(seconds, 2),
                files_per_s=round(num_files / seconds), **peak_memory())


