"""Checkpoints are data: unreadable or hostile files give one line; stored code never runs;
pretrained names resolve offline from a prepared Hugging Face cache, or say how to bring them."""
import contextlib
import fractions
import hashlib
import importlib
import json
import logging
import os
import pickle
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from animal_landmarks_mm.checkpoints import (
    CheckpointError,
    CheckpointMismatchError,
    load_strict,
    read_checkpoint,
)
from animal_landmarks_mm.model_zoo import PRETRAINED, resolve_checkpoint
from animal_landmarks_mm.testing.browser import free_port
from conftest import FINETUNE_CONFIG, MAIN_CONFIG, REPO, TINY, prepare_hub_cache, run_tool


class _RunsCode:
    """A pickle that would call os.system when loaded without weights_only."""

    def __reduce__(self):
        import os
        return (os.system, ('touch /tmp/never',))


#: the message hub mmengine's resume reads (a state dict of MessageHub, empty)
HUB = dict(log_scalars={}, runtime_info={}, resumed_keys={})


def _broken_files(folder):
    good = folder / 'good.pth'
    torch.save(dict(state_dict=dict(w=torch.ones(3))), good)
    data = good.read_bytes()
    files = {
        'empty.pth': b'',
        'truncated.pth': data[:len(data) // 2],
        'text.pth': b'{"not": "a checkpoint"}',
        'empty.safetensors': b'',
        'truncated.safetensors': None,
    }
    save_file(dict(w=torch.ones(1000)), str(folder / 'whole.safetensors'))
    files['truncated.safetensors'] = (folder / 'whole.safetensors').read_bytes()[:200]
    for name, content in files.items():
        (folder / name).write_bytes(content)
    torch.save(dict(state_dict=dict(w=torch.ones(1)), meta=_RunsCode()), folder / 'code.pth')
    torch.save([1, 2, 3], folder / 'list.pth')
    torch.save(dict(state_dict=dict(w=np.ones(2))), folder / 'numpy_weights.pth')
    return [*files, 'code.pth', 'list.pth', 'numpy_weights.pth']


def test_unreadable_and_hostile_checkpoints_give_one_line_naming_the_file(tmp_path):
    for name in _broken_files(tmp_path):
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(tmp_path / name)
        message = str(info.value)
        assert name in message and '\n' not in message, message
    with pytest.raises(CheckpointError, match='checkpoint not found: nope.pth'):
        read_checkpoint('nope.pth')
    # what is not a checkpoint is named; torch's advice to load with weights_only=False
    # (which runs what the file asks) is never passed on
    (tmp_path / 'last_checkpoint').write_text('work_dirs/run/epoch_3.pth')
    (tmp_path / 'face.png').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(32))
    for name, what in (('empty.pth', 'an empty file'), ('face.png', 'a PNG image'),
                       ('last_checkpoint', 'a text file: work_dirs/run/epoch_3.pth')):
        with pytest.raises(CheckpointError, match=f'not a torch checkpoint \\({what}'):
            read_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(tmp_path / 'code.pth')
    assert 'weights_only' not in str(info.value) and 'GLOBAL' in str(info.value)
    torch.save(dict(x=fractions.Fraction(1, 3)), tmp_path / 'class.pth')  # allowed module
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(tmp_path / 'class.pth')
    assert str(info.value).endswith('(Unsupported global: GLOBAL fractions.Fraction was not an '
                                    'allowed global by default.)'), str(info.value)


def test_the_tools_say_it_in_one_line(tmp_path):
    _broken_files(tmp_path)
    for name in ('truncated.pth', 'code.pth', 'empty.safetensors'):
        proc = run_tool('export.py', tmp_path / name, tmp_path / 'out.safetensors', check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and lines[-1].startswith('error: ') and name in lines[-1]
        assert 'Traceback' not in proc.stderr


def test_every_tool_that_takes_a_checkpoint_says_a_broken_one_in_one_line(coco_dir, tmp_path):
    """Inference, evaluation, testing, fine-tuning and the annotator's model assistance: a
    truncated checkpoint is one line naming it, before any work, never a traceback."""
    _broken_files(tmp_path)
    broken = tmp_path / 'truncated.pth'
    images, landmarks = coco_dir / 'images', coco_dir / 'landmarks'
    commands = {
        'infer.py': [images, '--checkpoint', broken, '--out-dir', tmp_path / 'infer'],
        'evaluate.py': ['--checkpoint', broken, '--image-dir', images, '--annotation-dir',
                        landmarks, '--output-dir', tmp_path / 'eval'],
        'test.py': [MAIN_CONFIG, broken, '--data-root', coco_dir, '--work-dir',
                    tmp_path / 'test'],
        'train.py': [MAIN_CONFIG, '--checkpoint', broken, '--data-root', coco_dir, '--work-dir',
                     tmp_path / 'train', '--no-time-estimate', '--cfg-options', *TINY],
        'annotate_landmarks.py': ['--image-dir', images, '--output-dir', tmp_path / 'ann',
                                  '--checkpoint', broken, '--port', str(free_port())],
    }
    for tool, args in commands.items():
        proc = run_tool(tool, *args, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0, tool
        assert lines and lines[-1].startswith('error: ') and str(broken) in lines[-1], \
            (tool, proc.stderr[-2000:])
        assert 'Traceback' not in proc.stderr, (tool, proc.stderr[-2000:])
    assert not list((tmp_path / 'ann').glob('*.json'))  # nothing written


def test_evaluate_never_runs_the_config_stored_in_a_checkpoint(trained, coco_dir, tmp_path):
    """mmengine stores the training config (Python code) in meta['cfg']; evaluating without
    --config must not execute it: here it would create a marker file."""
    marker = tmp_path / 'executed'
    checkpoint = torch.load(trained[0] / 'epoch_1.pth')
    checkpoint['meta']['cfg'] = (f'import pathlib\npathlib.Path({str(marker)!r}).touch()\n'
                                 + checkpoint['meta']['cfg'])
    torch.save(checkpoint, tmp_path / 'hostile.pth')
    # as the checkpoint, and as the second checkpoint of a comparison
    run_tool('evaluate.py', '--checkpoint', tmp_path / 'hostile.pth', '--image-dir',
             coco_dir / 'images', '--annotation-dir', coco_dir / 'landmarks', '--split-file',
             coco_dir / 'test.txt', '--output-dir', tmp_path / 'eval', '--compare',
             tmp_path / 'hostile.pth')
    assert not marker.exists()
    assert (tmp_path / 'eval' / 'metrics.json').is_file()  # evaluated with the main config


@pytest.fixture(scope='module')
def hub_cache(trained, tmp_path_factory):
    """A Hugging Face cache holding 'anime-face-detector' (here: our tiny model, exported into
    anime_face_detector's layout), as a cache copied from a machine with internet would."""
    from animal_landmarks_mm.export import export_checkpoint
    folder = tmp_path_factory.mktemp('hub')
    exported = export_checkpoint(trained[0] / 'epoch_1.pth', folder / 'model.safetensors')
    weights = PRETRAINED['anime-face-detector']
    prepare_hub_cache(folder / 'cache', weights.repo_id, weights.filename, exported)
    # anime_face_detector's YOLOv3 (random weights: the real ones cannot be fetched here)
    from anime_face_detector._face import YOLOv3FaceDetector
    torch.manual_seed(0)
    detector = {k: v.contiguous() for k, v in YOLOv3FaceDetector().state_dict().items()}
    save_file(detector, str(folder / 'yolov3.safetensors'))
    weights = PRETRAINED['anime-face-detector-yolov3']
    prepare_hub_cache(folder / 'cache', weights.repo_id, weights.filename,
                      folder / 'yolov3.safetensors')
    return folder / 'cache'


def test_a_pretrained_name_loads_offline_from_the_cache_wherever_a_checkpoint_is_taken(
        hub_cache, coco_dir, tmp_path):
    offline = dict(HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE='1')
    # fine-tuning: --checkpoint by name, loaded strictly by StrictLoadFromHook
    proc = run_tool('train.py', MAIN_CONFIG, '--work-dir', tmp_path / 'ft', '--data-root',
                    coco_dir, '--checkpoint', 'anime-face-detector', '--cfg-options', *TINY,
                    env=offline)
    assert 'StrictLoadFromHook: loaded all 1839 tensors of the model' in proc.stdout + proc.stderr
    assert 'anime_face_detector (mmpose 0.x names)' in proc.stdout + proc.stderr
    # which weights: the name follows the repository's main, so the log names the commit
    assert (f'from anime-face-detector (hysts/anime-face-detector-hrnetv2 at commit {"0" * 40})'
            in proc.stdout + proc.stderr)
    # inference and evaluation: the name, no config
    image = sorted((coco_dir / 'images').iterdir())[0]
    run_tool('infer.py', image, '--checkpoint', 'anime-face-detector', '--out-dir',
             tmp_path / 'infer', env=offline)
    assert list((tmp_path / 'infer' / 'annotations').glob('*.json'))
    # the face detector by name too: --face-detector yolov3 without a file; it ran on the
    # image (a threshold of 1 that its random weights' scores never reach: not a hundred faces
    # of landmarks on a CPU; tests/test_infer.py follows its boxes)
    proc = run_tool('infer.py', image, '--checkpoint', 'anime-face-detector', '--face-detector',
                    'yolov3', '--face-score-thr', '1', '--out-dir', tmp_path / 'detected',
                    env=offline)
    assert f'{image.name}: the face detector found no face, skipped' in proc.stdout + proc.stderr
    run_tool('evaluate.py', '--checkpoint', 'anime-face-detector', '--image-dir',
             coco_dir / 'images', '--annotation-dir', coco_dir / 'landmarks', '--output-dir',
             tmp_path / 'eval', env=offline)
    assert (tmp_path / 'eval' / 'metrics.json').is_file()
    # the fine-tuning config as it is: its load_from is the name, no download by hand
    proc = run_tool('train.py', FINETUNE_CONFIG, '--work-dir', tmp_path / 'ft_config',
                    '--data-root', coco_dir, '--cfg-options', *TINY, env=offline)
    assert 'StrictLoadFromHook: loaded all 1839 tensors of the model' in proc.stdout + proc.stderr
    # the annotator's model assistance
    port = free_port()
    log = tmp_path / 'annotator.log'
    with open(log, 'w') as out:
        server = subprocess.Popen(
            [sys.executable, str(REPO / 'tools' / 'annotate_landmarks.py'), '--image-dir',
             coco_dir / 'images', '--output-dir', tmp_path / 'annotated', '--port', str(port),
             '--checkpoint', 'anime-face-detector'], stdout=out, stderr=subprocess.STDOUT,
            env=dict(os.environ, **offline))
    try:
        config = _wait_for_json(f'http://127.0.0.1:{port}/annotator/api/config', server, log)
        assert config['predict'] is True
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for_json(url: str, server: subprocess.Popen, log, seconds: float = 300) -> dict:
    """The JSON a starting server answers at ``url`` (a model to load on a loaded machine)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return json.loads(answer.read())
        except OSError:  # refused, reset, timed out: not listening yet
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f'the annotator did not start:\n{log.read_text()[-3000:]}')
            time.sleep(0.3)


def test_a_pretrained_name_not_in_the_cache_is_one_line_saying_how_to_bring_it(coco_dir,
                                                                              tmp_path):
    import cv2
    cv2.imwrite(str(tmp_path / 'face.png'), np.zeros((64, 64, 3), np.uint8))
    offline = dict(HF_HUB_CACHE=str(tmp_path / 'empty'), HF_HUB_OFFLINE='1')
    for tool, args in (
            ('infer.py', [tmp_path, '--out-dir', tmp_path / 'out', '--checkpoint',
                          'anime-face-detector']),
            ('export.py', ['anime-face-detector', tmp_path / 'x.safetensors']),
            ('annotate_landmarks.py', ['--image-dir', tmp_path, '--output-dir',
                                       tmp_path / 'ann', '--checkpoint', 'anime-face-detector',
                                       '--port', str(free_port())]),
            # the fine-tuning config's own load_from
            ('train.py', [FINETUNE_CONFIG, '--work-dir', tmp_path / 'ft', '--data-root',
                          coco_dir, '--no-time-estimate', '--cfg-options', *TINY])):
        proc = run_tool(tool, *args, check=False, env=offline)
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode != 0 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
        assert re.match(r'error: (load_from: )?anime-face-detector: model\.safetensors of the '
                        r'Hugging Face repository hysts/anime-face-detector-hrnetv2', last), last
        assert 'HF_HUB_OFFLINE is set' in last and 'hf download' in last
        assert 'set HF_HUB_CACHE to a copied hub folder' in last


def test_the_stored_unpickling_payload_never_runs(tmp_path):
    _broken_files(tmp_path)
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / 'code.pth')
    with pytest.raises(pickle.UnpicklingError):  # and torch's own default refuses it too
        torch.load(tmp_path / 'code.pth')


def test_one_tensor_under_both_layouts_names_is_refused_naming_both(tmp_path):
    """A file holding head.final_layer.weight and keypoint_head.final_layer.3.weight: renamed,
    both are one tensor and the last read would replace the trained one, a 1,840-tensor file
    loading "strictly" (reviewer's /tmp/rv/mixed.py)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from animal_landmarks_mm.checkpoints import CheckpointMismatchError, load_strict
    init_default_scope('mmpose')
    model = MODELS.build(Config.fromfile(str(MAIN_CONFIG)).model)
    state_dict = model.state_dict()
    trained = state_dict['head.final_layer.weight'].clone()
    mixed = dict(state_dict, **{'keypoint_head.final_layer.3.weight': torch.zeros_like(trained)})
    torch.save(dict(state_dict=mixed), tmp_path / 'mixed.pth')
    save_file({k: v.contiguous() for k, v in mixed.items()}, str(tmp_path / 'mixed.safetensors'))
    for name in ('mixed.pth', 'mixed.safetensors'):
        with pytest.raises(CheckpointMismatchError) as info:
            read_checkpoint(tmp_path / name)
        message = str(info.value)
        assert message.startswith(f'{tmp_path / name}: holds both head.final_layer.weight and '
                                  'keypoint_head.final_layer.3.weight'), message
        assert '\n' not in message
    with pytest.raises(CheckpointMismatchError, match='holds both'):
        load_strict(model, tmp_path / 'mixed.pth')
    assert torch.equal(model.state_dict()['head.final_layer.weight'], trained)


def test_a_checkpoint_saved_from_a_wrapped_model_loads_as_mmengines_loader_takes_it(tmp_path):
    """A model saved wrapped (DistributedDataParallel) names every tensor module.*: mmengine's
    load_checkpoint strips the prefix, load_strict refused such a file as not fitting
    (reviewer's ddp.py). It is stripped once, as mmengine does, with a name held both with and
    without it refused in one line."""
    model = torch.nn.Linear(2, 1)
    weights = {k: torch.full_like(v, 3.0) for k, v in model.state_dict().items()}
    torch.save(dict(state_dict={f'module.{k}': v for k, v in weights.items()}),
               tmp_path / 'wrapped.pth')
    assert load_strict(model, tmp_path / 'wrapped.pth') == (
        'mmpose 1.x, saved from a wrapped model (names prefixed module.)')
    assert model.weight.tolist() == [[3.0, 3.0]] and model.bias.tolist() == [3.0]
    torch.save(dict(weights, **{'module.weight': weights['weight']}), tmp_path / 'both.pth')
    with pytest.raises(CheckpointMismatchError) as info:
        read_checkpoint(tmp_path / 'both.pth')
    assert str(info.value) == (f'{tmp_path / "both.pth"}: holds both weight and module.weight, '
                               'two names of one tensor (weight): the one read last would '
                               'silently replace the other')


def _resume_runner(path, model):
    """What StrictLoadFromHook's resume check reads of mmengine's Runner: a run resuming from
    ``path`` with ``model``, no schedule and no training loop built (no data to compare)."""
    return types.SimpleNamespace(_resume=True, _load_from=str(path), work_dir=str(path.parent),
                                 model=model, param_schedulers=None, _train_loop=None)


def test_resuming_from_weights_that_do_not_fit_the_model_is_refused(tmp_path):
    """mmengine's resume loads weights with strict=False: a checkpoint without the head, or
    with a 68-point one, resumed with a random head and one log line (reviewer's resume/r.py).
    They are compared with the model under the names mmengine loads them by (module. stripped,
    no layout mapping: an anime_face_detector head would stay random too) and refused in one
    line naming the file and the keys."""
    from animal_landmarks_mm.hooks import StrictLoadFromHook
    model = torch.nn.ModuleDict(dict(backbone=torch.nn.Linear(2, 2),
                                     head=torch.nn.ModuleDict(dict(
                                         final_layer=torch.nn.Conv2d(2, 3, 1)))))
    weights = model.state_dict()
    backbone = {k: v for k, v in weights.items() if k.startswith('backbone.')}
    cases = {
        'headless.pth': (backbone, 'missing: head.final_layer.bias, head.final_layer.weight'),
        'k68.pth': (dict(backbone, **{'head.final_layer.weight': torch.zeros(68, 2, 1, 1),
                                      'head.final_layer.bias': torch.zeros(68)}),
                     'shape mismatch: head.final_layer.weight (68, 2, 1, 1) vs (3, 2, 1, 1), '
                     'head.final_layer.bias (68,) vs (3,)'),
        'afd.pth': (dict(backbone, **{'keypoint_head.final_layer.3.weight':
                                      weights['head.final_layer.weight'],
                                      'keypoint_head.final_layer.3.bias':
                                      weights['head.final_layer.bias']}),
                    'missing: head.final_layer.bias, head.final_layer.weight; unexpected: '
                    'keypoint_head.final_layer.3.bias, keypoint_head.final_layer.3.weight'),
    }
    for name, (state_dict, difference) in cases.items():
        path = tmp_path / name
        torch.save(dict(state_dict=state_dict, meta=dict(epoch=1, iter=2), message_hub=HUB),
                   path)
        with pytest.raises(CheckpointMismatchError) as info:
            StrictLoadFromHook().before_run(_resume_runner(path, model))
        assert str(info.value) == (
            f'resume: {path} does not fit the model: {difference} (mmengine would resume '
            'anyway, with the weights it cannot load left as initialised): resume with the '
            'config of the run it continues')
    # what fits resumes, saved wrapped (DistributedDataParallel's module.) or not
    for name, state_dict in (('ok.pth', weights),
                             ('wrapped.pth', {f'module.{k}': v for k, v in weights.items()})):
        torch.save(dict(state_dict=state_dict, meta=dict(epoch=1, iter=2), message_hub=HUB),
                   tmp_path / name)
        StrictLoadFromHook().before_run(_resume_runner(tmp_path / name, model))


def test_a_resume_checkpoint_is_a_training_checkpoint_without_stored_code(tmp_path):
    from animal_landmarks_mm.checkpoints import read_resume_checkpoint
    weights = dict(w=torch.ones(2))
    torch.save(dict(state_dict=weights, meta=dict(epoch=1, iter=2), message_hub=HUB),
               tmp_path / 'ok.pth')
    assert read_resume_checkpoint(tmp_path / 'ok.pth')['meta']['iter'] == 2
    torch.save(dict(state_dict=weights, meta=dict(epoch=1, iter=2, config='import os\n'),
                    message_hub=HUB), tmp_path / 'code.pth')
    torch.save(weights, tmp_path / 'weights.pth')
    # a release file (tools/export.py --format mmpose) keeps the epoch and iter, not the
    # message hub mmengine's resume reads: it passed here, then a KeyError traceback there
    torch.save(dict(state_dict=weights, meta=dict(epoch=1, iter=2)), tmp_path / 'release.pth')
    torch.save(dict(state_dict=weights, meta=dict(epoch=1, iter=2),
                    message_hub=dict(HUB, resumed_keys=[])), tmp_path / 'list_keys.pth')
    torch.save(dict(state_dict=weights, meta=dict(epoch='1', iter=2), message_hub=HUB),
               tmp_path / 'text_epoch.pth')
    torch.save(dict(state_dict=weights, meta=dict(epoch=np.int64(1), iter=2), message_hub=HUB),
               tmp_path / 'numpy_epoch.pth')
    assert read_resume_checkpoint(tmp_path / 'numpy_epoch.pth')['meta']['epoch'] == 1
    for name, message in (('code.pth', "refused: its meta holds a 'config'"),
                          ('weights.pth', 'not a training checkpoint'),
                          ('release.pth', 'not a training checkpoint (no meta epoch and iter, '
                           'or no message hub, to resume at)'),
                          # mmengine's load_state_dict: an AttributeError traceback
                          ('list_keys.pth', 'not a training checkpoint (no meta epoch and iter, '
                           'or no message hub, to resume at)'),
                          ('text_epoch.pth', "meta epoch is '1', not a step count"),
                          ('missing.pth', 'checkpoint not found')):
        with pytest.raises(CheckpointError, match=re.escape(message)) as info:
            read_resume_checkpoint(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)


@pytest.mark.timeout(120)
def test_a_resume_checkpoints_training_state_holds_its_values(tmp_path):
    """The optimizer's and message hub's tensors of a resume checkpoint are checked as the
    weights are for what is read before any value: an expanded view (one value in the file,
    10**12 claimed) reached the optimizer's load_state_dict, which copies it to the device in
    full. Named by where it lies; the weights' other rules (dtype, NaN) are not the state's."""
    from animal_landmarks_mm.checkpoints import read_resume_checkpoint
    weights = dict(w=torch.ones(2))
    huge = torch.zeros(1).expand(10**12)
    states = dict(
        optimizer=dict(optimizer=dict(state={0: dict(step=torch.tensor(3.0), exp_avg=huge)})),
        message_hub=dict(HUB, runtime_info=dict(extra=[1, (2, torch.zeros(1).expand(4,
                                                                                 10**9))])))
    for key, where in (('optimizer', 'optimizer.optimizer.state.0.exp_avg'),
                       ('message_hub', 'message_hub.runtime_info.extra.1.1')):
        path = tmp_path / f'{key}.pth'
        torch.save({'state_dict': weights, 'meta': dict(epoch=1, iter=2), 'message_hub': HUB,
                    key: states[key]}, path)
        with pytest.raises(CheckpointError) as info:
            read_resume_checkpoint(path)
        assert str(info.value).startswith(f'{path}: not a training state to resume: {where} is '
                                          'a view of '), info.value
    # a moment's NaN and an integral step are the run's own: resumed as they are
    ok = dict(state={0: dict(step=torch.tensor(3), exp_avg=torch.tensor([float('nan')]))})
    torch.save(dict(state_dict=weights, meta=dict(epoch=1, iter=2), optimizer=ok,
                    message_hub=HUB), tmp_path / 'ok.pth')
    assert read_resume_checkpoint(tmp_path / 'ok.pth')['optimizer']['state'][0]['step'] == 3


def test_a_training_checkpoint_as_mmengine_writes_it_resumes_and_exports(tmp_path):
    """What an mmengine training checkpoint holds besides weights: MessageHub HistoryBuffers of
    numpy float64 and inf scalars, the numpy random state (a uint32 array in a tuple), AdamW and
    scheduler states, numpy int64, float32 and uint8 arrays in meta; in the zip format and the
    legacy one. It reads (to resume) and exports (its meta as plain data)."""
    from mmengine.logging import HistoryBuffer, MessageHub

    from animal_landmarks_mm.checkpoints import read_resume_checkpoint
    from animal_landmarks_mm.export import export_checkpoint
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    hub = MessageHub.get_instance('genuine-checkpoint-test')
    for i in range(5):
        hub.update_scalar('train/loss', np.float64(0.5 + i))
        hub.update_scalar('train/lr', 1e-3)
        hub.update_scalar('val/NME', float('inf'))
    hub.update_info('iter', 5)
    hub.update_info('rng', np.random.RandomState(0).get_state())
    dataset_meta = dict(sigmas=np.full(28, 0.025, np.float32),
                        keypoint_colors=np.zeros((28, 3), np.uint8), keypoint_id2name={0: 'a'},
                        flip_indices=list(range(28)))
    meta = dict(epoch=1, iter=5, seed=np.int64(7), cfg='model = dict()', experiment_name='x',
                mmengine_version='0.10.7', dataset_meta=dataset_meta, best=np.float64('inf'))
    optimizer_state = optimizer.state_dict()
    checkpoint = dict(meta=meta, state_dict=model.state_dict(), message_hub=hub.state_dict(),
                      optimizer=optimizer_state,
                      param_schedulers=[dict(scheduler.state_dict(), lr_lambdas=[None])])
    for legacy in (False, True):
        path = tmp_path / f'epoch_1{"_legacy" if legacy else ""}.pth'
        torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
        read = read_resume_checkpoint(path)
        assert read['meta']['seed'] == 7 and type(read['meta']['seed']) is np.int64
        assert read['meta']['best'] == float('inf')
        assert np.array_equal(read['meta']['dataset_meta']['sigmas'], dataset_meta['sigmas'])
        scalars = read['message_hub']['log_scalars']
        assert isinstance(scalars['train/loss'], HistoryBuffer)
        assert scalars['train/loss'].mean() == pytest.approx(2.5)
        assert scalars['val/NME'].current() == float('inf')
        rng = read['message_hub']['runtime_info']['rng']
        assert rng[1].dtype == np.uint32 and np.array_equal(rng[1], hub.get_info('rng')[1])
        assert torch.equal(read['optimizer']['state'][0]['exp_avg'],
                           optimizer_state['state'][0]['exp_avg'])
        assert read['param_schedulers'][0]['last_epoch'] == 0
        out = export_checkpoint(path, tmp_path / f'release{"_legacy" if legacy else ""}.pth',
                                fmt='mmpose')
        released = torch.load(out, weights_only=True)['meta']
        assert released['dataset_meta']['sigmas'] == [pytest.approx(0.025)] * 28
        assert released['dataset_meta']['keypoint_colors'] == [[0, 0, 0]] * 28
        assert released['seed'] == 7 and released['best'] == float('inf')


def test_a_path_that_is_there_but_no_file_is_not_said_to_be_missing(tmp_path):
    """A folder, a FIFO or a link to nothing was 'checkpoint not found: X', X being there."""
    (tmp_path / 'folder.pth').mkdir()
    os.mkfifo(tmp_path / 'fifo.pth')
    (tmp_path / 'dangling.pth').symlink_to(tmp_path / 'nothing.pth')
    from animal_landmarks_mm.checkpoints import read_resume_checkpoint
    for name, what in (('folder.pth', 'a folder'), ('fifo.pth', 'a FIFO, a device or a socket'),
                       ('dangling.pth', 'a symbolic link to nothing')):
        for read in (read_checkpoint, read_resume_checkpoint):
            with pytest.raises(CheckpointError) as info:
                read(tmp_path / name)
            assert str(info.value) == f'{tmp_path / name}: not a regular file ({what})'
    for read in (read_checkpoint, read_resume_checkpoint):  # what is missing still is
        with pytest.raises(CheckpointError, match=f'^checkpoint not found: {tmp_path}'):
            read(tmp_path / 'nothing.pth')


class _CreatesFile:
    """A pickle that creates a file when loaded without weights_only (as torch.hub does)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_a_pretrained_init_takes_only_a_local_checkpoint_read_as_data(tmp_path, monkeypatch):
    """mmengine's Pretrained init fetches a URL (any scheme its CheckpointLoader knows) with
    torch.hub's weights_only=False, and loads a local file past read_checkpoint's guards: only
    an existing local file is taken, read as data first, wherever the init_cfg stands."""
    from animal_landmarks_mm.checkpoints import check_pretrained_init
    _broken_files(tmp_path)  # code.pth: a pickle asking for os.system
    torch.save(dict(state_dict=dict(w=torch.ones(2))), tmp_path / 'good.pth')
    save_file(dict(w=torch.ones(2)), str(tmp_path / 'good.safetensors'))
    (tmp_path / 'folder.pth').mkdir()
    (tmp_path / 'http:' / 'host').mkdir(parents=True)  # 'http://host/x.pth' names a file too
    torch.save(dict(w=torch.ones(2)), tmp_path / 'http:' / 'host' / 'x.pth')
    monkeypatch.chdir(tmp_path)

    def model(checkpoint):  # a Pretrained init in a list, beside another initialiser
        return dict(type='TopdownPoseEstimator', head=dict(init_cfg=None), backbone=dict(
            init_cfg=[dict(type='Kaiming', layer='Conv2d'),
                      dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')]))

    check_pretrained_init(model(str(tmp_path / 'good.pth')))
    check_pretrained_init(model('good.pth'))
    check_pretrained_init(None)  # no model, no init
    # another initialiser takes no checkpoint: nothing is read
    check_pretrained_init(dict(init_cfg=dict(type='Normal', checkpoint='http://x/y.pth')))
    where = 'model.backbone.init_cfg[1].checkpoint'
    for checkpoint, reason in (
            ('http://127.0.0.1:1/x.pth', 'only a local file is taken'),
            ('http://host/x.pth', 'only a local file is taken'),
            ('https://user:secret@example.org/x.pth?token=abc', 'only a local file is taken'),
            ('open-mmlab://msra/hrnetv2_w18', 'only a local file is taken'),
            ('openmmlab://msra/hrnetv2_w18', 'only a local file is taken'),
            ('mmcls://resnet50', 'only a local file is taken'),
            ('torchvision://resnet50', 'only a local file is taken'),
            ('modelzoo://resnet50', 'only a local file is taken'),
            ('pavi://model/x.pth', 'only a local file is taken'),
            ('s3://bucket/x.pth', 'only a local file is taken'),
            ('missing.pth', 'checkpoint not found'),
            ('folder.pth', 'not a regular file'),
            ('anime-face-detector', 'checkpoint not found'),  # names are --checkpoint's
            ('good.safetensors', '.safetensors'),
            (str(tmp_path / 'code.pth'), 'not a checkpoint torch can read safely'),
            (5, 'not a file path')):
        with pytest.raises(CheckpointError) as info:
            check_pretrained_init(model(checkpoint))
        message = str(info.value)
        assert message.startswith(f'{where}: ') and reason in message, message
        assert '\n' not in message and 'secret' not in message and 'abc' not in message
    # nested anywhere in the model, also as an override of another initialiser
    nested = dict(head=dict(init_cfg=dict(type='Normal', override=dict(
        type='Pretrained', name='final_layer', checkpoint='http://x/y.pth'))))
    with pytest.raises(CheckpointError, match=r'^model\.head\.init_cfg\.override\.checkpoint: '):
        check_pretrained_init(nested)


def test_train_refuses_a_pretrained_init_before_anything_is_fetched_or_run(coco_dir, tmp_path):
    """README's way to start from ImageNet weights (--cfg-options model.backbone.init_cfg...)
    given a URL: mmengine would download it and unpickle it with weights_only=False, running its
    code (reviewer's /tmp/reviews/ckpt/http_repro.py); given a hostile local file, it would read
    it past read_checkpoint's guards. tools/train.py says either in one line before training,
    the URL never asked."""
    marker = tmp_path / 'executed'
    torch.save(dict(state_dict=dict(w=torch.ones(1)), meta=_CreatesFile(marker)),
               tmp_path / 'evil.pth')
    body = (tmp_path / 'evil.pth').read_bytes()
    asked = []

    class Serves(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            asked.append(self.path)
            self.send_response(200)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(('127.0.0.1', 0), Serves)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for checkpoint in (f'http://127.0.0.1:{server.server_port}/evil.pth',
                           tmp_path / 'evil.pth'):
            proc = run_tool(
                'train.py', MAIN_CONFIG, '--data-root', coco_dir, '--work-dir', tmp_path / 'work',
                '--no-time-estimate', '--cfg-options', *TINY,
                'model.backbone.init_cfg._delete_=True', 'model.backbone.init_cfg.type=Pretrained',
                f'model.backbone.init_cfg.checkpoint={checkpoint}', check=False,
                env=dict(TORCH_HOME=str(tmp_path / 'torch_home')))
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode != 0 and lines, proc.stdout[-2000:]
            assert lines[-1].startswith('error: model.backbone.init_cfg.checkpoint: '), \
                proc.stderr[-3000:]
            assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    finally:
        server.shutdown()
        server.server_close()
    assert not asked and not marker.exists()
    assert not list((tmp_path / 'work').rglob('*.pth'))  # refused before training


# --- pretrained names against a Hub endpoint on this machine (HF_ENDPOINT), never the internet


@contextlib.contextmanager
def _hub_environment():
    """Yields ``configure(**variables)``, which sets (None: removes) environment variables of
    huggingface_hub for the test. huggingface_hub reads them once, when imported, so after each
    change its constants are read again, as a new process would, and its HTTP client (which read
    the proxy variables) is replaced; everything is restored afterwards."""
    import huggingface_hub
    from huggingface_hub import constants

    def configure(**variables):
        for name, value in variables.items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        importlib.reload(constants)
        huggingface_hub.close_session()

    with pytest.MonkeyPatch.context() as patch:
        # a proxy or token of the machine running the tests must not take part
        configure(**{name: None for name in ('HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY',
                                             'http_proxy', 'https_proxy', 'all_proxy',
                                             'HF_TOKEN')})
        yield configure
    importlib.reload(constants)
    huggingface_hub.close_session()


class _LocalHub:
    """A Hugging Face Hub endpoint on 127.0.0.1 serving one file at one commit, or failing as
    ``mode`` says: ``good``, ``truncate`` (the body cut in half), ``e<status>`` (``e403``: that
    HTTP status), ``not-a-hub`` (a 200 without the Hub's headers), ``registry-stream`` (the file
    as ``good``, but huggingface_hub's AI-agent registry, ``/api/agent-harnesses``, streamed
    without end), ``oversize`` (the file's size declared, then a body streamed past it),
    ``trickle`` (the file's body a byte every 0.1 s), ``missing`` (the Hub's 404 of a file the
    repository lacks, naming the commit, as for any answer, in ``X-Repo-Commit``), ``drip``
    (the status line and headers of the file's answers a byte every 0.2 s), ``xet`` (the file
    as ``good``, with the Xet storage headers that send huggingface_hub to ``hf_xet``); a
    CONNECT (as to a proxy) gets
    a 407. (huggingface_hub retries a 5xx or 429 for 23 s: the tests use other statuses, or skip
    its waits.) ``etag``: the ETag it answers (None: the body's sha256, as the Hub's for an LFS
    file); ``requests``: how many it answered, ``paths`` their paths; ``sent``: the bytes of the
    endless bodies sent, ``sent_all`` set when one ended; ``stop`` ends them (the fixture sets
    it)."""

    def __init__(self):
        self.mode = 'good'
        self.body = b'x' * 1000
        self.commit = 'c0ffee' * 6 + 'c0ff'
        self.etag = None
        self.url = ''
        self.requests = 0  # answered so far
        self.paths = []
        self.sent = 0
        self.sent_all = threading.Event()
        self.stop = threading.Event()

    def handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._answer(send_body=False)

            def do_GET(self):
                self._answer(send_body=True)

            def do_CONNECT(self):
                self.send_response(407)
                self.send_header('Proxy-Authenticate', 'Basic realm="corp"')
                self._empty()

            def _empty(self):
                self.send_header('Content-Length', '0')
                self.end_headers()

            def _answer(self, send_body):
                hub.requests += 1
                hub.paths.append(self.path)
                if hub.mode == 'registry-stream' and self.path == '/api/agent-harnesses':
                    self.send_response(200)
                    self.send_header('Content-Type', 'application/json')
                    self.end_headers()
                    # 20 MB/s up to 256 MiB, then a byte a second: never done
                    return self._endless(b'{"standardEnvVars": ["', 256 << 20, 0.05)
                if '/resolve/' not in self.path:  # huggingface_hub's other calls
                    self.send_response(404)
                    return self._empty()
                if hub.mode.startswith('e'):
                    self.send_response(int(hub.mode[1:]))
                    return self._empty()
                if hub.mode == 'drip':
                    head = (f'HTTP/1.1 200 OK\r\nX-Repo-Commit: {hub.commit}\r\nX-Pad: '
                            + 'a' * 10000).encode()
                    try:
                        for k in range(len(head)):
                            if hub.stop.wait(0.2):
                                break
                            self.wfile.write(head[k:k + 1])
                            self.wfile.flush()
                    except OSError:  # the client left
                        pass
                    self.close_connection = True
                    return
                if hub.mode == 'missing':
                    self.send_response(404)
                    self.send_header('X-Error-Code', 'EntryNotFound')
                    self.send_header('X-Repo-Commit', hub.commit)
                    return self._empty()
                self.send_response(200)
                if hub.mode != 'not-a-hub':
                    self.send_header('X-Repo-Commit', hub.commit)
                    etag = hub.etag or hashlib.sha256(hub.body).hexdigest()
                    self.send_header('ETag', f'"{etag}"')
                if hub.mode == 'xet':  # hf_xet's client would ask this route, then its CAS
                    self.send_header('X-Xet-Hash', hashlib.sha256(hub.body).hexdigest())
                    self.send_header('X-Xet-Refresh-Route', f'{hub.url}/api/xet-refresh')
                if send_body and hub.mode in ('oversize', 'trickle'):
                    self.send_header('Connection', 'close')  # the body ends when it does
                    self.end_headers()
                    self.close_connection = True
                    if hub.mode == 'oversize':  # as fast as it goes, up to 128 MiB
                        return self._endless(b'', 128 << 20, 0)
                    return self._endless(b'', 0, 0)  # a byte every 0.1 s
                self.send_header('Content-Length', str(len(hub.body)))
                self.end_headers()
                if send_body:
                    cut = len(hub.body) // 2 if hub.mode == 'truncate' else len(hub.body)
                    self.wfile.write(hub.body[:cut])
                    self.close_connection = hub.mode == 'truncate'

            def _endless(self, start, fast_bytes, pause):
                """``start``, then MiB after MiB (``pause`` s apart) up to ``fast_bytes``,
                then a byte every 0.1 s, until the client leaves or ``hub.stop``."""
                try:
                    self.wfile.write(start)
                    while not hub.stop.is_set():
                        if hub.sent < fast_bytes:
                            self.wfile.write(b'a' * (1 << 20))
                            hub.sent += 1 << 20
                            time.sleep(pause)
                        else:
                            self.wfile.write(b'a')
                            hub.sent += 1
                            hub.stop.wait(0.1)
                except OSError:  # the client left
                    pass
                finally:
                    self.close_connection = True
                    hub.sent_all.set()

        return Handler


#: a self-signed certificate of 127.0.0.1 (valid to 2126) and its key, for a local Hub over
#: https that huggingface_hub's client trusts through SSL_CERT_FILE
TLS_DIR = Path(__file__).parent / 'tls'


@contextlib.contextmanager
def _serving_hub(tmp_path, tls: bool = False):
    """A :class:`_LocalHub` that huggingface_hub downloads from (``HF_ENDPOINT``, online: the
    session's ``HF_HUB_OFFLINE`` lifted) into an empty cache of the test's, over https with
    ``tls``; ``hub.configure`` changes the environment further."""
    hub = _LocalHub()
    server = ThreadingHTTPServer(('127.0.0.1', 0), hub.handler())
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(TLS_DIR / 'cert.pem', TLS_DIR / 'key.pem')
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05),
                     daemon=True).start()
    hub.url = f'{"https" if tls else "http"}://127.0.0.1:{server.server_port}'
    try:
        with _hub_environment() as configure:
            configure(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(tmp_path / 'hub'),
                      HF_HOME=str(tmp_path / 'hf_home'), HF_HUB_OFFLINE=None,
                      SSL_CERT_FILE=str(TLS_DIR / 'cert.pem') if tls else None)
            hub.configure = configure
            yield hub
    finally:
        hub.stop.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def local_hub(tmp_path):
    """A local Hub over http (:func:`_serving_hub`)."""
    with _serving_hub(tmp_path) as hub:
        yield hub


def _download_error(name: str = 'anime-face-detector') -> str:
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint(name)
    message = str(info.value)
    assert '\n' not in message and message.startswith(f'{name}: model.safetensors of the '
                                                      'Hugging Face repository hysts/'), message
    return message


def test_a_truncated_download_is_one_line_naming_the_endpoint(local_hub):
    """httpx2's RemoteProtocolError escaped hf_hub_download as a traceback (after its 5
    retries, which make this test take 5 s)."""
    local_hub.mode = 'truncate'
    message = _download_error()
    assert f'cannot be downloaded (from {local_hub.url}: RemoteProtocolError: ' in message
    assert 'hf download hysts/anime-face-detector-hrnetv2 model.safetensors' in message


def test_other_transport_errors_are_one_line_too(local_hub):
    """An HF_ENDPOINT without a scheme (UnsupportedProtocol) and a proxy demanding
    authentication (ProxyError) escaped as tracebacks as well."""
    host = local_hub.url.removeprefix('http://')
    local_hub.configure(HF_ENDPOINT=host)
    assert f'(from {host}: UnsupportedProtocol: ' in _download_error()
    # the local server plays the proxy; the endpoint is never resolved, let alone reached
    local_hub.configure(HF_ENDPOINT='https://hub.invalid', HTTPS_PROXY=local_hub.url)
    assert '(from https://hub.invalid: ProxyError: ' in _download_error()


@pytest.mark.parametrize('mode, reason', [
    ('e403', 'HfHubHTTPError: 403 Forbidden'),  # a firewall, say
    ('not-a-hub', "FileMetadataError: Response from"),
])
def test_the_error_names_the_endpoint_asked_and_what_it_answered(local_hub, mode, reason):
    """Every LocalEntryNotFoundError was 'huggingface.co cannot be reached', also for an HTTP
    error or a reply that is no Hub's from a custom HF_ENDPOINT: it names the endpoint and the
    reason (the error's cause)."""
    local_hub.mode = mode
    message = _download_error()
    assert 'huggingface.co' not in message.split('; on a machine')[0]
    assert f'(from {local_hub.url}: {reason}' in message, message


@pytest.mark.parametrize('mode', ['e403', 'e401'])
def test_credentials_in_the_endpoint_are_never_printed(local_hub, mode):
    """huggingface_hub's HTTP errors quote the URL asked, with the user:password of an
    HF_ENDPOINT, and a query string may carry a token."""
    local_hub.mode = mode
    host = local_hub.url.removeprefix('http://')
    local_hub.configure(HF_ENDPOINT=f'http://alice:S3CRET@{host}/?token=T0KEN')
    message = _download_error()
    assert 'S3CRET' not in message and 'T0KEN' not in message and 'alice' not in message
    assert f'(from http://***@{host}/?***: HfHubHTTPError: ' in message, message
    assert f'{mode[1:]} ' in message  # the reason is still there


@pytest.mark.parametrize('failure', ['e500', 'closed port'])
def test_credentials_never_reach_huggingface_hubs_own_log_lines(local_hub, monkeypatch, capfd,
                                                                 caplog, failure):
    """huggingface_hub logs each retry of a failed request with the URL asked, an HF_ENDPOINT's
    user:password and query included, before our one line (reviewer's
    HF_ENDPOINT='http://user:secret@127.0.0.1:9/?token=abc': six such lines over 31 s). Its
    records are redacted while the download runs (its waits between retries skipped here)."""
    import huggingface_hub.utils._http as hub_http
    waits = []
    monkeypatch.setattr(hub_http, 'time', types.SimpleNamespace(sleep=waits.append))
    if failure == 'e500':  # retried, as a closed port is
        local_hub.mode = failure
        host = local_hub.url.removeprefix('http://')
    else:
        host = f'127.0.0.1:{free_port()}'
    local_hub.configure(HF_ENDPOINT=f'http://alice:S3CRET@{host}/?token=T0KEN')
    caplog.set_level(logging.WARNING)
    message = _download_error()
    out, err = capfd.readouterr()
    printed = out + err + caplog.text + message
    assert len(waits) == 5 and caplog.records  # huggingface_hub retried, and said so
    assert f'thrown while requesting HEAD http://***@{host}/?***' in printed, printed
    for secret in ('S3CRET', 'T0KEN', 'alice'):
        assert secret not in printed, printed
    hub_loggers = [logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)
                   if name.startswith('huggingface_hub')]
    assert not any(logger.filters for logger in hub_loggers)  # removed afterwards


def test_an_etag_that_is_no_file_hash_never_becomes_a_file_name(local_hub, tmp_path):
    """huggingface_hub names the cache's copy after the endpoint's ETag, unchecked: a hostile
    HF_ENDPOINT answering '../../../escaped' had it write tmp_path/escaped (and
    escaped.lock), outside the cache (reviewer's hostile_hub.py etag). Only a file hash (40 or
    64 hex digits) is taken; huggingface_hub's own function is restored afterwards."""
    from huggingface_hub import file_download
    normalize = file_download._normalize_etag
    before = sorted(p.name for p in tmp_path.iterdir())
    local_hub.etag = '../../../escaped'  # from <cache>/models--.../blobs/ up to tmp_path
    message = _download_error()
    assert message == (
        'anime-face-detector: model.safetensors of the Hugging Face repository '
        f'hysts/anime-face-detector-hrnetv2: {local_hub.url} answered \'../../../escaped\' as '
        'its ETag, which is no file hash (40 or 64 hex digits) but would name a file of the '
        'endpoint\'s choosing, in the cache or outside it: refused, nothing downloaded (is '
        'HF_ENDPOINT a Hugging Face Hub?)')
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not list((tmp_path / 'hub').rglob('*escaped*'))
    assert file_download._normalize_etag is normalize
    # a git blob's sha1 (the Hub's ETag of a file outside LFS) is a file hash too
    local_hub.body = _safetensors_bytes(w=torch.ones(2))
    local_hub.etag = hashlib.sha1(local_hub.body).hexdigest()
    assert read_checkpoint('anime-face-detector')[0]['w'].tolist() == [1, 1]


@pytest.mark.parametrize('mode', ['good', 'missing'])
def test_a_commit_that_is_no_hash_never_becomes_a_folder_name(local_hub, tmp_path, mode):
    """huggingface_hub makes a folder of the endpoint's X-Repo-Commit, unchecked: of a 404's,
    the note that the file does not exist (.no_exist/<commit>/<file>), so a hostile HF_ENDPOINT
    answering a path had it make folders and a file outside the cache (and write the path into
    refs/main); of a 200's, the snapshot folder. Only a commit hash (40 hex digits) is taken,
    from every answer."""
    local_hub.mode = mode
    outside = tmp_path / 'outside'
    for commit in (str(outside), '../../../outside'):  # absolute, or up from the cache's
        local_hub.commit = commit
        message = _download_error()
        assert message == (
            'anime-face-detector: model.safetensors of the Hugging Face repository '
            f'hysts/anime-face-detector-hrnetv2: {local_hub.url} answered {commit!r} as its '
            'X-Repo-Commit, which is no commit hash (40 lowercase hex digits) but would name a '
            'file of the endpoint\'s choosing, in the cache or outside it: refused, nothing '
            'downloaded (is HF_ENDPOINT a Hugging Face Hub?)'), message
        assert not outside.exists() and not list(tmp_path.rglob('*outside*'))
        assert not list((tmp_path / 'hub').rglob('refs/main'))
    # the Hub's own: a 404 of a missing file is said as such, a 200 downloads
    local_hub.commit = 'c0ffee' * 6 + 'c0ff'
    if mode == 'missing':
        assert 'cannot be downloaded' in _download_error()
    else:
        local_hub.body = _safetensors_bytes(w=torch.ones(2))
        assert read_checkpoint('anime-face-detector')[0]['w'].tolist() == [1, 1]


def test_without_the_etag_check_a_download_is_refused_saying_why_and_the_cache_still_serves(
        local_hub, tmp_path, monkeypatch):
    """A huggingface_hub without _normalize_etag (the private name the ETag check wraps):
    online, nothing is downloaded and the message says why (it was nested inside "is not in
    the cache and cannot be downloaded" with the wrong advice); offline no server answers, so
    a cached copy is served (it was refused, "HF_HUB_OFFLINE is set")."""
    from huggingface_hub import file_download
    monkeypatch.delattr(file_download, '_normalize_etag')
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint('anime-face-detector')
    message = str(info.value)
    assert message.startswith('anime-face-detector: huggingface_hub ') and '\n' not in message
    assert 'has no _normalize_etag' in message and 'cannot be downloaded' not in message
    assert local_hub.requests == 0
    weights = PRETRAINED['anime-face-detector']
    save_file({'w': torch.ones(3)}, str(tmp_path / 'model.safetensors'))
    prepare_hub_cache(tmp_path / 'cache', weights.repo_id, weights.filename,
                      tmp_path / 'model.safetensors')
    local_hub.configure(HF_HUB_CACHE=str(tmp_path / 'cache'), HF_HUB_OFFLINE='1')
    assert read_checkpoint('anime-face-detector')[0]['w'].tolist() == [1, 1, 1]


def test_without_huggingface_hub_a_name_is_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'huggingface_hub', None)  # the 'tools' extra left out
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint('anime-face-detector')
    message = str(info.value)
    assert '\n' not in message and 'pip install huggingface_hub' in message
    assert 'pass its path' in message


def test_a_download_records_its_commit_and_a_broken_copy_says_how_to_renew_it(local_hub):
    """The name follows the repository's main: which commit was used is told for logs and
    predictions; a cached file that cannot be read says how to get a fresh one, and doing so
    works."""
    from huggingface_hub import constants

    from animal_landmarks_mm.infer import model_id
    from animal_landmarks_mm.model_zoo import describe_checkpoint, pretrained_model_id
    weights = PRETRAINED['anime-face-detector']
    good = _safetensors_bytes(w=torch.ones(4))
    local_hub.body = good[:-8]  # served whole as far as HTTP goes, but not a readable file
    with pytest.raises(CheckpointError) as info:
        read_checkpoint('anime-face-detector')
    message = str(info.value)
    folder = os.path.join(constants.HF_HUB_CACHE, 'models--hysts--anime-face-detector-hrnetv2')
    assert '\n' not in message and 'not a readable safetensors file' in message
    assert (f'it is the Hugging Face cache\'s copy of {weights.repo_id} (commit '
            f'{local_hub.commit}): delete {folder} and run again' in message), message
    assert f'`hf download {weights.repo_id} model.safetensors --force-download`' in message
    shutil.rmtree(folder)  # as told
    local_hub.body = good
    assert read_checkpoint('anime-face-detector')[0]['w'].tolist() == [1, 1, 1, 1]
    assert pretrained_model_id('anime-face-detector') == f'anime-face-detector@{local_hub.commit}'
    # what a prediction's file records as its model (meta.model)
    assert model_id('anime-face-detector') == f'anime-face-detector@{local_hub.commit}'
    assert describe_checkpoint('anime-face-detector') == (
        f'anime-face-detector ({weights.repo_id} at commit {local_hub.commit})')


def _within(seconds: float, call):
    """``call()``'s result (or its error) if it returns within ``seconds``; the test fails
    otherwise (the call goes on in its thread until the local hub stops at the test's end)."""
    outcome = {}

    def run():
        try:
            outcome['result'] = call()
        except BaseException as e:  # noqa: BLE001 (handed to the test)
            outcome['error'] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f'still running after {seconds} s')
    if 'error' in outcome:
        raise outcome['error']
    return outcome['result']


def _cache_holds_no_file(cache) -> None:
    """Nothing of a stopped download in a Hub cache: no blob, partial or whole, no snapshot."""
    files = [p for p in Path(cache).rglob('*')
             if p.is_file() and ('blobs' in p.parts or 'snapshots' in p.parts)]
    assert not files, files


def _download_never_asking(local_hub, mode: str, path: str) -> None:
    """A name downloaded whole from the local hub in ``mode``, ``path`` never asked of it."""
    local_hub.mode = mode
    local_hub.body = _safetensors_bytes(w=torch.ones(2))
    weights = _within(30, lambda: read_checkpoint('anime-face-detector')[0])
    assert weights['w'].tolist() == [1, 1]
    assert path not in local_hub.paths, local_hub.paths


def test_huggingface_hubs_agent_registry_is_never_fetched_from_the_endpoint(local_hub,
                                                                            monkeypatch):
    """huggingface_hub (2.4) builds the user-agent of its first request with an AI-agent
    registry it GETs from {HF_ENDPOINT}/api/agent-harnesses, reading the whole body: an
    endpoint streaming it without end grew the memory without bound and the file was never
    asked for (reviewer's hf_server.py registry: 797 -> 996 MB in 15 s). Its telemetry is off
    while a name downloads, restored afterwards."""
    _detect_agent = pytest.importorskip('huggingface_hub.utils._detect_agent')
    from huggingface_hub import constants
    monkeypatch.setattr(_detect_agent, '_registry', None)  # not read yet in this process
    monkeypatch.setattr(constants, 'HF_HUB_DISABLE_TELEMETRY', False)  # huggingface_hub's default
    _download_never_asking(local_hub, 'registry-stream', '/api/agent-harnesses')
    assert constants.HF_HUB_DISABLE_TELEMETRY is False


def test_an_endpoints_xet_headers_never_take_the_download_out_of_its_bounds(local_hub,
                                                                            monkeypatch):
    """An endpoint answering with Xet storage headers would have huggingface_hub hand the
    file to hf_xet's own client (its refresh route, then a CAS server of the endpoint's
    choosing), which none of the download's bounds watch: Xet is off while a name downloads
    (the file comes over plain HTTP), restored afterwards."""
    pytest.importorskip('hf_xet')
    from huggingface_hub import constants
    monkeypatch.setattr(constants, 'HF_HUB_DISABLE_XET', False)  # huggingface_hub's default
    _download_never_asking(local_hub, 'xet', '/api/xet-refresh')
    assert constants.HF_HUB_DISABLE_XET is False


def test_a_body_past_its_declared_size_is_stopped_with_nothing_kept(local_hub):
    """huggingface_hub compares the size of a file's body with the one declared (HEAD) only
    once the body has ended: an endpoint declaring 100 bytes, then streaming without end,
    filled blobs/<etag>.incomplete (290 MB in 15 s; reviewer's hf_server.py file). It is
    stopped at the first chunk past the size (huggingface_hub's 10 MiB chunks), before that
    chunk is written, in one line; nothing is left in the cache."""
    from huggingface_hub import constants, get_session
    hooks = list(get_session().event_hooks['response'])
    local_hub.mode = 'oversize'
    message = _within(60, _download_error)
    assert (f'hysts/anime-face-detector-hrnetv2: the download from {local_hub.url} was '
            'stopped: it sent more of model.safetensors than the 1000 bytes it declared; '
            'nothing of it is kept in the cache (is HF_ENDPOINT a Hugging Face Hub?); on a '
            'machine with internet run `hf download' in message), message
    assert local_hub.sent_all.wait(30)
    assert local_hub.sent < 64 << 20  # of 128 MiB it would send
    _cache_holds_no_file(constants.HF_HUB_CACHE)
    assert get_session().event_hooks['response'] == hooks  # the bounds' hook removed


@pytest.mark.parametrize('bound, why', [
    ('stall', 'less than 100 bytes arrived in 1 s'),
    ('deadline', 'model.safetensors was not done within 2 s'),
])
def test_a_trickling_download_is_stopped_with_nothing_kept(local_hub, monkeypatch, bound, why):
    """A body sent a byte every 0.1 s never trips huggingface_hub's timeout (one per read):
    the 1000 bytes took 100 s here, a larger declared size as long as the endpoint likes.
    Stopped below a least progress (here 100 bytes a second) and past a deadline (here 2 s)."""
    from huggingface_hub import constants

    from animal_landmarks_mm import model_zoo
    if bound == 'stall':
        monkeypatch.setattr(model_zoo, '_STALL_BYTES', 100, raising=False)
        monkeypatch.setattr(model_zoo, '_STALL_SECONDS', 1.0, raising=False)
    else:
        monkeypatch.setattr(model_zoo, '_STALL_BYTES', 1, raising=False)
        monkeypatch.setattr(model_zoo, '_DOWNLOAD_DEADLINE_SECONDS', 2.0, raising=False)
    local_hub.mode = 'trickle'
    started = time.monotonic()
    message = _within(30, _download_error)
    assert f'the download from {local_hub.url} was stopped: {why}; nothing' in message, message
    assert time.monotonic() - started < 10
    _cache_holds_no_file(constants.HF_HUB_CACHE)


def test_a_cache_lock_held_by_another_process_is_waited_for_within_the_deadline(
        local_hub, monkeypatch):
    """huggingface_hub waits for the cache's lock of a file without end: another process's
    download, or a lock left by a killed one on a file system without locks, held a download
    (and the training or inference after it) for good, and the deadline's message blamed the
    endpoint (a hunt's repro). It waits within the deadline (2 s here), then says whose lock;
    once the lock is free, the download goes on."""
    import hashlib
    import subprocess

    from huggingface_hub import constants

    from animal_landmarks_mm import model_zoo
    monkeypatch.setattr(model_zoo, '_DOWNLOAD_DEADLINE_SECONDS', 2.0, raising=False)
    local_hub.body = _safetensors_bytes(w=torch.ones(2))
    lock = (Path(constants.HF_HUB_CACHE) / '.locks' / 'models--hysts--anime-face-detector-hrnetv2'
            / f'{hashlib.sha256(local_hub.body).hexdigest()}.lock')
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, '-c', (
        'import fcntl, sys, time\n'
        f'f = open({str(lock)!r}, "a"); fcntl.flock(f, fcntl.LOCK_EX)\n'
        'print("held", flush=True); time.sleep(60)')], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == 'held\n'
        started = time.monotonic()
        message = _within(30, _download_error)
        assert time.monotonic() - started < 10
        assert f"the cache's lock {lock} stayed held by another process for 2 s" in message, \
            message
        _cache_holds_no_file(constants.HF_HUB_CACHE)
    finally:
        holder.kill()
        holder.wait()
    assert _within(30, lambda: read_checkpoint('anime-face-detector')[0])['w'].tolist() == [1, 1]


@pytest.mark.parametrize('tls', [False, True], ids=['http', 'https'])
def test_an_answer_whose_headers_trickle_is_stopped_at_the_deadline(tmp_path, monkeypatch,
                                                                    tls):
    """The bounds watched bodies only: a server sending its status line and headers a byte
    every 0.2 s (under huggingface_hub's per-read timeout) kept the download waiting for hours
    (reviewer's t_hub_header_drip.py). The deadline (2 s here) ends it, whatever it waits on;
    over https too, where TLS takes the connection's socket over (its TCP socket, shut, ended
    nothing: reviewer's tls_drip.py)."""
    from huggingface_hub import constants, get_session

    from animal_landmarks_mm import model_zoo
    monkeypatch.setattr(model_zoo, '_DOWNLOAD_DEADLINE_SECONDS', 2.0, raising=False)
    with _serving_hub(tmp_path, tls) as local_hub:
        local_hub.mode = 'drip'
        started = time.monotonic()
        message = _within(30, _download_error)
        assert (f'the download from {local_hub.url} was stopped: model.safetensors was not done '
                'within 2 s; nothing') in message, message
        assert time.monotonic() - started < 10
        _cache_holds_no_file(constants.HF_HUB_CACHE)
        session = get_session()
        assert not [hook for event in ('request', 'response') for hook in session.event_hooks[event]
                    if getattr(hook, '__name__', '') in ('traced', 'bound')]
        # the next download, of a good answer, is not stopped by the timer of this one
        local_hub.mode, local_hub.body = 'good', _safetensors_bytes(w=torch.ones(2))
        assert read_checkpoint('anime-face-detector')[0]['w'].tolist() == [1, 1]


def test_a_client_huggingface_hub_makes_during_the_download_is_bounded_too(local_hub,
                                                                             monkeypatch):
    """After a connection error huggingface_hub closes its client (close_session) and the next
    request takes a new one from its factory, which had no hook: a trickle then ran on, the
    progress bar seeing no chunk of 10 MiB. Here the client is closed between the metadata
    request and the download, as that retry does: the trickle is still stopped."""
    from huggingface_hub import close_session, constants, file_download, get_session

    from animal_landmarks_mm import model_zoo
    monkeypatch.setattr(model_zoo, '_STALL_BYTES', 100, raising=False)
    monkeypatch.setattr(model_zoo, '_STALL_SECONDS', 1.0, raising=False)
    metadata = file_download.get_hf_file_metadata

    def then_a_new_client(*args, **kwargs):
        answer = metadata(*args, **kwargs)
        close_session()
        return answer

    monkeypatch.setattr(file_download, 'get_hf_file_metadata', then_a_new_client)
    local_hub.mode = 'trickle'
    message = _within(30, _download_error)
    assert (f'the download from {local_hub.url} was stopped: less than 100 bytes arrived in '
            '1 s; nothing') in message, message
    _cache_holds_no_file(constants.HF_HUB_CACHE)
    assert not [hook for hook in get_session().event_hooks['response']
                if getattr(hook, '__name__', '') == 'bound']  # none left on a client


def _safetensors_bytes(**tensors) -> bytes:
    from safetensors.torch import save
    return save(tensors)


def test_the_hook_logs_the_commit_a_pretrained_name_loaded(tmp_path):
    from animal_landmarks_mm.hooks import StrictLoadFromHook
    model = torch.nn.Linear(2, 2)
    save_file({k: torch.zeros_like(v) for k, v in model.state_dict().items()},
              str(tmp_path / 'model.safetensors'))
    weights = PRETRAINED['anime-face-detector']
    prepare_hub_cache(tmp_path / 'cache', weights.repo_id, weights.filename,
                      tmp_path / 'model.safetensors')
    logged = []
    # what of a runner the hook reads: a training run's loop not built (_train_loop a config),
    # a config of no Pretrained init
    runner = types.SimpleNamespace(_resume=False, _load_from='anime-face-detector', model=model,
                                   logger=types.SimpleNamespace(info=logged.append), cfg={},
                                   _train_loop={})
    with _hub_environment() as configure:
        configure(HF_HUB_CACHE=str(tmp_path / 'cache'), HF_HUB_OFFLINE='1')
        hook = StrictLoadFromHook()
        hook.before_run(runner)
        hook.before_train(runner)
    assert torch.count_nonzero(model.weight) == 0  # loaded
    assert logged == [f'StrictLoadFromHook: loaded all 2 tensors of the model from '
                      f'anime-face-detector ({weights.repo_id} at commit {"0" * 40}) '
                      '(mmpose 1.x)'], logged


def test_the_tests_never_reach_the_hub():
    """The session's guard (conftest.py): offline unless a test lifts it."""
    from huggingface_hub import constants
    assert os.environ.get('HF_HUB_OFFLINE') == '1' and constants.HF_HUB_OFFLINE


# --- tensors that are no plain weights, and meta that is no dict


def _odd_tensors():
    """Tensors of a Linear(4, 1)'s weight shape that are no plain weights."""
    return {
        'quantized': torch.quantize_per_tensor(torch.ones(1, 4), 0.1, 0, torch.qint8),
        'sparse': torch.sparse_coo_tensor(torch.tensor([[0], [0]]), torch.tensor([1.0]), (1, 4)),
        'complex': torch.zeros(1, 4, dtype=torch.complex64),
        'meta': torch.ones(1, 4, device='meta'),
    }


@pytest.mark.parametrize('kind', list(_odd_tensors()))
def test_a_tensor_that_is_no_plain_weight_is_refused_when_read(tmp_path, kind):
    """A quantized or sparse tensor reached load_state_dict, which raised a page; a complex one
    loaded with its imaginary part dropped; a meta one holds no values."""
    model = torch.nn.Linear(4, 1)
    state_dict = dict(model.state_dict(), weight=_odd_tensors()[kind])
    torch.save(state_dict, tmp_path / f'{kind}.pth')
    for read in (lambda p: read_checkpoint(p), lambda p: load_strict(model, p)):
        with pytest.raises(CheckpointError) as info:
            read(tmp_path / f'{kind}.pth')
        message = str(info.value)
        assert '\n' not in message, message
        assert message.startswith(f'{tmp_path / kind}.pth: not a state dict of plain weights: '
                                  'weight is '), message


def _refused_by_every_reader(path, model, message: str) -> None:
    """``path`` refused with ``message`` by each tool's way of reading a checkpoint: read,
    loaded strictly into ``model``, exported in anime_face_detector's layout and as an mmpose
    release file; nothing written beside it."""
    from animal_landmarks_mm.export import export_checkpoint
    for read in (read_checkpoint, lambda p: load_strict(model, p),
                 lambda p: export_checkpoint(p, p.parent / 'out.safetensors'),
                 lambda p: export_checkpoint(p, p.parent / 'out.pth', fmt='mmpose')):
        with pytest.raises(CheckpointError) as info:
            read(path)
        assert str(info.value) == f'{path}: {message}'
    assert not list(path.parent.glob('out*'))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16,
                                   torch.float8_e5m2])
def test_weights_that_are_not_finite_are_refused_when_read_and_exported(tmp_path, dtype):
    """A diverged run's NaN or Inf weights loaded, fine-tuned and exported without a word
    (reviewer's nan.pth); float8 ones are looked at as float32 (torch has no isfinite of some
    float8 types)."""
    model = torch.nn.Linear(4, 1)
    for value in (float('nan'), float('inf'), -float('inf')):
        weight = torch.ones(1, 4)
        weight[0, 2] = value
        weight = weight.to(dtype)
        torch.save(dict(state_dict=dict(model.state_dict(), weight=weight)), tmp_path / 'x.pth')
        _refused_by_every_reader(tmp_path / 'x.pth', model, 'not a state dict of plain '
                                 'weights: weight is not finite (NaN or Inf: a diverged run?)')
    torch.save(dict(state_dict=model.state_dict()), tmp_path / 'finite.pth')
    assert read_checkpoint(tmp_path / 'finite.pth')[0].keys() == {'weight', 'bias'}


def test_float64_weights_beyond_float32_are_refused_when_read_and_exported(tmp_path):
    """A float64 weight of 1e300 is finite, and passed the check: loaded into the model's
    float32 weights (and exported as float32) it was inf (a hunt's repro). float64 weights
    within float32's range still load."""
    model = torch.nn.Linear(4, 1)
    weight = torch.ones(1, 4, dtype=torch.float64)
    weight[0, 1] = -1e300
    torch.save(dict(state_dict=dict(model.state_dict(), weight=weight)), tmp_path / 'x.pth')
    _refused_by_every_reader(tmp_path / 'x.pth', model, 'not a state dict of plain weights: '
                             "weight is beyond float32's range (infinite once loaded into the "
                             'model)')
    weight[0, 1] = -3e38
    torch.save(dict(state_dict=dict(model.state_dict(), weight=weight)), tmp_path / 'x.pth')
    load_strict(model, tmp_path / 'x.pth')
    assert model.weight[0, 1].item() == pytest.approx(-3e38)


def _not_weights() -> dict[str, torch.Tensor]:
    """Tensors of floating-point types no weight is read in."""
    bits = torch.tensor([[0x7F, 0xFF]], dtype=torch.uint8)
    return {
        # a block scale's format: NaN (0xFF) is 'finite' to torch.isfinite
        'float8_e8m0fnu': bits.view(torch.float8_e8m0fnu),
        # two values packed in one element: no float() on the CPU (a NotImplementedError
        # traceback from every reader)
        'float4_e2m1fn_x2': bits.view(torch.float4_e2m1fn_x2),
    }


@pytest.mark.parametrize('dtype', list(_not_weights()))
@pytest.mark.parametrize('suffix', ['pth', 'safetensors'])
def test_a_floating_point_type_no_weight_is_read_in_is_refused_in_one_line(tmp_path, dtype,
                                                                           suffix):
    """float8_e8m0fnu NaN weights loaded and exported (reviewer's e8.py), float4_e2m1fn_x2
    gave a traceback (f4.py): only the floating-point types weights are read in are taken;
    another is one line naming the file, the tensor and its type, when read, loaded or
    exported."""
    from animal_landmarks_mm.export import export_checkpoint
    model = torch.nn.Linear(2, 1)
    path = tmp_path / f'{dtype}.{suffix}'
    state_dict = dict(model.state_dict(), weight=_not_weights()[dtype])
    if suffix == 'pth':
        torch.save(state_dict, path)
    else:
        save_file(state_dict, str(path))
    for read in (read_checkpoint, lambda p: load_strict(model, p),
                 lambda p: export_checkpoint(p, tmp_path / 'out.safetensors'),
                 lambda p: export_checkpoint(p, tmp_path / 'out.pth', fmt='mmpose')):
        with pytest.raises(CheckpointError) as info:
            read(path)
        assert str(info.value) == (
            f'{path}: not a state dict of plain weights: weight is of dtype torch.{dtype}, not '
            'one read as weights (float16/32/64, bfloat16, float8 e4m3/e5m2, or integers)')
    assert not list(tmp_path.glob('out*'))


_READ_TIMED = """
import sys, time
from animal_landmarks_mm.checkpoints import CheckpointError, read_checkpoint
for path in sys.argv[1:]:
    start = time.perf_counter()
    try:
        read_checkpoint(path)
        outcome = 'loaded'
    except CheckpointError as e:
        outcome = f'refused {e}'
    print(f'{time.perf_counter() - start:.3f} {outcome}', flush=True)
"""


def test_a_tensor_claiming_more_values_than_its_file_stores_is_refused_at_once(tmp_path):
    """torch.save(torch.full((1,), v).expand(n)) stores one value and loads as n (stride 0):
    the finite check summed all n, 18 s and 6.7 GB for n = 10**9 (reviewer's stride0.py).
    Such a tensor, or one whose strides overlap, is refused before any value is read; read in
    another process, which the old check kept busy for minutes."""
    files = {
        'expanded': torch.full((1,), 1.0).expand(10 ** 12),
        'expanded_overflowing': torch.full((1,), 3e38).expand(10 ** 12),
        'expanded_row': torch.ones(1, 4).expand(10 ** 11, 4),
        'overlapping': torch.ones(2 * 10 ** 5).as_strided((10 ** 5, 10 ** 5), (1, 1)),
    }
    for name, tensor in files.items():
        torch.save(dict(state_dict=dict(w=tensor)), tmp_path / f'{name}.pth')
    proc = subprocess.run([sys.executable, '-c', _READ_TIMED,
                           *(str(tmp_path / f'{name}.pth') for name in files)],
                          capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == len(files), (proc.returncode, proc.stdout,
                                                                proc.stderr[-2000:])
    for line, (name, tensor) in zip(lines, files.items()):
        seconds, outcome = line.split(' ', 1)
        assert float(seconds) < 1, line
        assert outcome.startswith(f'refused {tmp_path / name}.pth: not a state dict of plain '
                                  f'weights: w is a view of {tensor.numel()} values over '), line
        assert '\n' not in outcome


def test_views_that_share_a_storage_load_and_only_their_own_values_count(tmp_path, monkeypatch):
    """A state dict may hold views of one storage (tied weights, slices, a transpose): each
    lies within it and loads. The finite check reads each tensor's own values, chunk by
    chunk: a NaN elsewhere in the storage is no weight's."""
    from animal_landmarks_mm import checkpoints
    base = torch.arange(12.0).reshape(3, 4)
    views = dict(base=base, tied=base, transposed=base.t(), row=base[1], column=base[:, 1],
                 offset=base[2, 1:], scalar=torch.tensor(2.0), empty=torch.empty(0, 3),
                 size_one=torch.ones(1).expand(1), broadcast_one=torch.ones(3, 1).expand(3, 1))
    torch.save(views, tmp_path / 'views.pth')
    state_dict, _ = read_checkpoint(tmp_path / 'views.pth')
    assert all(torch.equal(state_dict[k], v) for k, v in views.items())
    assert state_dict['tied'].untyped_storage().data_ptr() == \
        state_dict['transposed'].untyped_storage().data_ptr()  # read as one storage
    with_nan = torch.tensor([float('nan'), 1.0, 2.0, 3.0])
    torch.save(dict(w=with_nan[1:]), tmp_path / 'beside.pth')
    assert read_checkpoint(tmp_path / 'beside.pth')[0]['w'].tolist() == [1, 2, 3]
    monkeypatch.setattr(checkpoints, '_FINITE_CHUNK', 3)  # the last of several chunks
    for dtype in (torch.float32, torch.float8_e4m3fn):  # float8: no sum on the CPU
        grid = torch.ones(4, 5)
        grid[3, 2] = float('nan')
        torch.save(dict(w=grid.to(dtype).t()), tmp_path / 'nan.pth')
        with pytest.raises(CheckpointError, match='w is not finite'):
            read_checkpoint(tmp_path / 'nan.pth')
        torch.save(dict(w=torch.ones(5, 4).to(dtype).t()), tmp_path / 'ones.pth')
        assert read_checkpoint(tmp_path / 'ones.pth')[0]['w'].shape == (4, 5)


def test_weights_of_another_kind_of_dtype_do_not_fit(tmp_path):
    """An integer tensor for a float weight would be cast and load; float16 for float32 is
    fine."""
    model = torch.nn.Linear(2, 1)
    torch.save(dict(weight=torch.ones(1, 2, dtype=torch.int64), bias=torch.ones(1)),
               tmp_path / 'int.pth')
    with pytest.raises(CheckpointMismatchError, match=r'dtype mismatch: weight int64 vs float32'):
        load_strict(model, tmp_path / 'int.pth')
    torch.save(dict(weight=torch.ones(1, 2, dtype=torch.float16), bias=torch.ones(1)),
               tmp_path / 'half.pth')
    load_strict(model, tmp_path / 'half.pth')
    assert model.weight.tolist() == [[1.0, 1.0]]
    # a checkpoint cast to float16 whole: BatchNorm's counter too, which torch loads
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    torch.save({k: v.half() for k, v in model.state_dict().items()}, tmp_path / 'all.pth')
    assert model.state_dict()['1.num_batches_tracked'].dtype == torch.int64
    load_strict(model, tmp_path / 'all.pth')


def test_what_load_state_dict_still_refuses_is_one_line(tmp_path):
    model = torch.nn.Linear(2, 1)
    torch.save(model.state_dict(), tmp_path / 'ok.pth')

    def refuse(*args, **kwargs):
        raise RuntimeError('Error(s) in loading state_dict for Linear:\n\tsome reason')

    model.register_load_state_dict_pre_hook(refuse)
    with pytest.raises(CheckpointMismatchError) as info:
        load_strict(model, tmp_path / 'ok.pth')
    assert str(info.value) == (f'{tmp_path / "ok.pth"} does not fit the model: Error(s) in '
                               'loading state_dict for Linear: some reason')


def test_what_is_no_state_dict_of_tensors_is_said_naming_the_key_at_fault(tmp_path):
    """'not a state dict of tensors' did not say which key (reviewer's nt.py: an int
    num_batches_tracked among 1,839 tensors)."""
    cases = {
        'int.pth': (dict(w=torch.ones(2), **{'bn.num_batches_tracked': 0}),
                    'bn.num_batches_tracked is of type int, not a tensor'),
        'key.pth': ({3: torch.ones(2)}, 'the key 3 is not a name'),
        'list.pth': ([torch.ones(2)], 'it is of type list'),
        'empty.pth': ({}, 'it holds no tensors'),
    }
    for name, (checkpoint, why) in cases.items():
        torch.save(checkpoint, tmp_path / name)
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(tmp_path / name)
        assert str(info.value) == f'{tmp_path / name}: not a state dict of tensors: {why}'


@pytest.mark.parametrize('meta', [torch.ones(3), np.ones(3), [1, 2], 'text'])
def test_a_meta_that_is_no_dict_is_ignored(tmp_path, meta):
    """`checkpoint.get('meta') or {}` took the truth value of a tensor or array: an error."""
    torch.save(dict(state_dict=dict(w=torch.ones(3)), meta=meta), tmp_path / 'm.pth')
    state_dict, read_meta = read_checkpoint(tmp_path / 'm.pth')
    assert read_meta == {} and state_dict['w'].tolist() == [1, 1, 1]



def test_a_tensor_name_with_a_line_break_stays_on_one_line(tmp_path):
    """The names come from the file: one holding a line break would split the one-line error."""
    model = torch.nn.Linear(2, 1)
    torch.save(dict(model.state_dict(), **{'bad\nname': torch.ones(1)}), tmp_path / 'n.pth')
    with pytest.raises(CheckpointMismatchError) as info:
        load_strict(model, tmp_path / 'n.pth')
    assert str(info.value).endswith('unexpected: bad\\nname'), str(info.value)
    torch.save({'odd\nname': torch.zeros(2, dtype=torch.complex64)}, tmp_path / 'c.pth')
    with pytest.raises(CheckpointError, match=r'odd\\nname is of dtype torch.complex64'):
        read_checkpoint(tmp_path / 'c.pth')
    torch.save({'x' * 10**6: torch.zeros(2, dtype=torch.complex64)}, tmp_path / 'l.pth')
    with pytest.raises(CheckpointError) as info:  # a megabyte of name, cut short
        read_checkpoint(tmp_path / 'l.pth')
    assert len(str(info.value)) < 500


def test_a_long_cause_is_cut_after_its_credentials_are_redacted():
    """A password straddling the cut of a long server message would escape the redaction."""
    from types import SimpleNamespace

    from animal_landmarks_mm.model_zoo import _why_not_downloaded
    cause = OSError('Client error 407 while requesting ' + 'x' * 250
                    + ' via https://alice:S3cretPassw0rdThatIsLong@proxy.example:3128/ for url')
    why = _why_not_downloaded(cause, SimpleNamespace(HF_HUB_OFFLINE=False,
                                                     ENDPOINT='https://hub.example'))
    assert 'S3c' not in why and 'alice' not in why and why.startswith(
        'from https://hub.example: OSError: Client error 407')


@pytest.mark.parametrize('text, expected', [
    ('GET https://u:p@w@hub.example/api/x?token=abc&b=2: 500',
     'GET https://***@hub.example/api/x?***: 500'),
    ("for 'http://h/x?token=1' (see http://h/a?b=1#c, http://h/#frag?kept.)",
     "for 'http://h/x?***' (see http://h/a?***#c, http://h/#frag?kept.)"),
    ('no URL here?token=1', 'no URL here?token=1'),
])
def test_redact_urls_hides_user_info_and_queries(text, expected):
    from animal_landmarks_mm.model_zoo import redact_urls
    assert redact_urls(text) == expected


def test_redact_urls_reads_crafted_text_once():
    """Each scheme started a scan to the end of the text: a few hundred kilobytes of 'a://' took
    minutes."""
    from animal_landmarks_mm.model_zoo import redact_urls
    text = 'a://' * 100_000 + '?token=1'
    assert redact_urls(text) == 'a://' * 100_000 + '?***'
    assert redact_urls('a' * 400_000) == 'a' * 400_000
