"""MMPose plugin: 28-point face landmarks for anime and animal characters.

Importing the package (directly or through a config's ``custom_imports``) registers the dataset
type in mmpose's registry and lets torch >= 2.6 load mmengine checkpoints safely. Where torch and
mmpose are not installed (a deployment with onnxruntime only), the package still imports, without
the registrations, so that :mod:`.onnx_predictor` works there.
"""
try:
    from .checkpoint_compat import allow_mmengine_checkpoints
    from .dataset import AnimalCharacterFaceDataset
    from .hooks import StrictLoadFromHook
    from .metrics import LandmarkMetric
    from .models import ChannelsLastPoseDataPreprocessor
    from .transforms import RandomCutout, RandomGaussianBlur
except ImportError as e:
    if (e.name or '').split('.')[0] not in ('torch', 'mmpose', 'mmcv', 'mmengine'):
        raise
else:
    allow_mmengine_checkpoints()

__version__ = '0.1.0'
__all__ = [
    'AnimalCharacterFaceDataset', 'ChannelsLastPoseDataPreprocessor', 'LandmarkMetric',
    'RandomCutout', 'RandomGaussianBlur', 'StrictLoadFromHook',
    'allow_mmengine_checkpoints',
]
