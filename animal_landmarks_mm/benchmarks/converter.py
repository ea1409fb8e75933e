"""The converter's throughput on thousands of annotation files: a first conversion, which
hashes every image, and a rerun over the unchanged folder, which reuses the recorded digests."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ..annotation import Face, ImageAnnotation, save_annotation
from ..converter import IMAGE_END_WINDOW, convert
from ..schema import NUM_KEYPOINTS
from ..synthetic import render_face_image
from .common import peak_memory

#: Bytes of a drawn image copied into each benchmark image: its header and more (PIL reads
#: a PNG's chunks up to the first IDAT, a JPEG's markers up to its scan; cv2 writes both small).
HEADER_BYTES = 16384

#: How long before the conversion the benchmark images were saved: a dataset's pictures are
#: older than the moment's timestamp tick, so a rerun may reuse their digests
#: (:meth:`~animal_landmarks_mm.converter.ImageStamp.trusted`).
IMAGE_AGE_NS = 3600 * 10**9


def _distinct_copy(source: Path, target: Path, extra: int) -> None:
    """A file the size of ``source`` plus ``extra`` bytes: its header, a hole (sparse: a few
    KB on disk) and its last :data:`~animal_landmarks_mm.converter.IMAGE_END_WINDOW` bytes,
    so that it is whole to the converter's completeness check. A distinct file, of a size no
    other copy has, so that the converter reads its header and hashes it as it would a real
    picture's and never finds it a duplicate (a hard link is one, since the converter uses
    each picture once)."""
    with open(source, 'rb') as f:
        header = f.read(HEADER_BYTES)
        end = f.seek(0, os.SEEK_END)
        f.seek(max(0, end - IMAGE_END_WINDOW))
        tail = f.read()
    with open(target, 'wb') as f:
        f.write(header)
        f.seek(end + extra - len(tail))
        f.write(tail)


def _timed_conversion(ann_dir: Path, image_dir: Path, output_dir: Path,
                      num_files: int) -> float:
    """Seconds one conversion takes; checks that every file was converted."""
    start = time.perf_counter()
    summary = convert(ann_dir, image_dir, output_dir, progress=False)
    seconds = time.perf_counter() - start
    assert sum(summary.counts.values()) == num_files, summary.format()
    return seconds


def converter_throughput(num_files: int = 10_000, num_images: int = 20) -> dict:
    """Convert ``num_files`` annotation files of real-size images (2000-4000 px, half PNG and
    half JPEG, as image boards serve them), then again into the same output folder with
    nothing changed. Each file has its own image: the header and end of one of
    ``num_images`` drawn images around a hole the size of the rest (:func:`_distinct_copy`),
    so that every image's header and end really are read, and every byte hashed, from a file
    of its own (the hole's zeros come from no disk: hashing, not reading, is timed)."""
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
        saved_ns = time.time_ns() - IMAGE_AGE_NS
        image_bytes = 0
        for i in range(num_files):
            source, width, height, points = sources[i % num_images]
            name = f'{i:06d}{source.suffix}'
            _distinct_copy(source, image_dir / name, extra=i)
            os.utime(image_dir / name, ns=(saved_ns, saved_ns))
            image_bytes += (image_dir / name).stat().st_size
            noisy = points + rng.normal(0, 0.5, (NUM_KEYPOINTS, 2))
            save_annotation(ann_dir / f'{i:06d}.json', ImageAnnotation(
                name, width, height, [Face([tuple(p) for p in noisy])]))
        first = _timed_conversion(ann_dir, image_dir, tmp / 'out', num_files)
        rerun = _timed_conversion(ann_dir, image_dir, tmp / 'out', num_files)
    return dict(files=num_files, image_sides='2000-4000 px', formats='PNG and JPEG',
                mean_image_mb=round(image_bytes / num_files / 2**20, 1),
                first_s=round(first, 2), first_files_per_s=round(num_files / first),
                first_image_gb_per_s=round(image_bytes / first / 2**30, 2),
                rerun_s=round(rerun, 2), rerun_files_per_s=round(num_files / rerun),
                **peak_memory())
