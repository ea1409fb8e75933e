"""The 28-point face layout, defined once.

The layout is anime_face_detector's (see LANDMARKS.md in the project's shared notes): a checkpoint
trained here drops into that library, and its human-anime-face checkpoint is a valid start for
fine-tuning. "left" and "right" are as seen in the image (image-left, image-right).

Everything else derives from the table below: the mmpose metainfo that
:class:`~animal_landmarks_mm.dataset.AnimalCharacterFaceDataset` carries (:func:`dataset_info`),
flip pairs, skeleton, group colours, the visibility flags, the annotator's prompts and chart, the
metrics' groups and normalisation.
"""
from __future__ import annotations

from dataclasses import dataclass

NUM_KEYPOINTS = 28
DATASET_NAME = 'animal_character_face'

#: Points whose distance normalises NME: the outer eye corners.
INTEROCULAR_INDICES = (11, 19)

#: Visibility flag of a point (COCO's ``v``, kept as it is in the COCO files): seen and placed.
VISIBLE = 2
#: Hidden (hair, a hand, the face turned away) and placed by estimate; trained on, counted apart.
OCCLUDED = 1
#: Not there at all (out of the picture, cut off); no coordinates, never trained on or counted.
ABSENT = 0
VISIBILITY_FLAGS: dict[int, str] = {VISIBLE: 'visible', OCCLUDED: 'occluded', ABSENT: 'absent'}

#: Group name -> RGB colour used for points and lines of that group.
GROUP_COLORS: dict[str, tuple[int, int, int]] = {
    'contour': (255, 153, 51),
    'eyebrows': (153, 51, 255),
    'eyes': (51, 153, 255),
    'nose': (255, 51, 153),
    'mouth': (51, 204, 102),
}


@dataclass(frozen=True)
class Landmark:
    """One of the 28 landmarks.

    Attributes:
        name: mmpose keypoint name; contains ``left`` or ``right`` exactly when the point has a
            mirror partner, whose name swaps the two words.
        description: what a person annotating should click.
        group: one of :data:`GROUP_COLORS`.
    """

    name: str
    description: str
    group: str


LANDMARKS: tuple[Landmark, ...] = (
    Landmark('temple_left', 'temple, image-left', 'contour'),
    Landmark('cheek_left', 'cheek, image-left', 'contour'),
    Landmark('chin', 'chin', 'contour'),
    Landmark('cheek_right', 'cheek, image-right', 'contour'),
    Landmark('temple_right', 'temple, image-right', 'contour'),
    Landmark('brow_left_outer', 'left eyebrow, outer end', 'eyebrows'),
    Landmark('brow_left_middle', 'left eyebrow, middle', 'eyebrows'),
    Landmark('brow_left_inner', 'left eyebrow, inner end', 'eyebrows'),
    Landmark('brow_right_inner', 'right eyebrow, inner end', 'eyebrows'),
    Landmark('brow_right_middle', 'right eyebrow, middle', 'eyebrows'),
    Landmark('brow_right_outer', 'right eyebrow, outer end', 'eyebrows'),
    Landmark('eye_left_upper_outer', 'left eye, upper lid, outer corner', 'eyes'),
    Landmark('eye_left_upper_top', 'left eye, upper lid, top', 'eyes'),
    Landmark('eye_left_upper_inner', 'left eye, upper lid, inner end', 'eyes'),
    Landmark('eye_left_lower_outer', 'left eye, lower lid, outer end', 'eyes'),
    Landmark('eye_left_lower_bottom', 'left eye, lower lid, bottom', 'eyes'),
    Landmark('eye_left_lower_inner', 'left eye, lower lid, inner end', 'eyes'),
    Landmark('eye_right_upper_inner', 'right eye, upper lid, inner end', 'eyes'),
    Landmark('eye_right_upper_top', 'right eye, upper lid, top', 'eyes'),
    Landmark('eye_right_upper_outer', 'right eye, upper lid, outer corner', 'eyes'),
    Landmark('eye_right_lower_inner', 'right eye, lower lid, inner end', 'eyes'),
    Landmark('eye_right_lower_bottom', 'right eye, lower lid, bottom', 'eyes'),
    Landmark('eye_right_lower_outer', 'right eye, lower lid, outer end', 'eyes'),
    Landmark('nose_tip', 'nose tip', 'nose'),
    Landmark('mouth_left', 'mouth corner, image-left', 'mouth'),
    Landmark('upper_lip', 'upper lip, middle', 'mouth'),
    Landmark('mouth_right', 'mouth corner, image-right', 'mouth'),
    Landmark('lower_lip', 'lower lip, middle', 'mouth'),
)

KEYPOINT_NAMES: tuple[str, ...] = tuple(lm.name for lm in LANDMARKS)
#: keypoint name -> its index
KEYPOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

#: Lines drawn between points: contour, each eyebrow, each eyelid, the two lips.
SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4),
    (5, 6), (6, 7), (8, 9), (9, 10),
    (11, 12), (12, 13), (14, 15), (15, 16),
    (17, 18), (18, 19), (20, 21), (21, 22),
    (24, 25), (25, 26), (24, 27), (27, 26),
)


def _mirror_name(name: str) -> str:
    """Swap ``left`` and ``right`` in a keypoint name."""
    return name.replace('left', '\0').replace('right', 'left').replace('\0', 'right')


def flip_indices() -> list[int]:
    """Index of each point's horizontal mirror (mmpose ``flip_indices``), derived from the names."""
    return [KEYPOINT_INDEX[_mirror_name(name)] for name in KEYPOINT_NAMES]


def group_indices() -> dict[str, list[int]]:
    """Group name -> indices of its points, in index order."""
    groups: dict[str, list[int]] = {g: [] for g in GROUP_COLORS}
    for i, lm in enumerate(LANDMARKS):
        groups[lm.group].append(i)
    return groups


def interocular_label() -> str:
    """How the NME is normalised, e.g. ``'inter-ocular, 11-19'``, for tables and plots."""
    a, b = INTEROCULAR_INDICES
    return f'inter-ocular, {a}-{b}'


def describe(index: int) -> str:
    """Prompt for one point, e.g. ``'12: left eye, upper lid, top'``."""
    return f'{index}: {LANDMARKS[index].description}'


def click_runs() -> dict[str, list[int]]:
    """The runs of points clicked one after the other, in click (index) order: a group whose
    points all have a mirror partner splits into its sides (``'left eyebrow'``, ``'right
    eye'``...); a group with points on the midline (``'contour'``, ``'mouth'``) is one run; a
    group of one point (the nose) is none. The quality checks test the order along each run; the
    editor places labels by them."""
    flip = flip_indices()
    parts: dict[str, list[int]] = {}
    for group, members in group_indices().items():
        if len(members) < 2:
            continue
        if all(flip[i] != i for i in members):
            for side in ('left', 'right'):
                parts[f'{side} {group.removesuffix("s")}'] = [
                    i for i in members if side in KEYPOINT_NAMES[i]]
        else:
            parts[group] = members
    return parts


def dataset_info() -> dict:
    """The mmpose ``dataset_info`` dict (keypoint_info, skeleton_info, joint_weights, sigmas)."""
    flip = flip_indices()
    keypoint_info = {
        i: dict(
            name=lm.name,
            id=i,
            color=list(GROUP_COLORS[lm.group]),
            type='upper',
            swap=KEYPOINT_NAMES[flip[i]] if flip[i] != i else '')
        for i, lm in enumerate(LANDMARKS)
    }
    skeleton_info = {
        i: dict(
            link=(KEYPOINT_NAMES[a], KEYPOINT_NAMES[b]),
            id=i,
            color=list(GROUP_COLORS[LANDMARKS[a].group]))
        for i, (a, b) in enumerate(SKELETON)
    }
    return dict(
        dataset_name=DATASET_NAME,
        paper_info=dict(
            author='animal_landmarks_mm contributors',
            title='28-point face landmarks of anime and animal characters '
            '(anime_face_detector layout)',
            container='',
            year='2026',
            homepage='',
        ),
        keypoint_info=keypoint_info,
        skeleton_info=skeleton_info,
        joint_weights=[1.0] * NUM_KEYPOINTS,
        sigmas=[],
    )
