"""Training throughput against mmpose's stock WFLW config, and the data pipeline alone."""
from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from ..schema import NUM_KEYPOINTS
from .common import OUR_CONFIG, device, peak_memory, stock_config, synthetic_coco

#: mmpose's stock WFLW config predicts this many points
WFLW_NUM_KEYPOINTS = 98

#: batches each loader worker makes per epoch of the benchmark's training set: torch hands an
#: epoch's batches to the workers in turn, so a set of one batch starts an epoch at every step
#: and only worker 0 ever loads (the other workers' throughput is never measured)
BATCHES_PER_WORKER = 4


def training_set_size(batch_size: int, workers: int) -> int:
    """Training samples an epoch of the benchmark holds: :data:`BATCHES_PER_WORKER` batches
    for each loader worker (the loading process itself without workers)."""
    return batch_size * max(1, workers) * BATCHES_PER_WORKER


def repeat_training_set(loader: dict, faces: int, batch_size: int, workers: int) -> int:
    """Wrap a training dataloader's dataset of ``faces`` samples in mmengine's
    ``RepeatDataset`` so that an epoch holds :func:`training_set_size` samples (the same
    images, decoded and augmented anew each time: the loader's work stays real, while the
    synthetic set stays small to make).

    Returns:
        How many times the set is repeated.
    """
    times = math.ceil(training_set_size(batch_size, workers) / faces)
    if times > 1:
        loader['dataset'] = dict(type='RepeatDataset', times=times, dataset=loader['dataset'])
    return times


def _as_wflw(data_root: Path, split: str) -> str:
    """The same faces as a WFLW file (98 points): ours, repeated up to that count."""
    coco = json.loads((data_root / 'annotations' / f'{split}.json').read_text())
    for ann in coco['annotations']:
        points = np.array(ann['keypoints']).reshape(NUM_KEYPOINTS, 3)
        ann['keypoints'] = np.resize(points, (WFLW_NUM_KEYPOINTS, 3)).ravel().tolist()
        ann['num_keypoints'] = WFLW_NUM_KEYPOINTS
        x, y, w, h = ann['bbox']  # WFLW files give the box as centre and scale (px / 200)
        ann['center'], ann['scale'] = [x + w / 2, y + h / 2], max(w, h) / 200
    coco['categories'][0]['keypoints'] = [f'p{i}' for i in range(WFLW_NUM_KEYPOINTS)]
    path = data_root / 'annotations' / f'{split}_wflw{WFLW_NUM_KEYPOINTS}.json'
    path.write_text(json.dumps(coco))
    return path.name


def _train_throughput(config, *, data_root: Path, ann_file: str, dataset_type: str | None,
                      batch_size: int, iters: int, workers: int, work_dir: Path) -> float:
    """Images/s of mmengine's training loop, after 2 warm-up iterations, on a training set
    of :data:`BATCHES_PER_WORKER` batches per loader worker."""
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from ..training import set_loader_workers
    cfg = Config.fromfile(str(config))
    loader = cfg.train_dataloader
    loader.batch_size = batch_size
    set_loader_workers(loader, workers)
    loader.dataset.data_root, loader.dataset.ann_file = str(data_root), ann_file
    loader.dataset.data_prefix = dict(img='')
    if dataset_type:
        loader.dataset.type = dataset_type
    faces = len(json.loads((data_root / ann_file).read_text())['annotations'])
    repeat_training_set(loader, faces, batch_size, workers)
    cfg.model.backbone.init_cfg = None  # no pretrained download
    cfg.train_cfg = dict(by_epoch=False, max_iters=iters + 2, val_interval=10**9)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10**9)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10**9)
    cfg.custom_hooks = []
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.work_dir = str(work_dir)
    cfg.load_from = None
    if device() == 'cuda':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.env_cfg.cudnn_benchmark = True
    stamps = []

    class Timer(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            stamps.append(time.perf_counter())

    runner = Runner.from_cfg(cfg)
    runner.register_hook(Timer(), priority='LOWEST')
    runner.train()
    return round(batch_size * iters / (stamps[-1] - stamps[1]), 2)


def default_workers() -> int:
    """The loader workers ``tools/train.py`` gives our config by default on this device (the
    config's on a CPU)."""
    from mmengine.config import Config

    from ..training import host_cpus, loader_workers
    configured = Config.fromfile(str(OUR_CONFIG)).train_dataloader.num_workers
    return loader_workers(configured, cuda=device() == 'cuda', cpus=host_cpus())


def training_throughput(batch_size: int | None = None, iters: int | None = None,
                        workers: int | None = None) -> dict:
    """Ours against mmpose's stock WFLW config; see the module docstring. The loader has
    :func:`default_workers` unless ``workers`` is given."""
    import animal_landmarks_mm  # noqa: F401
    cuda = device() == 'cuda'
    if workers is None:
        workers = default_workers()
    batch_size = batch_size or (64 if cuda else 8)
    iters = iters or (30 if cuda else 4)
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic_coco(Path(tmp) / 'data', max(2 * batch_size, 16))
        runs = dict(data_root=root, batch_size=batch_size, iters=iters, workers=workers)
        ours = _train_throughput(OUR_CONFIG, ann_file='annotations/train.json',
                                 dataset_type=None, work_dir=Path(tmp) / 'ours', **runs)
        stock = _train_throughput(stock_config(), ann_file='annotations/' + _as_wflw(root, 'train'),
                                  dataset_type='WFLWDataset', work_dir=Path(tmp) / 'stock', **runs)
    return dict(device=device(), batch_size=batch_size, iters=iters, workers=workers,
                ours_img_s=ours, stock_wflw_img_s=stock, ratio=round(ours / stock, 3),
                **peak_memory())


def pipeline_result(per_worker: float, workers: int) -> dict:
    """What the pipeline benchmark reports: the rate it measured in one process, and an
    estimate for ``workers`` loader workers, that rate times their number (the training process
    loads itself without workers). The estimate assumes a free core for each worker; no
    DataLoader was run, and a training sharing the cores leaves the workers less."""
    return dict(per_worker_img_s=round(per_worker, 1), workers=workers,
                estimated_loader_img_s=round(per_worker * max(1, workers), 1))


def pipeline_throughput(samples: int = 64, workers: int | None = None) -> dict:
    """Our training data pipeline alone in this process (one worker), and the estimate of
    :func:`pipeline_result` for ``workers`` (default :func:`default_workers`)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import animal_landmarks_mm  # noqa: F401

    from ..dataset import AnimalCharacterFaceDataset
    init_default_scope('mmpose')
    cfg = Config.fromfile(str(OUR_CONFIG))
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic_coco(Path(tmp) / 'data', 32)
        dataset = AnimalCharacterFaceDataset(
            data_root=str(root), ann_file='annotations/train.json', data_prefix=dict(img=''),
            pipeline=cfg.train_dataloader.dataset.pipeline)
        dataset[0]
        start = time.perf_counter()
        for i in range(samples):
            dataset[i % len(dataset)]
        rate = samples / (time.perf_counter() - start)
    if workers is None:
        workers = default_workers()
    return dict(**pipeline_result(rate, workers), **peak_memory())


