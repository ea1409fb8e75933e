"""Augmentations keep points and flip pairs consistent with the pixels."""
import copy

import cv2
import numpy as np
import pytest
from mmcv.transforms import Compose
from mmengine.registry import init_default_scope

from animal_landmarks_mm.dataset import AnimalCharacterFaceDataset


@pytest.fixture
def sample(coco_dir):
    init_default_scope('mmpose')
    dataset = AnimalCharacterFaceDataset(data_root=str(coco_dir), ann_file='annotations/train.json',
                                         data_prefix=dict(img=''))
    info = dataset.get_data_info(0)
    return Compose([dict(type='LoadImage'), dict(type='GetBBoxCenterScale')])(info)


def _flip(results):
    return Compose([dict(type='RandomFlip', prob=1.0, direction='horizontal')])(results)


def test_flip_twice_is_identity(sample):
    twice = _flip(_flip(copy.deepcopy(sample)))
    np.testing.assert_allclose(twice['keypoints'], sample['keypoints'], atol=1e-4)
    np.testing.assert_array_equal(twice['img'], sample['img'])
    np.testing.assert_allclose(twice['bbox_center'], sample['bbox_center'], atol=1e-4)


def test_flipped_left_eye_is_the_original_right_eye(sample):
    width = sample['img'].shape[1]
    flipped = _flip(copy.deepcopy(sample))
    original, mirrored = sample['keypoints'][0], flipped['keypoints'][0]
    for left, right in [(11, 19), (5, 10), (0, 4), (24, 26), (14, 22)]:
        np.testing.assert_allclose(mirrored[left], [width - 1 - original[right][0],
                                                    original[right][1]], atol=1e-4)
    # and the image-left side of the flipped face really is on the left
    assert mirrored[11][0] < mirrored[19][0]


def test_points_stay_on_the_drawn_eyelids_through_flip_rotation_and_scale(sample):
    """Point 12 (upper lid top) lies on the dark eyelid stroke: after random flips, rotations
    and rescaling of the box, the warped image is still dark there."""
    np.random.seed(0)
    pipeline = Compose([
        dict(type='RandomFlip', direction='horizontal', prob=0.5),
        dict(type='RandomBBoxTransform', shift_factor=0.1, shift_prob=1.0, rotate_factor=45,
             rotate_prob=1.0, scale_factor=(0.75, 1.25)),
        dict(type='TopdownAffine', input_size=(256, 256)),
    ])
    for _ in range(10):
        out = pipeline(copy.deepcopy(sample))
        grey = cv2.cvtColor(out['img'], cv2.COLOR_BGR2GRAY).astype(int)
        for index in (12, 18):
            x, y = np.round(out['transformed_keypoints'][0, index]).astype(int)
            patch = grey[max(0, y - 1):y + 2, max(0, x - 1):x + 2]
            assert patch.min() < 110, (index, patch)


@pytest.mark.parametrize('transform', [
    dict(type='RandomGrayscale', prob=1.0, keep_channels=True,  # mmcv's, as the config has it
         channel_weights=(0.114, 0.587, 0.299)),
    dict(type='RandomGaussianBlur', prob=1.0, sigma_range=(1.0, 1.0)),
    dict(type='RandomCutout', prob=1.0, max_holes=2),
    dict(type='PhotometricDistortion'),
])
def test_pixel_transforms_change_pixels_not_points(sample, transform):
    np.random.seed(1)
    before = copy.deepcopy(sample)
    after = Compose([transform])(copy.deepcopy(sample))
    np.testing.assert_array_equal(after['keypoints'], before['keypoints'])
    np.testing.assert_array_equal(after['keypoints_visible'], before['keypoints_visible'])
    assert after['img'].shape == before['img'].shape
    assert not np.array_equal(after['img'], before['img'])
    if transform['type'] == 'RandomGrayscale':
        img = after['img']
        assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1],
                                                                           img[..., 2])


@pytest.mark.parametrize('shape', [(64, 80), (64, 80, 1), (64, 80, 4)])
def test_cutout_paints_images_of_any_channel_count(shape):
    """Greyscale images (H x W, H x W x 1) and ones with alpha get holes of their own
    channels."""
    from animal_landmarks_mm.transforms import RandomCutout
    np.random.seed(0)
    image = np.zeros(shape, np.uint8)
    out = RandomCutout(prob=1.0, max_holes=2, size_range=(0.3, 0.5))(dict(img=image))['img']
    assert out.shape == shape and out.dtype == np.uint8 and out.any()
    assert not image.any()  # the input untouched


def test_main_config_pipeline_runs(coco_dir):
    from mmengine.config import Config

    from conftest import MAIN_CONFIG
    init_default_scope('mmpose')
    cfg = Config.fromfile(str(MAIN_CONFIG))
    dataset = AnimalCharacterFaceDataset(
        data_root=str(coco_dir), ann_file='annotations/train.json', data_prefix=dict(img=''),
        pipeline=cfg.train_dataloader.dataset.pipeline)
    packed = dataset[0]
    assert tuple(packed['inputs'].shape) == (3, 256, 256)
    assert packed['data_samples'].gt_fields.heatmaps.shape == (28, 64, 64)


@pytest.mark.parametrize('transform, message', [
    (dict(type='RandomCutout', max_holes=0), 'max_holes must be an integer of 1 or more'),
    (dict(type='RandomCutout', size_range=(0.5,)), 'size_range must be two numbers'),
    (dict(type='RandomCutout', size_range=(0.2, 1.5)), 'size_range must be two numbers'),
    (dict(type='RandomGaussianBlur', sigma_range=(-1, 0)), 'sigma_range must be two numbers'),
    (dict(type='RandomGaussianBlur', sigma_range=(2, 1)), 'sigma_range must be two numbers'),
    # an infinite or huge sigma: OpenCV's kernel of 6 sigma a side, or its assertion, in a
    # loader worker
    (dict(type='RandomGaussianBlur', sigma_range=(1, float('inf'))),
     r'sigma_range must be two numbers 0 < low <= high <= 32, got \(1, inf\)'),
    (dict(type='RandomGaussianBlur', sigma_range=(1, 1e6)), r'<= 32, got \(1, 1000000.0\)'),
    (dict(type='RandomGaussianBlur', sigma_range=(float('nan'), 1)), 'sigma_range must be'),
    (dict(type='RandomGaussianBlur', prob='0.5'), 'prob must be a number in'),
    (dict(type='RandomCutout', prob=1.5), 'prob must be a number in'),
])
def test_bad_settings_are_refused_when_the_pipeline_is_built(transform, message):
    """Not later, inside a loader worker, as a numpy or OpenCV assertion."""
    import animal_landmarks_mm.transforms  # noqa: F401  (registers them)
    init_default_scope('mmpose')  # as the other tests here, also when this one runs alone
    with pytest.raises(ValueError, match=message):
        Compose([transform])


def test_greyscale_is_mmcvs_not_shadowed_by_the_plugin():
    """The plugin registers no transform under a name mmcv has: a config written for mmcv's
    ``RandomGrayscale`` (keep_channels, channel_weights) builds it."""
    from mmpose.registry import TRANSFORMS

    import animal_landmarks_mm  # noqa: F401
    init_default_scope('mmpose')
    built = TRANSFORMS.build(dict(type='RandomGrayscale', keep_channels=True))
    assert type(built).__module__.startswith('mmcv.')
