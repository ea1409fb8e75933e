"""``--device`` applied before torch is imported, for the tools that train and test.

CUDA reads ``CUDA_VISIBLE_DEVICES`` once, when torch first asks for devices, and importing
mmengine or mmcv already asks (``torch.cuda.is_available()`` at module level); so
``tools/train.py`` and ``tools/test.py`` call :func:`select_device_before_torch` before their
imports. Importing ``animal_landmarks_mm`` imports torch, so this module cannot use
``animal_landmarks_mm.training.cuda_visible_devices``: it keeps a copy of that rule, and the
tools' parsers still validate the flag there (an unknown device is refused).
"""
import os


def select_device_before_torch(argv: list[str]) -> None:
    """Set ``CUDA_VISIBLE_DEVICES`` from ``--device`` in ``argv``: ``''`` for ``cpu``, ``N``
    for ``cuda:N``; nothing for ``cuda``, none given, or a value the parser will refuse."""
    device = None
    for i, arg in enumerate(argv):
        option, equals, value = arg.partition('=')
        if option == '--device':  # the tools' parsers take no abbreviation (allow_abbrev)
            device = value if equals else (argv[i + 1] if i + 1 < len(argv) else None)
    if device == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
    elif device and device.startswith('cuda:') and device[5:].isdigit():
        os.environ['CUDA_VISIBLE_DEVICES'] = device[5:]
