"""Checkpoints are data: unreadable or hostile files give one line; stored code never runs;
pretrained names resolve offline from a prepared Hugging Face cache, or say how to bring them."""
import json
import os
import pickle
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from animal_landmarks_mm.checkpoints import CheckpointError, read_checkpoint
from animal_landmarks_mm.model_zoo import PRETRAINED
from animal_landmarks_mm.testing.browser import free_port
from conftest import FINETUNE_CONFIG, MAIN_CONFIG, REPO, TINY, prepare_hub_cache, run_tool


class _RunsCode:
    """A pickle that would call os.system when loaded without weights_only."""

    def __reduce__(self):
        import os
        return (os.system, ('touch /tmp/never',))


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
                                  '--checkpoint', broken, '--port', '0'],
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
    # inference and evaluation: the name, no config
    image = sorted((coco_dir / 'images').iterdir())[0]
    run_tool('infer.py', image, '--checkpoint', 'anime-face-detector', '--out-dir',
             tmp_path / 'infer', env=offline)
    assert list((tmp_path / 'infer' / 'annotations').glob('*.json'))
    # the face detector by name too: --face-detector yolov3 without a file
    proc = run_tool('infer.py', image, '--checkpoint', 'anime-face-detector', '--face-detector',
                    'yolov3', '--face-score-thr', '0', '--out-dir', tmp_path / 'detected',
                    env=offline)
    assert 'no boxes given' not in proc.stdout + proc.stderr
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
                                       '--port', '0']),
            # the fine-tuning config's own load_from
            ('train.py', [FINETUNE_CONFIG, '--work-dir', tmp_path / 'ft', '--data-root',
                          coco_dir, '--no-time-estimate', '--cfg-options', *TINY])):
        proc = run_tool(tool, *args, check=False, env=offline)
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode != 0 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
        assert re.match(r'error: (load_from: )?anime-face-detector: model\.safetensors of the '
                        r'Hugging Face repository hysts/anime-face-detector-hrnetv2', last), last
        assert 'HF_HUB_OFFLINE is set' in last and 'hf download' in last


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


def test_a_resume_checkpoint_is_a_training_checkpoint_without_stored_code(tmp_path):
    from animal_landmarks_mm.checkpoints import read_resume_checkpoint
    weights = dict(w=torch.ones(2))
    torch.save(dict(state_dict=weights, meta=dict(epoch=1, iter=2)), tmp_path / 'ok.pth')
    assert read_resume_checkpoint(tmp_path / 'ok.pth')['meta']['iter'] == 2
    torch.save(dict(state_dict=weights, meta=dict(epoch=1, iter=2, config='import os\n')),
               tmp_path / 'code.pth')
    torch.save(weights, tmp_path / 'weights.pth')
    for name, message in (('code.pth', "refused: its meta holds a 'config'"),
                          ('weights.pth', 'not a training checkpoint'),
                          ('missing.pth', 'checkpoint not found')):
        with pytest.raises(CheckpointError, match=re.escape(message)) as info:
            read_resume_checkpoint(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)
