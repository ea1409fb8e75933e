"""Train and test with mmengine's Runner: the logic behind ``tools/train.py`` and ``tools/test.py``.

The flags and their meaning follow mmpose's own ``tools/train.py`` and ``tools/test.py``; the
functions here take a loaded :class:`mmengine.Config` and apply them, so the CLIs stay thin.
"""
from __future__ import annotations

import os
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.runner import Runner

import animal_landmarks_mm  # noqa: F401  (registers the dataset; safe checkpoint loading)


class TrainingSetupError(ValueError):
    """A flag that cannot be honoured on this machine or with this config."""


def default_work_dir(config_path: str) -> str:
    """``work_dirs/<config name>``, as mmpose does."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def load_config(config_path: str, cfg_options: dict | None = None) -> Config:
    """Read a config and apply ``--cfg-options``.

    Raises:
        FileNotFoundError: the config does not exist (the message names it).
    """
    if not osp.isfile(config_path):
        raise FileNotFoundError(f'config not found: {config_path}')
    cfg = Config.fromfile(config_path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def set_data_root(cfg: Config, data_root: str) -> Config:
    """Point every dataloader (and the top-level ``data_root``) at ``data_root``.

    A config's ``data_root`` variable is substituted when the file is read, so overriding it
    with ``--cfg-options`` alone would not reach the dataloaders.
    """
    if not osp.isdir(data_root):
        raise FileNotFoundError(f'data root not found: {data_root}')
    cfg.data_root = data_root
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if loader is not None:
            loader.dataset.data_root = data_root
    return cfg


def apply_train_args(cfg: Config, config_path: str, work_dir: str | None = None,
                     resume: str | None = None, amp: bool = False, no_validate: bool = False,
                     auto_scale_lr: bool = False, launcher: str = 'none') -> Config:
    """Apply mmpose's ``tools/train.py`` flags to a config.

    Args:
        cfg: the loaded config (``--cfg-options`` already merged).
        config_path: its file, for the default work dir.
        work_dir: ``--work-dir``; default ``work_dirs/<config name>``.
        resume: ``'auto'`` to resume from the latest checkpoint of the work dir, or a checkpoint
            path; ``None`` to start fresh.
        amp: mixed precision (needs a CUDA device).
        no_validate: skip validation during training.
        auto_scale_lr: scale the lr by the actual batch size against ``auto_scale_lr``.
        launcher: ``none``, ``pytorch``, ``slurm`` or ``mpi``.

    Raises:
        TrainingSetupError: ``amp`` without a CUDA device.
    """
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = default_work_dir(config_path)
    if amp:
        if not torch.cuda.is_available():
            raise TrainingSetupError(
                '--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper); none is visible here')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif resume is not None:
        cfg.resume, cfg.load_from = True, resume
    if no_validate:
        cfg.train_cfg.val_interval = 10**9
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        cfg.default_hooks.checkpoint.save_best = None
    if auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    return cfg


def apply_test_args(cfg: Config, config_path: str, checkpoint: str, work_dir: str | None = None,
                    out: str | None = None, launcher: str = 'none') -> Config:
    """Apply mmpose's ``tools/test.py`` flags: the checkpoint, work dir and a dump of the
    predictions (``--dump`` in mmpose), as a pickle of every prediction."""
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = default_work_dir(config_path)
    cfg.load_from = checkpoint
    if out is not None:
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        evaluators = cfg.test_evaluator
        if isinstance(evaluators, dict):
            evaluators = [evaluators]
        cfg.test_evaluator = [*evaluators, dict(type='DumpResults', out_file_path=out)]
    return cfg


def train(cfg: Config) -> torch.nn.Module:
    """Build the runner from ``cfg`` and train; returns the trained model."""
    runner = Runner.from_cfg(cfg)
    return runner.train()


def test(cfg: Config) -> dict:
    """Build the runner from ``cfg`` and test ``cfg.load_from``; returns the metrics."""
    runner = Runner.from_cfg(cfg)
    return runner.test()
