"""Benchmarks that print numbers (never timed tests). ``tools/benchmark.py`` runs them.

One module per subject; :data:`BENCHMARKS` names each benchmark's function.

Each benchmark runs in a fresh process (so that its peak memory is its own) on whatever device
is present, stopped if it has no result by its deadline, and returns a dict of measurements:

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
  opening it, ``n`` to the next such picture (decoded ahead), an edit reaching disk, opening
  a folder of 5,000 images, and one face done from scratch against by reviewing a prediction
  (actions and machine time).
"""
from __future__ import annotations

import importlib
import multiprocessing
import queue as queue_module
import time

#: benchmark name -> ``module:function``, the module relative to this package when it starts
#: with a dot (imported in the child process only)
BENCHMARKS = {
    'training': '.training:training_throughput',
    'pipeline': '.training:pipeline_throughput',
    'inference': '.inference:inference_latency',
    'onnx': '.onnx:onnx_latency',
    'converter': '.converter:converter_throughput',
    'annotator': '.annotator:annotator_editing',
}
#: seconds a benchmark may take before it is stopped: each takes minutes on 2 CPU cores (all of
#: them about 8); one that hangs (a loader worker, a browser that never answers) is not waited
#: for forever
DEFAULT_DEADLINE_S = 1800


def run(name: str) -> dict:
    """Run one benchmark in this process."""
    return _run_target(BENCHMARKS[name])


def _run_target(target: str) -> dict:
    module, function = target.split(':')
    return getattr(importlib.import_module(module, package=__name__), function)()


def _child(name: str, target: str, queue) -> None:
    try:
        queue.put((name, _run_target(target)))
    except Exception as e:  # reported, not raised: the other benchmarks still run
        queue.put((name, dict(error=f'{e.__class__.__name__}: {e}')))


def run_isolated(name: str, deadline_s: float = DEFAULT_DEADLINE_S) -> dict:
    """One benchmark in a fresh process, so its peak memory is its own; stopped (TERM, then
    KILL) when it has no result after ``deadline_s`` seconds, and reported so in one line.
    Processes the benchmark started itself may outlive it then."""
    context = multiprocessing.get_context('spawn')
    queue = context.Queue()
    # the target, not the name: the child reads no table of the parent's
    process = context.Process(target=_child, args=(name, BENCHMARKS[name], queue))
    process.start()
    deadline = time.monotonic() + deadline_s
    while True:  # a child killed (for memory, say) sends nothing: never wait for it forever
        left = deadline - time.monotonic()
        if left <= 0:
            process.terminate()
            process.join(10)
            if process.is_alive():  # TERM ignored or caught
                process.kill()
            result = dict(error=f'no result within its deadline of {deadline_s:g} s: its '
                          'process was stopped')
            break
        try:
            _, result = queue.get(timeout=min(5, left))
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
