"""Print (and save as JSON) the project's benchmark numbers on this machine.

Example:
    python tools/benchmark.py --out work_dirs/benchmark.json
"""
import argparse
import errno
import math
import os
import platform
import time
from pathlib import Path

from animal_landmarks_mm.annotation import new_temporary, write_json_atomic
from animal_landmarks_mm.benchmarks import (
    BENCHMARKS,
    DEFAULT_DEADLINE_S,
    format_table,
    run_isolated,
)
from animal_landmarks_mm.errors import exit_on_error
from animal_landmarks_mm.experiments import without_nan


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', nargs='+', choices=sorted(BENCHMARKS), default=None,
                        help='run only these benchmarks')
    parser.add_argument('--deadline', type=_seconds, default=DEFAULT_DEADLINE_S,
                        metavar='SECONDS', help='stop a benchmark that has no result after '
                        f'this long (default {DEFAULT_DEADLINE_S})')
    parser.add_argument('--out', help='also write the results to this JSON file (a NaN '
                        'or infinite number as null)')
    return parser.parse_args(argv)


def _seconds(text: str) -> float:
    """A positive finite number of seconds, for argparse (its one-line error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f'must be a positive number of seconds, got {text!r}')
    return value


def check_out(path: str) -> None:
    """Make sure the results can be written to ``path`` before the benchmarks run for many
    minutes: its folder is made, and a file is made there and removed again.

    Raises:
        OSError: naming ``path`` or its folder.
    """
    out = Path(path)
    if out.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        new_temporary(out).unlink()
    except OSError as e:  # named by the temporary's path: name the folder instead
        raise OSError(e.errno, e.strerror, str(out.parent)) from None


def machine() -> str:
    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
    return (f'{platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__}, '
            f'Python {platform.python_version()}')


def main(argv=None):
    args = parse_args(argv)
    results = {}
    with exit_on_error(args.out):
        if args.out:
            check_out(args.out)
        for name in args.only or BENCHMARKS:
            start = time.perf_counter()
            results[name] = run_isolated(name, deadline_s=args.deadline)
            print(f'{name}: done in {time.perf_counter() - start:.0f} s', flush=True)
        print(f'machine: {machine()}')
        print(format_table(results))
        if args.out:  # whole or not at all: an earlier file is never left cut short
            write_json_atomic(args.out, without_nan(dict(machine=machine(), results=results)))


if __name__ == '__main__':
    main()
