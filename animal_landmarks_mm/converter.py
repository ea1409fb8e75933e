"""Annotation JSON files -> COCO-style train/val/test files for :class:`AnimalCharacterFaceDataset`.

Output layout (``output_dir``)::

    annotations/train.json  annotations/val.json  annotations/test.json   (COCO keypoints)
    train.txt  val.txt  test.txt      (the annotation files of each split, one per line,
                                       relative to their annotation folder)

``file_name`` in the COCO files is the image path relative to ``output_dir``, so a config needs
only ``data_root=output_dir`` and ``data_prefix=dict(img='')`` whatever folder the images are in.
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .annotation import (
    STATUS_SKIPPED,
    AnnotationError,
    Face,
    ImageAnnotation,
    image_size,
    load_annotation,
    write_json_atomic,
)
from .schema import ABSENT, KEYPOINT_NAMES, SKELETON

SPLITS = ('train', 'val', 'test')

#: A face box made from the points is their bounding box grown by this share of its width
#: (height) on the left and right (top and bottom), then clipped to the image.
BOX_MARGIN = 0.1

#: A point may lie outside the image (a face cut by the border, an occluded point placed by
#: estimate) by at most this share of the image's width (height).
OUTSIDE_TOLERANCE = 0.1


class ConversionError(ValueError):
    """The conversion cannot go on (bad ratios, an empty split, a problem under --strict)."""


def face_box(face: Face, width: int, height: int,
             margin: float = BOX_MARGIN) -> tuple[float, float, float, float]:
    """The face's box ``(x, y, w, h)``: its own box if annotated, else one from its points."""
    if face.bbox is not None:
        x0, y0, x1, y1 = face.bbox
    else:
        xs = [p[0] for p in face.placed_points()]
        ys = [p[1] for p in face.placed_points()]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
        x0, x1, y0, y1 = x0 - dx, x1 + dx, y0 - dy, y1 + dy
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(float(width), x1), min(float(height), y1)
    return (x0, y0, x1 - x0, y1 - y0)


def coco_keypoints(face: Face) -> tuple[list[float], int]:
    """The 84 COCO keypoint numbers ``x, y, v`` of a face and how many points are labelled.

    ``v`` keeps the annotation's flags: 2 visible, 1 occluded, 0 absent (then x = y = 0).
    """
    values: list[float] = []
    for point, vis in zip(face.landmarks, face.visibility):
        if vis == ABSENT or point is None:
            values += [0.0, 0.0, 0]
        else:
            values += [point[0], point[1], int(vis)]
    return values, sum(1 for v in face.visibility if v != ABSENT)


def coco_categories() -> list[dict]:
    """The single ``face`` category with its keypoint names and skeleton (1-based, as COCO)."""
    return [dict(id=1, name='face', supercategory='face', keypoints=list(KEYPOINT_NAMES),
                 skeleton=[[a + 1, b + 1] for a, b in SKELETON])]


def split_counts(total: int, ratios: dict[str, float]) -> dict[str, int]:
    """How many files go to each split: rounded shares, the remainder to ``train``."""
    counts = {name: int(round(total * ratios[name])) for name in SPLITS if name != 'train'}
    counts['train'] = total - sum(counts.values())
    return {name: counts[name] for name in SPLITS}


def check_ratios(train: float, val: float, test: float) -> dict[str, float]:
    """Validate the three split ratios.

    Raises:
        ConversionError: a negative ratio, or ratios that do not sum to 1.
    """
    ratios = dict(train=train, val=val, test=test)
    for name, value in ratios.items():
        if not (0.0 <= value <= 1.0) or math.isnan(value):
            raise ConversionError(f'--{name}-ratio must be between 0 and 1, got {value}')
    if abs(sum(ratios.values()) - 1.0) > 1e-6:
        raise ConversionError(
            f'split ratios must sum to 1, got train {train} + val {val} + test {test} = '
            f'{sum(ratios.values()):g}')
    return ratios


@dataclass
class Record:
    """A usable annotation file: where it is and what it says."""

    ann_path: Path
    ann_dir: Path
    image_path: Path
    annotation: ImageAnnotation


@dataclass
class ConversionSummary:
    """What a conversion did: files per split, files left out and why."""

    counts: dict[str, int] = field(default_factory=dict)
    faces: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    skipped_by_annotator: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)

    def format(self) -> str:
        lines = [f'{name:5s}: {self.counts[name]:6d} images, {self.faces[name]:6d} faces'
                 for name in self.counts]
        if self.skipped_by_annotator:
            lines.append(f'{len(self.skipped_by_annotator)} images marked skipped in the '
                         f'annotator, left out')
        if self.problems:
            lines.append(f'{len(self.problems)} annotation files left out:')
            lines += [f'  {p}' for p in self.problems]
        lines += [f'wrote {p}' for p in self.outputs]
        return '\n'.join(lines)


class AnnotationConverter:
    """Validate annotation files and write COCO-style split files.

    Args:
        image_dir: the folder the annotations' ``image`` names are relative to.
        output_dir: where ``annotations/*.json`` and ``*.txt`` go.
        strict: turn any bad annotation file into a failure instead of leaving it out.
        progress: show a progress bar while reading files.
    """

    def __init__(self, image_dir: str | os.PathLike, output_dir: str | os.PathLike,
                 strict: bool = False, progress: bool = True):
        self.image_dir = Path(image_dir).resolve()
        self.output_dir = Path(output_dir)
        self.strict = strict
        self.progress = progress

    # reading --------------------------------------------------------------------------------

    @staticmethod
    def list_annotation_files(ann_dir: Path) -> list[Path]:
        """All ``*.json`` under ``ann_dir`` (hidden and temporary files excluded), sorted by
        relative path so the order never depends on the file system."""
        if not ann_dir.is_dir():
            raise ConversionError(f'annotation folder not found: {ann_dir}')
        files = [p for p in ann_dir.rglob('*.json')
                 if not any(part.startswith('.') for part in p.relative_to(ann_dir).parts)]
        return sorted(files, key=lambda p: p.relative_to(ann_dir).as_posix())

    def _check(self, path: Path, ann_dir: Path) -> Record:
        """Load one file and check it against its image. Raises AnnotationError (one line)."""
        ann = load_annotation(path)
        image_path = (self.image_dir / ann.image).resolve()
        if not image_path.is_relative_to(self.image_dir):
            raise AnnotationError(f'{path}: image {ann.image!r} is outside the image folder')
        if ann.status == STATUS_SKIPPED:
            return Record(path, ann_dir, image_path, ann)
        if not ann.faces:
            raise AnnotationError(f'{path}: no faces annotated')
        if not image_path.is_file():
            raise AnnotationError(f'{path}: image not found: {image_path}')
        try:
            size = image_size(image_path)
        except OSError as e:  # UnidentifiedImageError is one
            raise AnnotationError(f'{path}: image unreadable: {image_path} ({e})') from None
        if size != (ann.width, ann.height):
            raise AnnotationError(
                f'{path}: image_size {ann.width}x{ann.height} does not match the image '
                f'{image_path.name} ({size[0]}x{size[1]})')
        tol_x, tol_y = OUTSIDE_TOLERANCE * ann.width, OUTSIDE_TOLERANCE * ann.height
        for f, face in enumerate(ann.faces):
            for i, p in enumerate(face.landmarks):
                if p is not None and not (-tol_x <= p[0] <= ann.width + tol_x
                                          and -tol_y <= p[1] <= ann.height + tol_y):
                    raise AnnotationError(
                        f'{path}: face {f} point {i} ({p[0]:g}, {p[1]:g}) is far outside the '
                        f'{ann.width}x{ann.height} image')
        return Record(path, ann_dir, image_path, ann)

    def read(self, ann_dir: str | os.PathLike, summary: ConversionSummary) -> list[Record]:
        """Read every annotation file of a folder; bad ones go to ``summary.problems``."""
        ann_dir = Path(ann_dir)
        records = []
        files = self.list_annotation_files(ann_dir)
        for path in tqdm(files, desc=f'reading {ann_dir}', unit='file',
                         disable=not self.progress):
            try:
                record = self._check(path, ann_dir)
            except AnnotationError as e:
                summary.problems.append(str(e))
                continue
            if record.annotation.status == STATUS_SKIPPED:
                summary.skipped_by_annotator.append(str(path))
            else:
                records.append(record)
        return records

    # writing --------------------------------------------------------------------------------

    def to_coco(self, records: list[Record], first_image_id: int = 1) -> dict:
        """One COCO keypoints dict for a list of records."""
        images, annotations = [], []
        out_root = self.output_dir.resolve()
        for image_id, rec in enumerate(records, start=first_image_id):
            ann = rec.annotation
            images.append(dict(id=image_id, file_name=os.path.relpath(rec.image_path, out_root)
                               .replace(os.sep, '/'), width=ann.width, height=ann.height))
            for face in ann.faces:
                keypoints, num = coco_keypoints(face)
                x, y, w, h = face_box(face, ann.width, ann.height)
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id, category_id=1,
                    # full precision, so that a COCO file and its annotation files give
                    # exactly the same crops and numbers
                    bbox=[x, y, w, h], area=w * h, iscrowd=0, keypoints=keypoints,
                    num_keypoints=num))
        return dict(info=dict(description='animal_landmarks_mm', version='1.0'), images=images,
                    annotations=annotations, categories=coco_categories())

    def convert(self, annotation_dir: str | os.PathLike, train_ratio: float = 0.7,
                val_ratio: float = 0.2, test_ratio: float = 0.1, seed: int = 42,
                val_annotation_dir: str | os.PathLike | None = None) -> ConversionSummary:
        """Read, split and write. See the module docstring for the output layout.

        The split shuffles the files, sorted by path, with ``random.Random(seed)``: the same
        files and seed give the same split on any machine. With ``val_annotation_dir`` the
        validation split is that whole folder, and ``annotation_dir`` is split into train and
        test in the proportion of their ratios.

        Raises:
            ConversionError: bad ratios, an empty split, or any bad file when ``strict``.
        """
        ratios = check_ratios(train_ratio, val_ratio, test_ratio)
        summary = ConversionSummary()
        records = self.read(annotation_dir, summary)
        val_records = None
        if val_annotation_dir is not None:
            val_records = self.read(val_annotation_dir, summary)
            rest = ratios['train'] + ratios['test']
            if rest <= 0:
                raise ConversionError('with --val-annotation-dir, train and test ratios cannot '
                                      'both be 0')
            ratios = dict(train=ratios['train'] / rest, val=0.0, test=ratios['test'] / rest)
        if self.strict and summary.problems:
            raise ConversionError(
                f'{len(summary.problems)} bad annotation files (--strict):\n  ' +
                '\n  '.join(summary.problems))

        random.Random(seed).shuffle(records)
        counts = split_counts(len(records), ratios)
        splits: dict[str, list[Record]] = {}
        start = 0
        for name in SPLITS:
            splits[name] = records[start:start + counts[name]]
            start += counts[name]
        if val_records is not None:
            splits['val'] = val_records
            ratios['val'] = 1.0
        for name in SPLITS:
            if ratios[name] > 0 and not splits[name]:
                raise ConversionError(
                    f'the {name} split is empty: {len(records)} usable annotation files with '
                    f'ratio {ratios[name]:g}; add annotations or change the ratios')

        ann_out = self.output_dir / 'annotations'
        ann_out.mkdir(parents=True, exist_ok=True)
        next_id = 1
        for name in SPLITS:
            summary.counts[name] = len(splits[name])
            summary.faces[name] = sum(len(r.annotation.faces) for r in splits[name])
            if ratios[name] == 0:
                continue
            # keep each split file in a stable, readable order
            split = sorted(splits[name], key=lambda r: r.ann_path.as_posix())
            write_json_atomic(ann_out / f'{name}.json', self.to_coco(split, next_id), indent=None)
            next_id += len(split)
            listing = self.output_dir / f'{name}.txt'
            listing.write_text(''.join(
                f'{r.ann_path.relative_to(r.ann_dir).as_posix()}\n' for r in split))
            summary.outputs += [ann_out / f'{name}.json', listing]
        return summary
