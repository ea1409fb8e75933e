"""Annotation folders -> validated records -> train/val/test splits -> COCO-style files.

Three parts, each usable alone:

- :class:`AnnotationReader`: a folder of annotation files -> validated :class:`Record` s (each
  checked against its image) and the reasons the other files were left out. Evaluation and
  training read annotation folders through it too;
- :func:`split_records`: a pure, seeded split;
- :func:`coco_dict` / :func:`write_coco`: records -> a COCO keypoints file for
  :class:`~animal_landmarks_mm.dataset.AnimalCharacterFaceDataset`.

:func:`convert` puts them together for ``tools/dataset.py``. Output layout (``output_dir``)::

    annotations/train.json  annotations/val.json  annotations/test.json   (COCO keypoints)
    train.txt  val.txt  test.txt      (the annotation files of each split, one per line,
                                       relative to their annotation folder)

``file_name`` in the COCO files is the image path relative to ``output_dir``, so a config needs
only ``data_root=output_dir`` and ``data_prefix=dict(img='')`` whatever folder the images are in.
Inputs are never modified, and no output is ever written where an input is read.
"""
from __future__ import annotations

import math
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .annotation import (
    STATUS_PREDICTED,
    STATUS_SKIPPED,
    AnnotationError,
    Face,
    ImageAnnotation,
    image_size,
    is_hidden,
    load_annotation,
    remove_stale_temporaries,
    write_json_atomic,
)
from .errors import AnimalLandmarksError
from .schema import ABSENT, KEYPOINT_NAMES, SKELETON

SPLITS = ('train', 'val', 'test')

#: A face box made from the points is their bounding box grown by this share of its width
#: (height) on the left and right (top and bottom), then clipped to the image.
BOX_MARGIN = 0.1

#: A point may lie outside the image (a face cut by the border, an occluded point placed by
#: estimate) by at most this share of the image's width (height).
OUTSIDE_TOLERANCE = 0.1


class ConversionError(AnimalLandmarksError, ValueError):
    """The conversion cannot go on (bad ratios, an empty split, a problem under --strict)."""


# geometry -----------------------------------------------------------------------------------

def face_box(face: Face, width: int, height: int,
             margin: float = BOX_MARGIN) -> tuple[float, float, float, float]:
    """The face's box ``(x, y, w, h)``, clipped to the image: its own box if annotated, else
    the extent of its points grown by ``margin``."""
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


def face_box_xyxy(face: Face, width: int, height: int) -> tuple[float, float, float, float]:
    """:func:`face_box` as corners ``(x0, y0, x1, y1)``, the form inference takes."""
    x, y, w, h = face_box(face, width, height)
    return (x, y, x + w, y + h)


def coco_keypoints(face: Face) -> tuple[list[float], int]:
    """The 84 COCO keypoint numbers ``x, y, v`` of a face and how many points are labelled.

    ``v`` keeps the annotation's visibility flags (:data:`~.schema.VISIBILITY_FLAGS`); an
    absent point is ``0, 0, 0``.
    """
    values: list[float] = []
    for point, vis in zip(face.landmarks, face.visibility):
        if vis == ABSENT or point is None:
            values += [0.0, 0.0, ABSENT]
        else:
            values += [point[0], point[1], int(vis)]
    return values, sum(1 for v in face.visibility if v != ABSENT)


def coco_categories() -> list[dict]:
    """The single ``face`` category with its keypoint names and skeleton (1-based, as COCO)."""
    return [dict(id=1, name='face', supercategory='face', keypoints=list(KEYPOINT_NAMES),
                 skeleton=[[a + 1, b + 1] for a, b in SKELETON])]


# reading ------------------------------------------------------------------------------------

@dataclass
class Record:
    """A usable annotation file: where it is and what it says."""

    ann_path: Path
    ann_dir: Path
    image_path: Path | None  # None when the folder is read without its images
    annotation: ImageAnnotation

    @property
    def name(self) -> str:
        """The file relative to its annotation folder, as the split listings give it."""
        return self.ann_path.relative_to(self.ann_dir).as_posix()


@dataclass
class FolderContents:
    """What :meth:`AnnotationReader.read` found in a folder.

    Attributes:
        records: the usable files, sorted by path.
        problems: one line per file left out for a defect (naming the file and the reason).
        skipped: files the annotator marked ``skipped`` (no usable face): left out quietly.
        predicted: files of unreviewed model predictions, left out unless asked for.
    """

    records: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list)

    def extend(self, other: FolderContents) -> None:
        self.records += other.records
        self.problems += other.problems
        self.skipped += other.skipped
        self.predicted += other.predicted


def list_annotation_files(ann_dir: Path) -> list[Path]:
    """All ``*.json`` under ``ann_dir``, leaving out hidden files and folders (the tools' own:
    drafts, temporary files), sorted by relative path so the order never depends on the file
    system.

    Raises:
        ConversionError: the folder does not exist.
    """
    if not ann_dir.is_dir():
        raise ConversionError(f'annotation folder not found: {ann_dir}')
    files = [p for p in ann_dir.rglob('*.json')
             if not any(is_hidden(part) for part in p.relative_to(ann_dir).parts)]
    return sorted(files, key=lambda p: p.relative_to(ann_dir).as_posix())


def check_face_geometry(ann: ImageAnnotation) -> None:
    """Refuse points far outside the image and boxes with nothing inside it.

    Raises:
        AnnotationError: one line, without the file name (callers add it).
    """
    tol_x, tol_y = OUTSIDE_TOLERANCE * ann.width, OUTSIDE_TOLERANCE * ann.height
    for f, face in enumerate(ann.faces):
        for i, p in enumerate(face.landmarks):
            if p is not None and not (-tol_x <= p[0] <= ann.width + tol_x
                                      and -tol_y <= p[1] <= ann.height + tol_y):
                raise AnnotationError(
                    f'face {f} point {i} ({p[0]:g}, {p[1]:g}) is far outside the '
                    f'{ann.width}x{ann.height} image')
        _, _, w, h = face_box(face, ann.width, ann.height)
        if w <= 0 or h <= 0:
            where = 'bbox' if face.bbox is not None else 'box of its points'
            raise AnnotationError(
                f'face {f} {where} has no area inside the {ann.width}x{ann.height} image')


def check_usable(ann: ImageAnnotation) -> None:
    """The rules an annotation must pass to be trained on, beyond its file's own validity
    (:func:`~.annotation.parse_annotation`): an annotated image has a face, and every face's
    points and box lie on its image (:func:`check_face_geometry`). One rule for the annotator,
    which never calls such an image done, and the reader, which leaves such a file out.

    Raises:
        AnnotationError: one line, without the file name (callers add it).
    """
    if ann.status == STATUS_SKIPPED:
        return
    if not ann.faces:
        raise AnnotationError('no faces annotated')
    check_face_geometry(ann)


class AnnotationReader:
    """Read annotation folders into validated records.

    Each file is parsed (:func:`~.annotation.load_annotation`) and checked against its image:
    the image exists inside ``image_dir`` and is readable, its size (from the header) equals
    ``image_size``, points lie on or near the image and every face box has an area inside it.
    A file that fails is left out with a one-line reason; so is a file naming an image another
    file already named (one image, one annotation). Without ``image_dir`` only the files are
    read (the checks that need no image: names, parsing, geometry against ``image_size``).

    Args:
        image_dir: the folder the annotations' ``image`` names are relative to; None to read
            the annotation files alone (records then have no ``image_path``).
        include_predicted: use files of unreviewed model predictions (``status: predicted``)
            as if they were annotations, e.g. as pseudo-labels on purpose.
        progress: show a progress bar while reading.
    """

    def __init__(self, image_dir: str | os.PathLike | None, *, include_predicted: bool = False,
                 progress: bool = True):
        self.image_dir = None if image_dir is None else Path(image_dir).resolve()
        self.include_predicted = include_predicted
        self.progress = progress

    def check(self, path: Path, ann_dir: Path) -> Record:
        """Load one file and check it against its image.

        Raises:
            AnnotationError: one line naming the file and the reason.
        """
        relative = path.relative_to(ann_dir).as_posix()
        if any(c in relative for c in '\n\r'):  # the split listings are one name per line
            raise AnnotationError(f'{path!r}: a line break in the file name')
        try:  # the listings are UTF-8 text; a name the file system stored as other bytes
            relative.encode('utf-8')
        except UnicodeEncodeError:
            raise AnnotationError(f'{path!r}: the file name is not valid UTF-8') from None
        ann = load_annotation(path)
        if any(is_hidden(part) for part in Path(ann.image).parts if part not in ('.', '..')):
            # the annotator never shows such an image; one rule for both tools
            raise AnnotationError(f'{path}: image {ann.image!r} is hidden (names starting with '
                                  'a dot are the tools\' own, never images)')
        image_path = None
        if self.image_dir is not None:
            image_path = (self.image_dir / ann.image).resolve()
            if not image_path.is_relative_to(self.image_dir):
                raise AnnotationError(f'{path}: image {ann.image!r} is outside the image folder')
        if ann.status == STATUS_SKIPPED or (ann.status == STATUS_PREDICTED
                                            and not self.include_predicted):
            return Record(path, ann_dir, image_path, ann)  # left out whatever its points
        if not ann.faces:
            raise AnnotationError(f'{path}: no faces annotated')
        if image_path is None:
            pass  # read without images: the geometry below is all that can be checked
        elif not image_path.is_file():
            raise AnnotationError(f'{path}: image not found: {image_path}')
        else:
            try:
                size = image_size(image_path)
            except AnnotationError as e:
                raise AnnotationError(f'{path}: image unreadable: {e}') from None
            if size != (ann.width, ann.height):
                raise AnnotationError(
                    f'{path}: image_size {ann.width}x{ann.height} does not match the image '
                    f'{image_path.name} ({size[0]}x{size[1]})')
        try:
            check_usable(ann)
        except AnnotationError as e:
            raise AnnotationError(f'{path}: {e}') from None
        return Record(path, ann_dir, image_path, ann)

    def read(self, ann_dir: str | os.PathLike,
             taken: dict[Path, Path] | None = None) -> FolderContents:
        """Every annotation file of a folder, sorted by path; bad ones in ``problems``.

        Args:
            ann_dir: the folder (read recursively, hidden names left out).
            taken: image -> the annotation file that claimed it, shared across calls so that
                one image is used once across folders; updated.
        """
        ann_dir = Path(ann_dir)
        contents = FolderContents()
        taken = {} if taken is None else taken
        files = list_annotation_files(ann_dir)
        for path in tqdm(files, desc=f'reading {ann_dir}', unit='file',
                         disable=not self.progress):
            try:
                record = self.check(path, ann_dir)
            except AnnotationError as e:
                contents.problems.append(str(e))
                continue
            status = record.annotation.status
            if status == STATUS_SKIPPED:
                contents.skipped.append(str(path))
                continue
            if status == STATUS_PREDICTED and not self.include_predicted:
                contents.predicted.append(str(path))
                continue
            image = record.image_path or Path(record.annotation.image)
            first = taken.get(image)
            if first is not None:
                contents.problems.append(
                    f'{path}: names the image {record.annotation.image!r} that {first} '
                    'already annotates; one annotation per image kept')
                continue
            taken[image] = path
            contents.records.append(record)
        return contents


# splitting ----------------------------------------------------------------------------------

def check_ratios(train: float, val: float, test: float) -> dict[str, float]:
    """Validate the three split ratios.

    Raises:
        ConversionError: a ratio outside [0, 1], or ratios that do not sum to 1.
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


def split_counts(total: int, ratios: dict[str, float]) -> dict[str, int]:
    """How many files go to each split: rounded shares, the remainder to ``train``."""
    counts = {name: int(round(total * ratios[name])) for name in SPLITS if name != 'train'}
    counts['train'] = total - sum(counts.values())
    return {name: counts[name] for name in SPLITS}


def split_records(records: list[Record], ratios: dict[str, float],
                  seed: int) -> dict[str, list[Record]]:
    """A seeded split: the records sorted by path, shuffled with ``random.Random(seed)``, then
    cut by :func:`split_counts`. The same files and seed give the same split on any machine;
    each split is returned sorted by path."""
    ordered = sorted(records, key=lambda r: r.ann_path.as_posix())
    random.Random(seed).shuffle(ordered)
    counts = split_counts(len(ordered), ratios)
    splits, start = {}, 0
    for name in SPLITS:
        splits[name] = sorted(ordered[start:start + counts[name]],
                              key=lambda r: r.ann_path.as_posix())
        start += counts[name]
    return splits


# writing ------------------------------------------------------------------------------------

def coco_dict(records: Iterable[Record], output_root: str | os.PathLike,
              first_image_id: int = 1) -> dict:
    """One COCO keypoints dict; ``file_name`` relative to ``output_root``."""
    images, annotations = [], []
    out_root = Path(output_root).resolve()
    for image_id, rec in enumerate(records, start=first_image_id):
        ann = rec.annotation
        images.append(dict(id=image_id, file_name=os.path.relpath(rec.image_path, out_root)
                           .replace(os.sep, '/'), width=ann.width, height=ann.height))
        for face in ann.faces:
            keypoints, num = coco_keypoints(face)
            x, y, w, h = face_box(face, ann.width, ann.height)
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id, category_id=1,
                # full precision, so that a COCO file and its annotation files give exactly
                # the same crops and numbers
                bbox=[x, y, w, h], area=w * h, iscrowd=0, keypoints=keypoints,
                num_keypoints=num))
    return dict(info=dict(description='animal_landmarks_mm', version='1.0'), images=images,
                annotations=annotations, categories=coco_categories())


def write_coco(records: list[Record], ann_file: str | os.PathLike,
               output_root: str | os.PathLike, first_image_id: int = 1) -> Path:
    """Write :func:`coco_dict` to ``ann_file`` atomically; returns the file."""
    write_json_atomic(ann_file, coco_dict(records, output_root, first_image_id), indent=None)
    return Path(ann_file)


# the whole conversion -----------------------------------------------------------------------

@dataclass
class ConversionSummary:
    """What a conversion did: files per split, files left out and why."""

    counts: dict[str, int] = field(default_factory=dict)
    faces: dict[str, int] = field(default_factory=dict)
    contents: FolderContents = field(default_factory=FolderContents)
    outputs: list[Path] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.contents.problems

    @property
    def skipped_by_annotator(self) -> list[str]:
        return self.contents.skipped

    def format(self) -> str:
        lines = [f'{name:5s}: {self.counts[name]:6d} images, {self.faces[name]:6d} faces'
                 for name in self.counts]
        if self.contents.skipped:
            lines.append(f'{len(self.contents.skipped)} images marked skipped in the '
                         'annotator, left out')
        if self.contents.predicted:
            lines.append(f'{len(self.contents.predicted)} files of unreviewed predictions '
                         '(status "predicted"), left out: review them in the annotator, or '
                         'pass --include-predicted to train on them')
        if self.problems:
            lines.append(f'{len(self.problems)} annotation files left out:')
            lines += [f'  {p}' for p in self.problems]
        lines += [f'wrote {p}' for p in self.outputs]
        return '\n'.join(lines)


def check_output_dir(output_dir: Path, annotation_dirs: Iterable[Path]) -> None:
    """Refuse an output folder whose files would land where annotations are read (they would
    overwrite an input, and a rerun would read them as bad inputs).

    Raises:
        ConversionError: naming both folders.
    """
    written = (output_dir / 'annotations').resolve()
    for ann_dir in annotation_dirs:
        ann_dir = ann_dir.resolve()
        if written.is_relative_to(ann_dir):
            raise ConversionError(
                f'--output-dir {output_dir} would write into the annotation folder {ann_dir}; '
                'choose an output folder outside it (e.g. its parent)')


def convert(annotation_dir: str | os.PathLike, image_dir: str | os.PathLike,
            output_dir: str | os.PathLike, *, train_ratio: float = 0.7,
            val_ratio: float = 0.2, test_ratio: float = 0.1, seed: int = 42,
            val_annotation_dir: str | os.PathLike | None = None, strict: bool = False,
            include_predicted: bool = False, progress: bool = True) -> ConversionSummary:
    """Read, split and write. See the module docstring for the output layout.

    Args:
        annotation_dir: the folder of annotation files.
        image_dir: the folder their ``image`` names are relative to.
        output_dir: where ``annotations/*.json`` and ``*.txt`` go.
        train_ratio, val_ratio, test_ratio: the split shares (sum 1; 0 means no such split).
        seed: seed of the split shuffle.
        val_annotation_dir: a folder that is the validation split as a whole;
            ``annotation_dir`` is then split into train and test in the proportion of their
            ratios. An image annotated in both folders stays in validation only.
        strict: turn any file left out for a defect into a failure.
        include_predicted: use unreviewed predictions too.
        progress: show progress bars.

    Raises:
        ConversionError: bad ratios, overlapping folders, an empty split, or any bad file when
            ``strict``.
    """
    ratios = check_ratios(train_ratio, val_ratio, test_ratio)
    output_dir = Path(output_dir)
    folders = [Path(annotation_dir)] + ([Path(val_annotation_dir)] if val_annotation_dir else [])
    check_output_dir(output_dir, folders)
    reader = AnnotationReader(image_dir, include_predicted=include_predicted,
                              progress=progress)
    summary = ConversionSummary()
    taken: dict[Path, Path] = {}
    val_contents = None
    if val_annotation_dir is not None:
        if Path(val_annotation_dir).resolve() == Path(annotation_dir).resolve():
            raise ConversionError(
                f'--val-annotation-dir {val_annotation_dir} is the annotation folder itself: '
                'every image would be in validation and in training; give another folder, or '
                'leave the option out to split the folder by --val-ratio')
        # read first, so that an image annotated in both folders stays in validation only
        val_contents = reader.read(val_annotation_dir, taken)
        rest = ratios['train'] + ratios['test']
        if rest <= 0:
            raise ConversionError('with --val-annotation-dir, train and test ratios cannot '
                                  'both be 0')
        ratios = dict(train=ratios['train'] / rest, val=0.0, test=ratios['test'] / rest)
    contents = reader.read(annotation_dir, taken)
    summary.contents.extend(contents)
    if val_contents is not None:
        summary.contents.extend(val_contents)
    if strict and summary.problems:
        raise ConversionError(
            f'{len(summary.problems)} bad annotation files (--strict):\n  ' +
            '\n  '.join(summary.problems))

    splits = split_records(contents.records, ratios, seed)
    if val_contents is not None:
        splits['val'] = val_contents.records
        ratios['val'] = 1.0
    for name in SPLITS:
        if ratios[name] > 0 and not splits[name]:
            raise ConversionError(
                f'the {name} split is empty: {len(contents.records)} usable annotation files '
                f'with ratio {ratios[name]:g}; add annotations or change the ratios')

    ann_out = output_dir / 'annotations'
    ann_out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(ann_out)
    next_id = 1
    for name in SPLITS:
        split = splits[name]
        summary.counts[name] = len(split)
        summary.faces[name] = sum(len(r.annotation.faces) for r in split)
        if ratios[name] == 0:
            continue
        summary.outputs.append(write_coco(split, ann_out / f'{name}.json', output_dir, next_id))
        next_id += len(split)
        listing = output_dir / f'{name}.txt'
        listing.write_text(''.join(f'{r.name}\n' for r in split), encoding='utf-8')
        summary.outputs.append(listing)
    return summary
