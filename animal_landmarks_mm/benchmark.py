"""Benchmarks that print numbers (never timed tests). ``tools/benchmark.py`` runs them.

Each benchmark returns a dict of measurements; :func:`format_table` prints them.
"""
from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from .annotation import Face, ImageAnnotation, load_annotation, save_annotation
from .converter import AnnotationConverter
from .synthetic import make_synthetic_dataset


def _peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def converter_throughput(num_files: int = 10_000, num_images: int = 20,
                         workdir: str | os.PathLike | None = None) -> dict:
    """Convert ``num_files`` annotation files (each its own image path, hard-linked to one of
    ``num_images`` real synthetic images so that every header really is read).

    Returns:
        ``files``, ``seconds``, ``files_per_s``, ``peak_rss_mib``.
    """
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        make_synthetic_dataset(tmp / 'src', num_images, seed=0, min_size=128, max_size=160,
                               progress=False)
        sources = sorted((tmp / 'src' / 'images').glob('*.png'))
        image_dir, ann_dir = tmp / 'images', tmp / 'landmarks'
        image_dir.mkdir()
        ann_dir.mkdir()
        rng = np.random.default_rng(0)
        templates = [load_annotation(p) for p in sorted((tmp / 'src' / 'landmarks').glob('*'))]
        for i in range(num_files):
            k = i % len(sources)
            name = f'{i:06d}.png'
            os.link(sources[k], image_dir / name)
            t = templates[k]
            pts = np.array(t.faces[0].landmarks) + rng.normal(0, 0.5, (28, 2))
            save_annotation(ann_dir / f'{i:06d}.json', ImageAnnotation(
                name, t.width, t.height, [Face([tuple(p) for p in pts.clip(0)])]))
        start = time.perf_counter()
        summary = AnnotationConverter(image_dir, tmp / 'out', progress=True).convert(ann_dir)
        seconds = time.perf_counter() - start
        assert sum(summary.counts.values()) == num_files, summary.format()
    return dict(files=num_files, seconds=round(seconds, 2),
                files_per_s=round(num_files / seconds), peak_rss_mib=round(_peak_rss_mib()))


def format_table(results: dict[str, dict]) -> str:
    """One line per benchmark: its name and its measurements."""
    lines = []
    for name, values in results.items():
        lines.append(f'{name:24s} ' + '  '.join(f'{k}={v}' for k, v in values.items()))
    return '\n'.join(lines)
