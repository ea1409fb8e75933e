"""What the benchmarks share: the configs compared, synthetic data, the device, peak memory."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from ..converter import convert
from ..synthetic import make_synthetic_dataset

CONFIG_ROOT = Path(__file__).resolve().parents[2] / 'configs'
OUR_CONFIG = CONFIG_ROOT / 'td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py'
STOCK_CONFIG = ('face_2d_keypoint/topdown_heatmap/wflw/'
                'td-hm_hrnetv2-w18_dark-8xb64-60e_wflw-256x256.py')


def stock_config() -> Path:
    """mmpose's own WFLW config file, as installed with mmpose (``mmpose::`` in configs)."""
    import mmpose
    return Path(mmpose.__file__).parent / '.mim' / 'configs' / STOCK_CONFIG


def peak_memory() -> dict:
    """Peak resident memory of this process, and of the GPU when one is used (MiB)."""
    import resource  # Unix only: imported here, not where the timing helper is imported
    out = dict(peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    import torch
    if torch.cuda.is_available():
        out['peak_gpu_mib'] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def device() -> str:
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def synthetic_coco(folder: Path, num_images: int) -> Path:
    """Synthetic faces converted to our COCO layout; returns the data root."""
    make_synthetic_dataset(folder, num_images, seed=11, progress=False)
    convert(folder / 'landmarks', folder / 'images', folder, train_ratio=0.5, val_ratio=0.5,
            test_ratio=0.0, progress=False)
    return folder


def seconds_per_call(contenders: dict[str, Callable[[], object]], repeats: int,
                     synchronize: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Median seconds per call of each contender, measured in rounds that call each once in
    turn, so that a change of the machine's load falls on all of them alike."""
    for fn in contenders.values():  # warm-up: allocations, oneDNN / onnxruntime kernel choice
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            synchronize()
            start = time.perf_counter()
            fn()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
