"""AnimalCharacterFaceDataset on a small converted fixture, top-down and bottom-up."""
import json

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
