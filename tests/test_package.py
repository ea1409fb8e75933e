"""Importing the package: the README's install check fails on a broken install."""
import os
import subprocess
import sys
import textwrap


def run_python(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHONWARNINGS='ignore'))


def test_import_fails_when_mmpose_is_missing_beside_torch():
    """mmpose unimportable while torch, mmcv and mmengine are installed is a broken training
    install, not the onnxruntime-only deployment: ``import animal_landmarks_mm`` (the README's
    install check) fails, naming mmpose. tests/test_onnx.py imports it with the whole stack
    missing."""
    proc = run_python('''
        import sys
        sys.modules['mmpose'] = None  # import mmpose raises ModuleNotFoundError
        import animal_landmarks_mm
    ''')
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert 'ModuleNotFoundError' in proc.stderr and 'mmpose' in proc.stderr.splitlines()[-1]


def test_import_fails_when_an_installed_mmcv_is_broken():
    """A package that is installed but fails to import (mmcv built for another torch, say)
    raises too, whatever else is installed."""
    proc = run_python('''
        import importlib.abc, sys

        class Broken(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == 'mmcv._ext':  # the compiled ops, which mmpose's models load
                    raise ImportError('undefined symbol in mmcv._ext', name='mmcv._ext')

        sys.meta_path.insert(0, Broken())
        import animal_landmarks_mm
    ''')
    assert proc.returncode != 0
    assert 'mmcv._ext' in proc.stderr.splitlines()[-1]
