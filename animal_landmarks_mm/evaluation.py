"""Evaluate a checkpoint on annotated images: numbers, predictions, a CED plot and pictures.

The logic behind ``tools/evaluate.py``. Ground truth comes from a folder of annotation files
(optionally only those a split file lists; read and validated by the converter's
:class:`~.converter.AnnotationReader`) or from a COCO file written by the converter. Each face is
predicted from its ground-truth box (annotated, or made from its points exactly as the converter
does) with mmpose's ``inference_topdown``, so the numbers equal those of ``tools/test.py`` on the
same faces.
"""
from __future__ import annotations

import io
import math
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from .annotation import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MODEL_ANNOTATOR,
    STATUS_PREDICTED,
    AnnotationError,
    Face,
    ImageAnnotation,
    fit_name,
    image_size,
    lies_in_folder,
    parse_annotation,
    read_image,
    remove_stale_temporaries,
    write_bytes_atomic,
    write_image,
    write_json_atomic,
)
from .converter import (
    AnnotationReader,
    FolderContents,
    check_image_complete,
    check_usable,
    face_box_xyxy,
    read_split_listing,
)
from .dataset import read_coco_file
from .errors import AnimalLandmarksError, counted, printable, shown_value
from .metrics import FAILURE_THRESHOLD, compute_landmark_metrics, landmark_errors, per_face_nme
from .schedule import kept_faces
from .schema import (
    ABSENT,
    GROUP_COLORS,
    INTEROCULAR_INDICES,
    KEYPOINT_NAMES,
    NUM_KEYPOINTS,
    OCCLUDED,
    VISIBILITY_FLAGS,
    VISIBLE,
    interocular_label,
)


class EvaluationInputError(AnimalLandmarksError, ValueError):
    """Inputs that cannot be evaluated; the message is one line."""


#: What :func:`evaluate` writes into its output folder.
OUTPUT_FILES = ('metrics.txt', 'metrics.json', 'predictions.json', 'ced.png', 'visualizations/')
# the files among them (each run removes them before it writes them)
_OUTPUT_FILES = tuple(name for name in OUTPUT_FILES if not name.endswith('/'))


def check_outside_inputs(output_dir: str | os.PathLike,
                         annotation_dir: str | os.PathLike | None = None,
                         image_dirs: Iterable[str | os.PathLike] = (),
                         input_files: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse an output folder among the files evaluated: the annotation folder or a folder of
    images, or inside one. Among the annotations its ``metrics.json`` would overwrite the
    annotation of an image ``metrics.png``, and its ``predictions.json`` would be read later as
    an (unusable) annotation file; among the images its ``ced.png`` and pictures would replace
    a person's images of those names. Nor may the images lie in its ``visualizations/``,
    whose earlier pictures each run removes.

    Args:
        output_dir: ``--output-dir``.
        annotation_dir: ``--annotation-dir``, if the faces come from one.
        image_dirs: ``--image-dir``, or the folders of a COCO file's images.
        input_files: ``--ann-file``, ``--split-file``: none may be one of the outputs, which
            each run removes before it writes them (a COCO file named ``predictions.json`` in
            the output folder was replaced by the predictions), a link to one neither.

    Raises:
        EvaluationInputError: naming the output folder and the folder it lies in, or the input
            file and the output it would be.
    """
    outputs = Path(output_dir).resolve()
    for given in input_files:
        # where the file really is: a link's own removal leaves its file, but an input that is
        # a link to an output's place goes with the output
        if Path(given).resolve() in {outputs / name for name in _OUTPUT_FILES}:
            raise EvaluationInputError(
                f'{given} is the {Path(given).resolve().name} --output-dir {output_dir} would '
                'replace; choose another output folder, or move the file')
    if annotation_dir is not None and lies_in_folder(output_dir, annotation_dir):
        raise EvaluationInputError(
            f'--output-dir {output_dir} would write {", ".join(OUTPUT_FILES)} among the '
            f'annotation files of {annotation_dir}; choose an output folder outside it')
    for folder in image_dirs:
        if lies_in_folder(output_dir, folder):
            raise EvaluationInputError(
                f'--output-dir {output_dir} would write {", ".join(OUTPUT_FILES)} among the '
                f'images of {folder}; choose an output folder outside it')
        if lies_in_folder(folder, Path(output_dir) / 'visualizations'):  # an earlier run's
            # pictures are removed from there: images named like them (001_cat.jpg) with them
            raise EvaluationInputError(
                f'--output-dir {output_dir}: its visualizations/ holds the images of {folder}, '
                'where each run removes the pictures of the one before; choose another output '
                'folder')


def read_split_file(split_file: str | os.PathLike) -> set[str]:
    """The annotation files a split file lists (one per line, relative to their annotation
    folder, as the converter's ``train.txt`` / ``val.txt`` / ``test.txt``).

    Raises:
        EvaluationInputError: an unreadable file, a FIFO or device (never waited on or read),
            or a file larger than :data:`~.converter.SPLIT_LISTING_MAX_BYTES`.
    """
    try:
        return set(read_split_listing(split_file))
    except AnnotationError as e:  # not a regular file, or too large: one line naming it
        raise EvaluationInputError(str(e)) from None
    except (OSError, ValueError) as e:  # ValueError: not UTF-8, a NUL in the name
        raise EvaluationInputError(f'{split_file}: cannot read ({e})') from None


#: how many of the files a split file lists but the annotation folder lacks are named (and of
#: the annotations of a COCO file left out)
_NAMES_SHOWN = 5


def _shown_names(names: list[str]) -> str:
    """The first :data:`_NAMES_SHOWN` names, and how many more (``a, b, c, d, e and 3
    more``)."""
    return ', '.join(names[:_NAMES_SHOWN]) + (
        f' and {len(names) - _NAMES_SHOWN} more' if len(names) > _NAMES_SHOWN else '')


@dataclass
class EvalFace:
    """One ground-truth face to predict."""

    image_path: Path
    #: as the ground truth names it, folders kept: relative to ``--image-dir``, or a COCO
    #: file's ``file_name`` (relative to the converter's output folder)
    image_name: str
    width: int
    height: int
    points: np.ndarray  # (28, 2)
    visibility: np.ndarray  # (28,)
    box: np.ndarray  # (4,) x0, y0, x1, y1


def faces_from_annotation_dir(annotation_dir: str | os.PathLike, image_dir: str | os.PathLike,
                              split_file: str | os.PathLike | None = None
                              ) -> tuple[list[EvalFace], FolderContents]:
    """Read (and validate, as the converter does) the annotation files of a folder.

    Args:
        annotation_dir: folder of annotation JSON files.
        image_dir: the folder their ``image`` names are relative to.
        split_file: only the files it lists (one per line, relative to ``annotation_dir``, as
            the converter's ``test.txt``).

    Returns:
        The faces, and what the folder held: ``problems`` names the files left out for a
        defect, and the listed files the folder lacks.

    Raises:
        EvaluationInputError: a folder that is not there, or an unreadable split file.
    """
    # once, not once per annotation file ('image not found' each) and then 'no faces'
    for flag, folder in (('--annotation-dir', annotation_dir), ('--image-dir', image_dir)):
        if not Path(folder).is_dir():
            raise EvaluationInputError(f'{flag} {folder}: no such folder')
    # only the listed files are read: the others' problems are not this evaluation's
    wanted = None if split_file is None else read_split_file(split_file)
    contents = AnnotationReader(image_dir, progress=False).read(annotation_dir, only=wanted)
    records = contents.records
    if wanted is not None:
        records = [r for r in records if r.name in wanted]
        # the listed files that are there but bad are named in problems already, and those
        # skipped in the annotator (or unreviewed predictions) are left out as without a list
        found = {path.relative_to(annotation_dir).as_posix() for path in contents.files}
        missing = sorted(wanted - found)
        if missing:
            contents.problems.append(
                f'{split_file}: {len(missing)} listed '
                f'{"file is" if len(missing) == 1 else "files are"} not in {annotation_dir}: '
                f'{_shown_names(missing)}')
    faces = []
    for record in records:
        ann = record.annotation
        for face in ann.faces:
            points = np.array([p if p is not None else (0.0, 0.0) for p in face.landmarks])
            faces.append(EvalFace(
                image_path=record.image_path, image_name=ann.image, width=ann.width,
                height=ann.height, points=points, visibility=np.array(face.visibility),
                box=np.array(face_box_xyxy(face, ann.width, ann.height))))
    return faces, contents


def _coco_face(ann: dict) -> dict:
    """An annotation of a checked COCO file (:func:`.dataset.check_coco`: 28 x 3 keypoints, a
    box of 4 numbers) as a face of the project's format, for :func:`.annotation.
    parse_annotation` to validate: landmarks (null where absent), visibility, corner box."""
    keypoints, bbox = ann['keypoints'], ann['bbox']
    landmarks, visibility = [], []
    for x, y, v in zip(keypoints[0::3], keypoints[1::3], keypoints[2::3]):
        if isinstance(v, float) and v.is_integer():  # a writer's 2.0 is the flag 2
            v = int(v)
        visibility.append(v)
        landmarks.append(None if v == ABSENT else [x, y])  # an absent point's 0, 0 unused
    x, y, w, h = bbox
    return dict(landmarks=landmarks, visibility=visibility, bbox=[x, y, x + w, y + h])


def _coco_image(image: Any, anns: list[dict], root: Path) -> ImageAnnotation:
    """One image of a COCO file with its faces, validated as the converter validates an
    annotation file and its image (:func:`.annotation.parse_annotation`, :func:`.converter.
    check_usable`: finite points on the image, the schema's visibility flags, a positive
    integer size, boxes with an area on the image; the image there, whole and of that size).

    Raises:
        AnnotationError: one line naming the image and the annotation (by its id), without
            the file name.
    """
    ids = [ann.get('id') for ann in anns]
    where = f'image {shown_value(image.get("file_name"))} (id {shown_value(image.get("id"))})'
    try:
        annotation = parse_annotation(dict(
            format=FORMAT_NAME, version=FORMAT_VERSION, image=image.get('file_name'),
            image_size=dict(width=image.get('width'), height=image.get('height')),
            faces=[_coco_face(ann) for ann in anns]))
        # its boxes are the converter's, made from the points and cut to the image
        check_usable(annotation, derived_boxes=True)
    except AnnotationError as e:  # 'face 1' of the image is its second annotation: by its id
        reason = re.sub(r'\bface (\d+)\b', lambda m: f'annotation {shown_value(ids[int(m[1])])}',
                        str(e))
        raise AnnotationError(f'{where}: {reason}') from None
    # the converter's checks of an image, before any model runs: there, whole, of its size
    path = root / annotation.image
    if not path.is_file():
        raise AnnotationError(f'{where}: image not found: {path}')
    try:
        check_image_complete(path)
        size = image_size(path)
    except AnnotationError as e:
        raise AnnotationError(f'{where}: {e}') from None
    if size != (annotation.width, annotation.height):
        raise AnnotationError(f'{where}: its width and height in the file, '
                              f'{annotation.width}x{annotation.height}, do not match the '
                              f'image ({size[0]}x{size[1]})')
    return annotation


def faces_from_coco(ann_file: str | os.PathLike) -> tuple[list[EvalFace], list[str]]:
    """Faces of a COCO file written by the converter (image paths relative to its folder's
    parent, the converter's output folder), in the file's order. The file is read and checked
    as training reads its files (:func:`.dataset.read_coco_file`). The faces mmpose's dataset
    leaves out (crowd faces, faces without labelled points: :func:`.schedule.kept_faces`) are
    left out here too, unvalidated as training leaves them, so that the numbers are those of
    ``tools/test.py``; every face kept and its image are then validated as the converter's
    (:func:`_coco_image`), before any is used: a bad one stops the evaluation before a model
    runs, not after some images were predicted or outputs written. An image's pixels are not
    decoded here: one that passes these checks but cannot be decoded (a PNG with a corrupt IDAT
    chunk) has its faces left out by :func:`evaluate`, with a line naming it.

    Returns:
        The faces, and a line naming the annotations left out, if any.

    Raises:
        EvaluationInputError: one line naming the file and the first defect.
    """
    ann_file = Path(ann_file)
    try:
        coco = read_coco_file(ann_file)
    except AnnotationError as e:
        raise EvaluationInputError(str(e)) from None
    root = ann_file.resolve().parent.parent
    # the rule is training's; only the faces kept are validated, as training validates
    # nothing of those it leaves out (a face of no labelled point, a crowd's)
    kept = {id(ann) for ann in kept_faces(coco)}
    left_out = [shown_value(ann['id']) for ann in coco['annotations'] if id(ann) not in kept]
    try:
        images = {image['id']: image for image in coco['images']}
        by_image: dict[int, list[dict]] = {}
        order = []  # (image id, its face's index) of each annotation kept
        for ann in coco['annotations']:
            if id(ann) in kept:
                faces_of_image = by_image.setdefault(ann['image_id'], [])
                order.append((ann['image_id'], len(faces_of_image)))
                faces_of_image.append(ann)
        annotations = {image_id: _coco_image(images[image_id], anns, root)
                       for image_id, anns in by_image.items()}
    except AnnotationError as e:
        raise EvaluationInputError(f'{ann_file}: {e}') from None
    except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as e:  # a shape
        # no check foresaw: still one line
        raise EvaluationInputError(f'{ann_file}: not a COCO keypoints file of this layout '
                                   f'({e.__class__.__name__}: '
                                   f'{printable(str(e), one_line=True, limit=80)})') from None
    faces = []
    for image_id, index in order:
        annotation = annotations[image_id]
        face = annotation.faces[index]
        faces.append(EvalFace(
            image_path=root / annotation.image, image_name=annotation.image,
            width=annotation.width, height=annotation.height,
            points=np.array([p if p is not None else (0.0, 0.0) for p in face.landmarks]),
            visibility=np.array(face.visibility), box=np.array(face.bbox)))
    problems = [] if not left_out else [
        f'{ann_file}: {counted(len(left_out), "annotation")} that mmpose\'s dataset leaves out '
        f'too (crowd, without labelled points, or a box of no size on the image): '
        f'{"id" if len(left_out) == 1 else "ids"} {_shown_names(left_out)}']
    return faces, problems


def predict_faces(predictor, checkpoint, faces: list[EvalFace], progress: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, dict[Path, str]]:
    """Predicted points ``(N, 28, 2)`` and their scores ``(N, 28)``, all faces of an image in
    one batch.

    Args:
        predictor: the model (:func:`.infer.load_predictor`).
        checkpoint: its file or name, for the progress bar.
        faces: the faces to predict.
        progress: show a progress bar.

    Returns:
        The points and the scores (NaN for the faces of an image that cannot be decoded), and
        each such image with why: the checks before a model runs read an image's header and
        end, not its pixels (a PNG with a corrupt IDAT chunk passes them), so it is found
        here, where the other images are predicted already.
    """
    by_image: dict[Path, list[int]] = {}
    for i, face in enumerate(faces):
        by_image.setdefault(face.image_path, []).append(i)
    pred = np.full((len(faces), NUM_KEYPOINTS, 2), np.nan)
    scores = np.full((len(faces), NUM_KEYPOINTS), np.nan)
    undecodable = {}
    for path, indices in tqdm(by_image.items(), desc=f'evaluating {Path(checkpoint).name}',
                              unit='img', disable=not progress):
        try:
            image = read_image(path)
        except AnnotationError as e:  # as quality.predict_faces: its faces are left out
            undecodable[path] = str(e)
            continue
        sample = predictor.predict(image, np.stack([faces[i].box for i in indices]))
        pred[indices] = sample.pred_instances.keypoints
        scores[indices] = sample.pred_instances.keypoint_scores
    return pred, scores, undecodable


def print_left_out(problem: str) -> None:
    """What is left out of an evaluation, one line on stderr, ``left out: <problem>`` (escaped:
    a file's name may hold a terminal's escape sequences)."""
    print(printable(f'left out: {problem}', one_line=True), file=sys.stderr)


def metrics_table(metrics: dict[str, float], title: str) -> str:
    """metrics.txt: the headline numbers, then groups, then every point."""
    def fmt(key):
        return f'{metrics[key]:.4f}' if key in metrics else '-'
    thr = f'{FAILURE_THRESHOLD:g}'
    a, b = INTEROCULAR_INDICES
    rows = [('faces', str(int(metrics['faces']))),
            # what the inter-ocular numbers below leave out: no distance to divide by
            ('faces without eye corners', f'{int(metrics["faces_without_eye_corners"])}   '
             f'(points {a} and {b} absent or on one spot: out of the inter-ocular numbers)'),
            (f'NME ({interocular_label()})', fmt('NME')),
            ('NME (face box)', fmt('NME_box')),
            (f'NME {VISIBILITY_FLAGS[VISIBLE]} points', fmt('NME_visible')),
            (f'NME {VISIBILITY_FLAGS[OCCLUDED]} points',
             f'{fmt("NME_occluded")}   ({int(metrics["occluded_points"])} points)'),
            (f'failure rate @{thr}', fmt(f'FR@{thr}')),
            (f'AUC @{thr}', fmt(f'AUC@{thr}'))]
    lines = [title, '=' * len(title), ''] + [f'{label:27s}{value}' for label, value in rows]
    lines += ['', f'per group (NME, {interocular_label()})']
    lines += [f'  {group:10s} {fmt(f"NME_{group}")}' for group in GROUP_COLORS]
    lines += ['', f'per point (NME, {interocular_label()})']
    lines += [f'  {k:2d} {name:24s} {fmt(f"NME_point/{name}")}'
              for k, name in enumerate(KEYPOINT_NAMES)]
    return '\n'.join(lines) + '\n'


def predictions_as_annotations(faces: list[EvalFace], pred: np.ndarray, scores: np.ndarray,
                               checkpoint) -> list:
    """Every prediction, one annotation object (the project's format, status ``predicted``,
    with the points' scores) per image."""
    images: dict[Path, ImageAnnotation] = {}
    for face, points, face_scores in zip(faces, pred, scores):
        ann = images.setdefault(face.image_path, ImageAnnotation(
            face.image_name, face.width, face.height, status=STATUS_PREDICTED,
            meta=dict(annotator=MODEL_ANNOTATOR, prediction=dict(checkpoint=str(checkpoint)))))
        ann.faces.append(Face([(float(x), float(y)) for x, y in points],
                              bbox=tuple(float(v) for v in face.box),
                              scores=[float(v) for v in face_scores]))
    return [ann.to_json() for ann in images.values()]


def curve_labels(models: list[str | os.PathLike]) -> list[str]:
    """Distinct legend labels for models' CED curves: each file's name, with as many of its
    parent folders as it takes to tell the files apart (``run_a/best.pth`` and
    ``run_b/best.pth``, where the names alone would collide); a model given twice is
    numbered."""
    paths = [Path(str(model)) for model in models]
    deepest = max(len(path.parts) for path in paths)
    for depth in range(1, deepest + 1):
        labels = ['/'.join(path.parts[-depth:]) for path in paths]
        if len(set(labels)) == len(labels):
            return labels
    numbered = []
    for k, label in enumerate(labels):
        count = labels[:k].count(label)
        numbered.append(f'{label} ({count + 1})' if count else label)
    return numbered


def plot_ced(curves: dict[str, np.ndarray], out_file: str | os.PathLike,
             limit: float = FAILURE_THRESHOLD) -> None:
    """The cumulative error distribution of per-face NME, one curve per model (a model with
    no face to measure, every face's eye corners absent or on one spot, is named in the legend
    without a curve)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    for label, face_nme in curves.items():
        face_nme = np.sort(face_nme[~np.isnan(face_nme)])
        if not face_nme.size:
            ax.plot([], [], label=f'{label} (no curve: in every face points '
                    f'{" and ".join(map(str, INTEROCULAR_INDICES))} are absent or on one spot)')
            continue
        x = np.concatenate([[0], face_nme, [max(limit, face_nme.max(initial=0))]])
        y = np.concatenate([[0], np.arange(1, len(face_nme) + 1) / len(face_nme), [1]])
        auc = np.maximum(0, limit - face_nme).mean() / limit
        ax.step(x, y, where='post', label=f'{label} (AUC@{limit:g} = {auc:.3f})')
    ax.axvline(limit, color='grey', linestyle=':', linewidth=1)
    ax.set_xlim(0, limit * 1.5)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel(f'NME ({interocular_label()}) per face')
    ax.set_ylabel('share of faces')
    ax.set_title('Cumulative error distribution')
    ax.grid(alpha=0.3)
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format='png')
    plt.close(fig)
    write_bytes_atomic(out_file, png.getvalue())


#: pixels a picture shows around a face's box at the least (a face whose points lie within a
#: pixel has a box of no size, and a quarter of nothing around it is no picture)
_MIN_PICTURE_PAD = 8


def draw_comparison(face: EvalFace, pred: np.ndarray, nme: float, out_file: str | os.PathLike,
                    min_side: int = 384) -> None:
    """Ground truth (green) and prediction (magenta), a line per point between them, the face's
    NME in the corner; the picture is the face box region, enlarged for small faces."""
    image = read_image(face.image_path)  # decoded for the prediction just before
    x0, y0, x1, y1 = face.box
    # a face whose points lie within a pixel (a box of no size) still gets pixels around it:
    # the box is on the image, so the padded region, rounded outwards, holds at least one
    pad = max(0.25 * max(x1 - x0, y1 - y0), _MIN_PICTURE_PAD)
    left, top = max(0, math.floor(x0 - pad)), max(0, math.floor(y0 - pad))
    right = min(face.width, math.ceil(x1 + pad))
    bottom = min(face.height, math.ceil(y1 + pad))
    crop = image[top:bottom, left:right]
    scale = max(1.0, min_side / max(1, min(crop.shape[:2])))
    crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    # cv2.resize maps a pixel's centre u to (u + 0.5) * scale - 0.5: the points go with it
    # (times the scale alone put them half a new pixel per enlargement up and left: 7.5 px on a
    # face enlarged 16 times)
    offset = np.array([left, top])
    gt_px = (face.points - offset + 0.5) * scale - 0.5
    pred_px = (pred - offset + 0.5) * scale - 0.5
    for k in range(NUM_KEYPOINTS):
        if face.visibility[k] == ABSENT:
            continue
        g = tuple(int(round(v)) for v in gt_px[k])
        p = tuple(int(round(v)) for v in pred_px[k])
        cv2.line(crop, g, p, (0, 215, 255), 1, cv2.LINE_AA)
        cv2.circle(crop, g, 3, (0, 200, 0), -1, cv2.LINE_AA)
        cv2.circle(crop, p, 3, (255, 0, 255), -1, cv2.LINE_AA)
    text = f'NME {nme:.3f}' if np.isfinite(nme) else 'NME -'  # no eye corners to normalise
    cv2.rectangle(crop, (0, 0), (12 + 11 * len(text), 26), (0, 0, 0), -1)
    cv2.putText(crop, text, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1,
                cv2.LINE_AA)
    try:
        write_image(out_file, crop)
    except ValueError as e:  # a picture JPEG cannot hold: a side over 65,535 pixels, an
        # enlarged crop of a very narrow image
        raise EvaluationInputError(str(e)) from None


#: the pictures :func:`evaluate` writes: the rank (three digits or more), the image's name
_PICTURE_NAME = re.compile(r'\d{3,}_.*\.jpg')


def _picture_stems(image_names: list[str]) -> list[str]:
    """What each face's picture is named after: its image's name without the suffix, the
    folders below those every image evaluated shares joined to it by ``_`` (``a/1.png`` and
    ``b/1.png`` are pictured as ``a_1`` and ``b_1``, not both as ``1``; a COCO file's
    ``images/a/1.png`` and ``images/b/1.png`` the same)."""
    paths = [PurePosixPath(name) for name in image_names]
    # an absolute name's root ('/') is no folder: joined in, it made a picture's name a path
    folders = [tuple(part for part in path.parent.parts if '/' not in part) for path in paths]
    shared = 0
    while all(len(folder) > shared for folder in folders) and len(
            {folder[shared] for folder in folders}) == 1:
        shared += 1
    return ['_'.join((*folder[shared:], path.stem)) for folder, path in zip(folders, paths)]


def _check_output_dir(output_dir: Path) -> None:
    """Refuse an output folder that cannot be made or written, without making it.

    Raises:
        EvaluationInputError: naming the folder and the reason.
    """
    existing = output_dir
    # a link is there even when what it names is not: making the folder fails on it
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if existing.is_symlink() and not existing.exists():  # to nothing, or a loop of links
        raise EvaluationInputError(f'--output-dir {output_dir}: {existing} is a link to '
                                   f'{os.readlink(existing)}, which leads to no file or folder')
    if not existing.is_dir():
        raise EvaluationInputError(f'--output-dir {output_dir}: {existing} is a file, not a '
                                   'folder')
    if not os.access(existing, os.W_OK):
        raise EvaluationInputError(f'--output-dir {output_dir}: {existing} is not writable')


def evaluate(checkpoint, faces: list[EvalFace], output_dir: str | os.PathLike,
             config=None, device: str = 'cpu', visualize: bool = False,
             num_vis_samples: int = 20, worst_first: bool = False, compare=None,
             progress: bool = True,
             left_out: Callable[[str], None] = print_left_out) -> dict[str, float]:
    """Predict every face and write metrics.txt/json, predictions.json, ced.png and pictures.

    Args:
        checkpoint: the model to evaluate.
        faces: the ground truth (:func:`faces_from_annotation_dir`, :func:`faces_from_coco`).
        output_dir: where the outputs go.
        config: the model config; default the project's main config (a checkpoint's stored
            config is never executed: it is code).
        device: ``cpu`` or ``cuda``.
        visualize: write ``visualizations/``.
        num_vis_samples: how many pictures.
        worst_first: pictures of the worst faces rather than a fixed random sample.
        compare: a second checkpoint (same config default) whose CED curve joins the plot.
        progress: show a progress bar of the predictions.
        left_out: told, one line each, of the images whose faces are left out: those that
            cannot be decoded (found only when the model reads them: their header and end
            were checked before, not their pixels), as ``check_annotations`` leaves them out
            of its model check.

    Returns:
        The metrics. Those with nothing to measure are left out (as :func:`.metrics.
        compute_landmark_metrics` leaves them out): without a face that has both eye corners
        apart, every inter-ocular number, ``FR@0.1`` and ``AUC@0.1`` among them.

    Raises:
        EvaluationInputError: no faces (none whose image can be decoded among them), or an
            output folder that cannot be made or lies among the images
            (:func:`check_outside_inputs`).
        NonFinitePredictionError: a model that gives NaN points (a diverged run), before
            anything is written.
    """
    if not faces:
        raise EvaluationInputError('no faces to evaluate')
    output_dir = Path(output_dir)
    _check_output_dir(output_dir)  # before minutes of predictions, not after
    # the folders of the images themselves (a COCO file's among them): whoever calls this
    check_outside_inputs(output_dir, image_dirs={face.image_path.parent for face in faces})
    # both models load before either predicts (a second file misnamed was found after minutes
    # of the first's predictions), and run before anything is written (the folder included):
    # a failing one leaves no half of the outputs
    from .infer import load_predictor
    predictor = load_predictor(checkpoint, config=config, device=device)
    compare_predictor = None if compare is None else load_predictor(compare, config=config,
                                                                    device=device)
    pred, scores, undecodable = predict_faces(predictor, checkpoint, faces, progress)
    compare_pred = None
    if compare is not None:
        compare_pred, _, compare_undecodable = predict_faces(compare_predictor, compare, faces,
                                                             progress)
        undecodable.update(compare_undecodable)  # the same images, unless one changed between
    # an image that cannot be decoded stops nothing: its faces are left out, and named
    for path, reason in undecodable.items():
        count = sum(face.image_path == path for face in faces)
        left_out(f'{reason} (its {counted(count, "face")})')
    kept = [i for i, face in enumerate(faces) if face.image_path not in undecodable]
    if not kept:
        raise EvaluationInputError('no faces to evaluate: none of their images could be '
                                   'read')
    faces, pred, scores = [faces[i] for i in kept], pred[kept], scores[kept]
    if compare is not None:
        compare_pred = compare_pred[kept]
    gt = np.stack([f.points for f in faces])
    visibility = np.stack([f.visibility for f in faces])
    boxes = np.stack([f.box for f in faces])
    metrics = compute_landmark_metrics(pred, gt, visibility, boxes)
    # made before anything is removed or written: what fails here leaves an earlier run's
    # outputs as they were
    table = metrics_table(metrics, f'{Path(checkpoint).name} on {counted(len(faces), "face")}')
    predictions = predictions_as_annotations(faces, pred, scores, checkpoint)
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output_dir)  # what a killed run left half-written
    # Every output of an earlier run goes before the first of this run's is written: a write
    # that fails (a full disk) then leaves part of this run's outputs, never this run's
    # metrics beside another model's curve or pictures (each file alone is replaced whole,
    # but not the set). An earlier run's pictures (other faces, another count) would pass for
    # this run's even when it writes none.
    for name in _OUTPUT_FILES:
        (output_dir / name).unlink(missing_ok=True)  # a link there: the link, not its file
    vis_dir = output_dir / 'visualizations'
    for picture in vis_dir.glob('*.jpg'):
        # a folder of such a name is no picture of a run (unlink fails on it, after the
        # outputs above were removed): left, and its picture not drawn
        if _PICTURE_NAME.fullmatch(picture.name) and (picture.is_symlink()
                                                       or not picture.is_dir()):
            picture.unlink()
    write_json_atomic(output_dir / 'metrics.json', metrics)
    write_bytes_atomic(output_dir / 'metrics.txt', table.encode('utf-8'))
    write_json_atomic(output_dir / 'predictions.json', predictions, indent=None)

    def faces_nme(points: np.ndarray) -> np.ndarray:
        return per_face_nme(landmark_errors(points, gt, visibility, boxes)['interocular'])

    face_nme = faces_nme(pred)
    if compare is None:
        curves = {curve_labels([checkpoint])[0]: face_nme}
    else:  # two runs' best.pth: labelled apart, or the second curve would replace the first
        label, compare_label = curve_labels([checkpoint, compare])
        curves = {label: face_nme, compare_label: faces_nme(compare_pred)}
    plot_ced(curves, output_dir / 'ced.png')

    if visualize:
        vis_dir.mkdir(exist_ok=True)
        remove_stale_temporaries(vis_dir)
        order = np.argsort(-np.nan_to_num(face_nme, nan=-1)) if worst_first else \
            np.random.default_rng(0).permutation(len(faces))
        stems = _picture_stems([face.image_name for face in faces])
        for rank, i in enumerate(order[:num_vis_samples]):
            # an image's name may be as long as a name can be: the rank and .jpg need room
            name = fit_name(f'{rank:03d}_{stems[i]}', '.jpg')
            try:
                draw_comparison(faces[i], pred[i], face_nme[i], vis_dir / name)
            except IsADirectoryError:  # one picture less, not the run's end
                print(printable(f'warning: no picture drawn: {vis_dir / name} is a folder',
                                one_line=True), file=sys.stderr)
    return metrics
