"""ChannelsLastPoseDataPreprocessor: same numbers as mmpose's, channels-last layout."""
import torch
from mmpose.models.data_preprocessors import PoseDataPreprocessor
from mmpose.structures import PoseDataSample

from animal_landmarks_mm.models import ChannelsLastPoseDataPreprocessor


def test_same_values_channels_last_layout():
    kwargs = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)
    images = [torch.randint(0, 256, (3, 64, 48), dtype=torch.uint8) for _ in range(2)]

    def batch():
        return dict(inputs=list(images), data_samples=[PoseDataSample() for _ in images])
    ours = ChannelsLastPoseDataPreprocessor(**kwargs)(batch())['inputs']
    theirs = PoseDataPreprocessor(**kwargs)(batch())['inputs']
    assert ours.is_contiguous(memory_format=torch.channels_last)
    assert not theirs.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(ours, theirs)
