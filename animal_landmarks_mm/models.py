"""Model parts of this plugin, registered in mmpose's MODELS."""
from __future__ import annotations

import torch
from mmpose.models.data_preprocessors import PoseDataPreprocessor
from mmpose.registry import MODELS


@MODELS.register_module()
class ChannelsLastPoseDataPreprocessor(PoseDataPreprocessor):
    """mmpose's ``PoseDataPreprocessor`` whose batches come out in channels-last memory format.

    Convolutions then take oneDNN's / cuDNN's channels-last kernels: measured on 2 CPU cores,
    HRNetV2-W18 trains 1.3x and infers 1.45x faster (tools/benchmark.py); on GPUs with AMP it
    suits tensor cores. The numbers computed are the same up to float rounding.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        data['inputs'] = data['inputs'].contiguous(memory_format=torch.channels_last)
        return data
