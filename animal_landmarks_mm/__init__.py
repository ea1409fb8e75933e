"""MMPose plugin: 28-point face landmarks for anime and animal characters.

Importing the package (directly or through a config's ``custom_imports``) registers the dataset
type in mmpose's registry and lets torch >= 2.6 load mmengine checkpoints safely. Where none of
torch, mmpose, mmcv and mmengine is installed (a deployment with onnxruntime only), the package
still imports, without the registrations, so that :mod:`.onnx_predictor` works there. Any other
failure raises, a part of that stack missing or broken included, so that importing the package
checks an install.
"""
import importlib.util

#: the training stack, which a deployment with onnxruntime only has none of
_STACK = ('torch', 'mmpose', 'mmcv', 'mmengine')


def _installed(name: str) -> bool:
    """Whether the top-level module ``name`` can be found (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # imported already, without a spec
        return True
    except ImportError:  # a finder refuses it: as if not installed
        return False


try:
    from .checkpoint_compat import allow_mmengine_checkpoints
    from .dataset import AnimalCharacterFaceDataset
    from .hooks import StrictLoadFromHook
    from .metrics import LandmarkMetric
    from .models import ChannelsLastPoseDataPreprocessor
    from .transforms import RandomCutout, RandomGaussianBlur
except ImportError as e:
    # Only the whole stack absent is the onnxruntime-only deployment: one part missing or failing
    # to import beside the others is a broken install, which this import must report.
    if (e.name or '').split('.')[0] not in _STACK or any(map(_installed, _STACK)):
        raise
else:
    allow_mmengine_checkpoints()

__version__ = '0.1.0'
__all__ = [
    'AnimalCharacterFaceDataset', 'ChannelsLastPoseDataPreprocessor', 'LandmarkMetric',
    'RandomCutout', 'RandomGaussianBlur', 'StrictLoadFromHook',
    'allow_mmengine_checkpoints',
]
