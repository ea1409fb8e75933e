"""Print (and save as JSON) the project's benchmark numbers on this machine.

Example:
    python tools/benchmark.py --out work_dirs/benchmark.json
"""
import argparse
import json
import platform

from animal_landmarks_mm.benchmark import converter_throughput, format_table

BENCHMARKS = {'converter': converter_throughput}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', nargs='+', choices=sorted(BENCHMARKS), default=None,
                        help='run only these benchmarks')
    parser.add_argument('--out', help='also write the results to this JSON file')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    results = {name: BENCHMARKS[name]() for name in (args.only or BENCHMARKS)}
    print(f'machine: {platform.processor() or platform.machine()}, {platform.python_version()}')
    print(format_table(results))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(machine=platform.platform(), results=results), f, indent=1)


if __name__ == '__main__':
    main()
