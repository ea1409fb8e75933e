"""The 28-point schema agrees with LANDMARKS.md, and the dataset's metainfo is the schema's."""
from mmpose.datasets.datasets.utils import parse_pose_metainfo

from animal_landmarks_mm import schema
from animal_landmarks_mm.dataset import AnimalCharacterFaceDataset

# Straight from LANDMARKS.md (the authority), not derived from the package.
DOC_FLIP_INDICES = [4, 3, 2, 1, 0, 10, 9, 8, 7, 6, 5, 19, 18, 17, 22, 21, 20, 13, 12, 11, 16, 15,
                    14, 23, 26, 25, 24, 27]
DOC_GROUPS = {
    'contour': [0, 1, 2, 3, 4],
    'eyebrows': [5, 6, 7, 8, 9, 10],
    'eyes': list(range(11, 23)),
    'nose': [23],
    'mouth': [24, 25, 26, 27],
}


def test_schema_matches_landmarks_doc():
    assert schema.NUM_KEYPOINTS == len(schema.LANDMARKS) == 28
    assert schema.flip_indices() == DOC_FLIP_INDICES
    assert schema.group_indices() == DOC_GROUPS
    assert schema.INTEROCULAR_INDICES == (11, 19)
    assert (schema.VISIBLE, schema.OCCLUDED, schema.ABSENT) == (2, 1, 0)  # COCO's v
    assert len(set(schema.KEYPOINT_NAMES)) == 28
    assert schema.describe(12) == '12: left eye, upper lid, top'


def test_parsed_metainfo_has_flip_pairs_colours_and_skeleton():
    assert AnimalCharacterFaceDataset.METAINFO == schema.dataset_info()
    meta = parse_pose_metainfo(AnimalCharacterFaceDataset.METAINFO)
    assert meta['dataset_name'] == 'animal_character_face'
    assert meta['num_keypoints'] == 28
    assert list(meta['flip_indices']) == DOC_FLIP_INDICES
    assert len(meta['skeleton_links']) == len(schema.SKELETON)
    # colours by group: every point of a group has its group's colour
    for group, indices in DOC_GROUPS.items():
        for i in indices:
            assert tuple(meta['keypoint_colors'][i]) == schema.GROUP_COLORS[group]
    assert meta['sigmas'].size == 0


def test_dataset_metainfo_is_resolved_from_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repo: the path must not depend on the cwd
    meta = AnimalCharacterFaceDataset(ann_file='', lazy_init=True).metainfo
    assert meta['dataset_name'] == 'animal_character_face'
    assert list(meta['flip_indices']) == DOC_FLIP_INDICES


def test_click_runs_and_the_editors_label_parts_cover_the_schema():
    runs = schema.click_runs()
    assert set(runs) == {'contour', 'left eyebrow', 'right eyebrow', 'left eye', 'right eye',
                         'mouth'}
    flip = schema.flip_indices()
    for side in ('eyebrow', 'eye'):  # each side's run mirrors the other's
        assert sorted(flip[k] for k in runs[f'left {side}']) == runs[f'right {side}']

    from animal_landmarks_mm.annotate_app import label_parts
    parts = label_parts()
    covered = [k for part in parts for k in part['points']]
    assert sorted(covered) == list(range(schema.NUM_KEYPOINTS))  # every point once
    by_first = {schema.KEYPOINT_NAMES[p['points'][0]]: p for p in parts}
    assert by_first['nose_tip']['away_from'] == 'beside'
    assert by_first['temple_left']['away_from'] == 'face'
    brow, eye = by_first['brow_left_outer'], parts.index(by_first['eye_left_upper_outer'])
    assert brow['away_from'] == eye  # a brow's labels go away from its own eye
