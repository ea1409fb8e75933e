"""Print (and save as JSON) the project's benchmark numbers on this machine.

Example:
    python tools/benchmark.py --out work_dirs/benchmark.json
"""
import argparse
import json
import platform
import time

from animal_landmarks_mm.benchmarks import BENCHMARKS, format_table, run_isolated
from animal_landmarks_mm.errors import exit_on_error


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', nargs='+', choices=sorted(BENCHMARKS), default=None,
                        help='run only these benchmarks')
    parser.add_argument('--out', help='also write the results to this JSON file')
    return parser.parse_args(argv)


def machine() -> str:
    import os

    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
    return (f'{platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__}, '
            f'Python {platform.python_version()}')


def main(argv=None):
    args = parse_args(argv)
    results = {}
    with exit_on_error(args.out):
        for name in args.only or BENCHMARKS:
            start = time.perf_counter()
            results[name] = run_isolated(name)
            print(f'{name}: done in {time.perf_counter() - start:.0f} s', flush=True)
        print(f'machine: {machine()}')
        print(format_table(results))
        if args.out:
            with open(args.out, 'w') as f:
                json.dump(dict(machine=machine(), results=results), f, indent=1)


if __name__ == '__main__':
    main()
