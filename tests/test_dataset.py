"""AnimalCharacterFaceDataset on a small converted fixture, top-down and bottom-up."""
import json
import re

import numpy as np
import pytest
from mmengine.registry import init_default_scope

from animal_landmarks_mm.dataset import AnimalCharacterFaceDataset


@pytest.mark.parametrize('split', ['train', 'val', 'test'])
def test_topdown_one_sample_per_face(coco_dir, split):
    coco = json.loads((coco_dir / 'annotations' / f'{split}.json').read_text())
    dataset = AnimalCharacterFaceDataset(
        data_root=str(coco_dir), ann_file=f'annotations/{split}.json', data_prefix=dict(img=''),
        test_mode=split != 'train')
    assert len(dataset) == len(coco['annotations'])
    sample = dataset.get_data_info(0)
    ann = coco['annotations'][0]
    expected = np.array(ann['keypoints'], dtype=np.float32).reshape(28, 3)
    np.testing.assert_allclose(sample['keypoints'][0], expected[:, :2], atol=1e-3)
    np.testing.assert_allclose(sample['bbox'][0], [ann['bbox'][0], ann['bbox'][1],
                                                   ann['bbox'][0] + ann['bbox'][2],
                                                   ann['bbox'][1] + ann['bbox'][3]], atol=1e-3)
    assert sample['img_path'].endswith('.png')
    assert (coco_dir / sample['img_path']).is_file()


def test_bottomup_one_sample_per_image(coco_dir):
    coco = json.loads((coco_dir / 'annotations' / 'train.json').read_text())
    dataset = AnimalCharacterFaceDataset(
        data_root=str(coco_dir), ann_file='annotations/train.json', data_prefix=dict(img=''),
        data_mode='bottomup')
    assert len(dataset) == len(coco['images'])
    assert dataset.get_data_info(0)['keypoints'].shape[1:] == (28, 2)


def test_the_dataset_reads_its_file_as_data_for_every_runner(coco_dir, tmp_path):
    """The checks of a COCO file ran in this project's tools only: mmpose's own train.py
    (``mim train``) built the dataset of a file with a NaN box and trained on NaN losses to
    exit status 0 (reviewer's R1_mim_nanbox.sh). The dataset type checks its file itself."""
    from animal_landmarks_mm.annotation import AnnotationError
    coco = json.loads((coco_dir / 'annotations' / 'train.json').read_text())
    coco['annotations'][0]['bbox'][2] = float('nan')
    path = tmp_path / 'nan_box.json'
    path.write_text(json.dumps(coco))
    with pytest.raises(AnnotationError) as info:
        AnimalCharacterFaceDataset(data_root=str(coco_dir), ann_file=str(path),
                                   data_prefix=dict(img=''))
    assert str(info.value).startswith(f'{path}: annotation ')
    assert '"bbox" must be 4 finite numbers' in str(info.value)


def test_pipeline_produces_a_256_crop(coco_dir):
    init_default_scope('mmpose')  # as the Runner does: transforms resolve in mmpose's registry
    dataset = AnimalCharacterFaceDataset(
        data_root=str(coco_dir), ann_file='annotations/train.json', data_prefix=dict(img=''),
        pipeline=[dict(type='LoadImage'), dict(type='GetBBoxCenterScale'),
                  dict(type='TopdownAffine', input_size=(256, 256)),
                  dict(type='PackPoseInputs')])
    packed = dataset[0]
    assert tuple(packed['inputs'].shape) == (3, 256, 256)
    assert packed['data_samples'].gt_instances.keypoints.shape == (1, 28, 2)


def test_a_box_at_the_border_is_the_one_evaluate_crops(tmp_path):
    """mmpose clips a loaded box to [0, size - 1]; the converter's box (which tools/evaluate.py
    crops by) is clipped the same, so both crop a face at the image's edge alike."""
    from animal_landmarks_mm.annotation import Face, ImageAnnotation
    from animal_landmarks_mm.converter import Record, face_box_xyxy, write_coco
    image = tmp_path / 'a.png'
    image.write_bytes(b'')  # the dataset reads names only
    points = [(60.0 + k, 40.0 + k / 2) for k in range(28)]
    face = Face(points, bbox=(50.0, 30.0, 100.0, 80.0))  # reaches the 100x80 image's edges
    ann = ImageAnnotation('a.png', 100, 80, [face])
    write_coco([Record(tmp_path / 'a.json', tmp_path, image, ann)], tmp_path / 'val.json',
               tmp_path)
    dataset = AnimalCharacterFaceDataset(data_root=str(tmp_path), ann_file='val.json',
                                         data_prefix=dict(img=''), test_mode=True)
    np.testing.assert_allclose(dataset.get_data_info(0)['bbox'][0],
                               face_box_xyxy(face, 100, 80), atol=1e-5)
    assert face_box_xyxy(face, 100, 80)[2:] == (99.0, 79.0)


def _one_face_coco(width=100, height=100, segmentation=None) -> dict:
    """A COCO file of one 100x100 image with one face, as a dict to edit."""
    keypoints = []
    for k in range(28):
        keypoints += [10.0 + k, 10.0 + k % 5, 2]
    ann = dict(id=1, image_id=1, category_id=1, bbox=[5.5, 5, 40, 20], keypoints=keypoints,
               num_keypoints=28, iscrowd=0, area=800)
    if segmentation is not None:
        ann['segmentation'] = segmentation
    return dict(images=[dict(id=1, file_name='a.png', width=width, height=height)],
                annotations=[ann], categories=[dict(id=1, name='face')])


@pytest.mark.parametrize('key', ['width', 'height'])
@pytest.mark.parametrize('side', [10**400, 2**64, 2**31], ids=['10**400', '2**64', '2**31'])
def test_an_image_side_no_image_has_is_one_line_naming_the_file_and_image(tmp_path, key, side):
    """A side too large for a float passed as a positive whole number, and training's count of
    faces (:func:`kept_faces`, clipping a box to the image) raised OverflowError: a traceback.
    Refused by the limit tools/evaluate.py refuses the same file by."""
    from animal_landmarks_mm.annotation import AnnotationError
    from animal_landmarks_mm.converter import MAX_IMAGE_SIDE
    from animal_landmarks_mm.schedule import read_training_faces
    path = tmp_path / 'giant.json'
    path.write_text(json.dumps(_one_face_coco(**{key: side})))
    with pytest.raises(AnnotationError) as e:
        read_training_faces(str(path))
    message = str(e.value)
    assert message.startswith(f'{path}: image 1 (\'a.png\'): "{key}" is too large')
    assert str(MAX_IMAGE_SIDE) in message and '\n' not in message and str(side) not in message


@pytest.mark.parametrize('key', ['width', 'height'])
def test_an_image_too_long_for_the_crop_is_refused_before_training(tmp_path, key):
    """A webtoon strip of a side of 32,767 px or more: OpenCV's warp (mmpose's TopdownAffine)
    refuses it, and training failed mid-run at its first face. Refused on reading for
    training, naming the image; a side one pixel shorter is read."""
    from animal_landmarks_mm.annotation import WARP_MAX_SIDE, AnnotationError
    from animal_landmarks_mm.converter import MAX_IMAGE_SIDE
    from animal_landmarks_mm.schedule import read_training_faces
    path = tmp_path / 'strip.json'
    for side in (WARP_MAX_SIDE, MAX_IMAGE_SIDE):
        path.write_text(json.dumps(_one_face_coco(**{key: side})))
        with pytest.raises(AnnotationError) as e:
            read_training_faces(str(path))
        shown = f'{side}x100' if key == 'width' else f'100x{side}'
        assert str(e.value) == (f"{path}: image 1 ('a.png'): the image is {shown}, a side of "
                                f"32,767 pixels or more, which OpenCV's warp (training's crop "
                                'of each face) refuses: cut it into parts to train on it '
                                '(inference takes it as it is)')
    path.write_text(json.dumps(_one_face_coco(**{key: WARP_MAX_SIDE - 1})))
    assert read_training_faces(str(path))[1] == 1
    # a face mmpose leaves out is never cropped; evaluation (whose predictors crop such a
    # picture) reads the file
    from animal_landmarks_mm.dataset import read_coco_file
    coco = _one_face_coco(**{key: WARP_MAX_SIDE})
    path.write_text(json.dumps(coco))
    assert read_coco_file(path)['images'][0][key] == WARP_MAX_SIDE
    coco['annotations'][0]['iscrowd'] = 1
    path.write_text(json.dumps(coco))
    assert read_training_faces(str(path))[1] == 0


def test_json_nested_deeply_in_a_key_not_checked_is_one_line_naming_the_file(tmp_path):
    """A ``segmentation`` nested 900 deep passed read_coco_file (no check looks at it) and
    mmpose's ``parse_data_info`` raised RecursionError deep-copying it while the dataset was
    built; 400 deep built. Refused at reading, far above a real file's nesting."""
    from animal_landmarks_mm.annotation import AnnotationError
    from animal_landmarks_mm.dataset import COCO_MAX_NESTING, read_coco_file
    path = tmp_path / 'nested.json'

    def write(depth):  # the file > "annotations" > annotation: 3 levels above it
        text = json.dumps(_one_face_coco(segmentation='@@'))
        path.write_text(text.replace('"@@"', '[' * depth + ']' * depth))

    for depth in (900, COCO_MAX_NESTING - 2):
        write(depth)
        with pytest.raises(AnnotationError) as e:
            read_coco_file(path)
        assert str(e.value) == (f'{path}: JSON nested more than {COCO_MAX_NESTING} deep, in '
                                f'annotations[0] "segmentation" (a COCO file nests 5 deep)')
    write(COCO_MAX_NESTING - 3)
    read_coco_file(path)
    # real segmentations, polygons and RLE, are read and built
    rle = dict(counts=[0, 5, 3], size=[100, 100])
    for segmentation in ([[5.0, 5.0, 45.0, 5.0, 45.0, 25.0]], rle):
        path.write_text(json.dumps(_one_face_coco(segmentation=segmentation)))
        assert read_coco_file(path)['annotations'][0]['segmentation'] == segmentation
        dataset = AnimalCharacterFaceDataset(data_root=str(tmp_path), ann_file='nested.json',
                                             data_prefix=dict(img=''), test_mode=True)
        assert len(dataset) == 1


def test_deeply_nested_json_is_found_wherever_it_is(tmp_path):
    """Any key at any place counts; the place is named down to 3 steps: the top key, its
    entry, the entry's key."""
    from animal_landmarks_mm.annotation import AnnotationError
    from animal_landmarks_mm.dataset import COCO_MAX_NESTING, read_coco_file
    path = tmp_path / 'nested.json'
    deep = json.loads('{"k": ' * COCO_MAX_NESTING + '1' + '}' * COCO_MAX_NESTING)
    for where, name in (('info', 'info "k" "k"'), ('images', 'images[1] "k"'),
                        ('annotations', 'annotations[1] "k"')):
        coco = _one_face_coco()
        if where == 'info':
            coco['info'] = deep
        else:
            coco[where].append(deep)
        path.write_text(json.dumps(coco))
        with pytest.raises(AnnotationError, match=rf'in {re.escape(name)} \(a COCO file'):
            read_coco_file(path)


@pytest.mark.parametrize('case, expected', [
    # mmpose keeps a face by these alone: the face of 28 placed points was dropped unseen
    ('num_keypoints', '"num_keypoints" must be the number of its labelled points (28, v > 0), '
                      'got 0'),
    ('iscrowd', '"iscrowd" must be 0 or 1, got \'no\''),
    # an outer eye corner a million pixels away: every error of the face a millionth of itself
    ('far_point', 'point 19 (1e+06, 14) is far outside its 100x100 image'),
])
def test_values_mmpose_reads_silently_wrong_are_one_line(tmp_path, case, expected):
    from animal_landmarks_mm.annotation import AnnotationError
    from animal_landmarks_mm.dataset import read_coco_file
    coco = _one_face_coco()
    ann = coco['annotations'][0]
    if case == 'num_keypoints':
        ann['num_keypoints'] = 0
    elif case == 'iscrowd':
        ann['iscrowd'] = 'no'
    else:
        ann['keypoints'][3 * 19] = 1e6
    path = tmp_path / f'{case}.json'
    path.write_text(json.dumps(coco))
    with pytest.raises(AnnotationError) as e:
        read_coco_file(path)
    assert str(e.value) == f'{path}: annotation 1: {expected}'
    # what the converter writes passes: points just off the image (a face cut by the border),
    # a crowd face; and a count a hand's edit left off by some (mmpose only asks if it is 0)
    ann.update(num_keypoints=28, iscrowd=1)
    ann['keypoints'][3 * 19:3 * 19 + 3] = [0, 0, 0]
    ann['keypoints'][0:2] = [-9.5, 109.5]
    path.write_text(json.dumps(coco))
    read_coco_file(path)


def test_a_file_of_no_face_mmpose_keeps_is_one_line_naming_it(tmp_path):
    """mmengine failed on the empty list, "need at least one array to concatenate", for a
    runner other than tools/train.py (mim train), which checks its files first."""
    from animal_landmarks_mm.annotation import AnnotationError
    coco = _one_face_coco()
    coco['annotations'][0]['bbox'] = [5, 5, 0, 20]  # no width: mmpose leaves it out
    path = tmp_path / 'none_kept.json'
    path.write_text(json.dumps(coco))
    for test_mode in (False, True):
        with pytest.raises(AnnotationError) as e:
            AnimalCharacterFaceDataset(ann_file=str(path), data_prefix=dict(img=''),
                                       test_mode=test_mode)
        assert str(e.value).startswith(f'{path}: holds no face mmpose keeps')
    # one image per sample, faces or none: bottom-up builds it
    assert len(AnimalCharacterFaceDataset(ann_file=str(path), data_prefix=dict(img=''),
                                          data_mode='bottomup')) == 1
