"""Shared fixtures: a tiny synthetic dataset, converted, and a runner for the tools/ CLIs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from animal_landmarks_mm.converter import convert
from animal_landmarks_mm.synthetic import make_synthetic_dataset

REPO = Path(__file__).resolve().parent.parent
MAIN_CONFIG = REPO / 'configs' / 'td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py'
FINETUNE_CONFIG = (REPO / 'configs' /
                   'td-hm_hrnetv2-w18_dark-ft-animeface-1xb32-30e_animal-face-256x256.py')

# 4 train images at batch 2: one epoch is 2 iterations; no worker processes
TINY_OPTIONS = {
    **{f'{split}_dataloader.{key}': value for split in ('train', 'val', 'test')
       for key, value in (('batch_size', 2), ('num_workers', 0), ('persistent_workers', False))},
    'train_cfg.max_epochs': 1,
}
TINY = [f'{key}={value}' for key, value in TINY_OPTIONS.items()]

#: Lines for the end of the pytest report (numbers people want to see, e.g. the equality test).
REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section('measured')
        for line in REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope='session', autouse=True)
def _hub_offline():
    """No test reaches the Hugging Face Hub: ``HF_HUB_OFFLINE=1`` for every test and the tools
    it runs (they inherit the environment). huggingface_hub reads it once, when imported, so
    where that happened already (at collection) its constant is set as well. A test that serves
    a local Hub overrides both (test_checkpoints.py's ``local_hub``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('HF_HUB_OFFLINE', '1')
        constants = sys.modules.get('huggingface_hub.constants')
        if constants is not None:
            patch.setattr(constants, 'HF_HUB_OFFLINE', True)
        yield


def run_tool(script: str, *args: str, cwd: str | os.PathLike | None = None,
             check: bool = True, timeout: float = 900,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``tools/<script>`` with this interpreter; returns the finished process (text).
    ``env`` adds variables to this process's environment."""
    env = dict(os.environ, PYTHONWARNINGS='ignore', MPLBACKEND='Agg', **(env or {}))
    proc = subprocess.run([sys.executable, str(REPO / 'tools' / script), *map(str, args)],
                          cwd=cwd or REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{script} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n'
                             f'{proc.stderr[-4000:]}')
    return proc


def prepare_hub_cache(cache: Path, repo_id: str, filename: str, source: Path) -> Path:
    """Put ``source`` into a Hugging Face cache folder as ``filename`` of model ``repo_id``, in
    the layout huggingface_hub reads offline (``HF_HUB_CACHE=cache HF_HUB_OFFLINE=1``): what a
    copied cache from a machine with internet looks like."""
    commit = '0' * 40
    repo = cache / f'models--{repo_id.replace("/", "--")}'
    (repo / 'refs').mkdir(parents=True, exist_ok=True)
    (repo / 'refs' / 'main').write_text(commit)
    snapshot = repo / 'snapshots' / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, snapshot / filename)
    return snapshot / filename


@pytest.fixture(scope='session')
def synthetic_dir(tmp_path_factory) -> Path:
    """Ten small synthetic images with their annotation files (images/, landmarks/)."""
    out = tmp_path_factory.mktemp('synthetic')
    make_synthetic_dataset(out, num_images=10, seed=3, min_size=160, max_size=200,
                           progress=False)
    return out


@pytest.fixture(scope='session')
def coco_dir(synthetic_dir: Path) -> Path:
    """The synthetic set converted: 4 train, 3 val, 3 test images."""
    convert(synthetic_dir / 'landmarks', synthetic_dir / 'images', synthetic_dir, train_ratio=0.4,
            val_ratio=0.3, test_ratio=0.3, seed=0, progress=False)
    return synthetic_dir


@pytest.fixture(scope='session')
def peaked_scenes():
    """Images with faces, their boxes and landmarks (see tests/peaked_model.py)."""
    from peaked_model import make_scenes
    return make_scenes()


@pytest.fixture(scope='session')
def peaked_checkpoint(peaked_scenes, tmp_path_factory) -> Path:
    """A model whose heatmaps peak at the landmarks of ``peaked_scenes``, for point-by-point
    comparisons of two implementations (see tests/peaked_model.py)."""
    from peaked_model import train_peaked
    return train_peaked(peaked_scenes, MAIN_CONFIG,
                        tmp_path_factory.mktemp('peaked') / 'peaked.pth')


@pytest.fixture(scope='session')
def trained(coco_dir, tmp_path_factory) -> tuple[Path, str]:
    """A model trained for 2 iterations through tools/train.py: (work dir, its log)."""
    work_dir = tmp_path_factory.mktemp('train')
    proc = run_tool('train.py', MAIN_CONFIG, '--work-dir', work_dir, '--data-root', coco_dir,
                    '--cfg-options', *TINY)
    return work_dir, proc.stdout + proc.stderr
