"""Benchmarks that print numbers (never timed tests). ``tools/benchmark.py`` runs them.

One module per subject; :data:`BENCHMARKS` names each benchmark's function.

Each benchmark runs in a fresh process (so that its peak memory is its own) on whatever device
is present, and returns a dict of measurements:

- ``training``: images/s of a real mmengine training loop (data loader, augmentation, forward,
  backward, optimizer) for our config and for mmpose's stock WFLW HRNetV2-W18 config, on the
  same synthetic images (WFLW's 98 points made from our 28), same batch size and workers;
- ``pipeline``: our training data pipeline alone, images/s in one process, and an estimate
  for the loader workers ``tools/train.py`` gives on this device: that rate times their number
  (no DataLoader is run), to compare with what training consumes;
- ``inference``: latency per face and batched throughput of our model through mmpose's
  ``inference_topdown`` against anime-face-detector 0.1.0 on the same image and boxes;
- ``onnx``: the exported ONNX graph in onnxruntime against mmpose's ``inference_topdown`` and
  anime-face-detector 0.1.0, per face and for a batch of faces;
- ``converter``: annotation files/s of ``tools/dataset.py``'s converter on real-size images;
- ``annotator``: in headless Chromium, click-to-draw timed in the page on a 4000x3000 picture,
  opening it, an edit reaching disk, opening a folder of 5,000 images, and one face done from
  scratch against by reviewing a prediction (actions and machine time).
"""
from __future__ import annotations

import importlib
import multiprocessing
import queue as queue_module

#: benchmark name -> ``module:function`` of this package (imported in the child process only)
BENCHMARKS = {
    'training': 'training:training_throughput',
    'pipeline': 'training:pipeline_throughput',
    'inference': 'inference:inference_latency',
    'onnx': 'onnx:onnx_latency',
    'converter': 'converter:converter_throughput',
    'annotator': 'annotator:annotator_editing',
}


def run(name: str) -> dict:
    """Run one benchmark in this process."""
    module, function = BENCHMARKS[name].split(':')
    return getattr(importlib.import_module(f'{__name__}.{module}'), function)()


def _child(name: str, queue) -> None:
    try:
        queue.put((name, run(name)))
    except Exception as e:  # reported, not raised: the other benchmarks still run
        queue.put((name, dict(error=f'{e.__class__.__name__}: {e}')))


def run_isolated(name: str) -> dict:
    """One benchmark in a fresh process, so its peak memory is its own."""
    context = multiprocessing.get_context('spawn')
    queue = context.Queue()
    process = context.Process(target=_child, args=(name, queue))
    process.start()
    while True:  # a child killed (for memory, say) sends nothing: never wait for it forever
        try:
            _, result = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not process.is_alive():
                try:  # it may have put its result just before it ended
                    _, result = queue.get(timeout=1)
                except queue_module.Empty:
                    result = dict(error=f'its process ended (exit code {process.exitcode}) '
                                  'without a result: killed for memory?')
                break
    process.join()
    return result


def format_table(results: dict[str, dict]) -> str:
    """One line per benchmark: its name and its measurements."""
    return '\n'.join(f'{name:10s} ' + '  '.join(f'{k}={v}' for k, v in values.items())
                     for name, values in results.items())
