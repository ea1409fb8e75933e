"""Find likely labelling mistakes in a folder of annotation files; write a report, worst first.

Checks every face against the folder's own mean shape (mirrored faces, left/right pairs swapped,
points out of click order, points off the shape, two points on one spot, the nose off the
midline, every point on one spot) and, with --checkpoint, against a model's prediction. Open
the listed images in that order with the annotator: tools/annotate_landmarks.py ... --files
REPORT (images at the image folder's top level only: the annotator maps names without folders).

Example:
    python tools/check_annotations.py --annotation-dir data/animal_faces/landmarks \
        --image-dir data/animal_faces/images --output work_dirs/check/report.json
"""
import argparse
import os
from pathlib import Path

from animal_landmarks_mm.annotation import lies_in_folder
from animal_landmarks_mm.errors import exit_on_error, printable
from animal_landmarks_mm.export import is_same_file
from animal_landmarks_mm.quality import QualityCheckError, check_annotations, default_image_dir


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--annotation-dir', required=True,
                        help='folder of annotation JSON files (read recursively)')
    parser.add_argument('--image-dir',
                        help='folder the annotations\' "image" names are relative to (default: '
                        'the annotation folder\'s sibling images/ if there is one; without '
                        'images the files are only parsed, which the geometry checks need '
                        'alone)')
    parser.add_argument('--output', required=True,
                        help='the report: a JSON list, worst first, of {"file", "image", '
                        '"annotation", "face", "reason", "score", "points", "detail"}')
    parser.add_argument('--checkpoint',
                        help='also compare the labels with this model\'s predictions (needs '
                        'the images)')
    parser.add_argument('--config', help='the model config (default: the project\'s main '
                        'config)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    parser.add_argument('--include-predicted', action='store_true',
                        help='also check files of unreviewed model predictions (status '
                        '"predicted")')
    parser.add_argument('--top', type=int, default=20,
                        help='how many entries the printed summary lists (default 20)')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    return parser.parse_args(argv)


def _same_file_in(path: Path, folder: str | Path) -> Path | None:
    """The file or folder under ``folder`` (read as the tools read it: linked subfolders
    followed, each real folder once, ``folder`` itself included) that is ``path``'s through a
    link, or None. A link among the inputs pointing outside their folder is an input all the
    same: the report would replace it, or be read among them by the next run."""
    target = os.stat(path)
    target = (target.st_dev, target.st_ino)
    visited = set()
    for top, subfolders, names in os.walk(folder, followlinks=True):
        identity = os.stat(top)
        identity = (identity.st_dev, identity.st_ino)
        if identity in visited:
            subfolders[:] = []  # a link back up the tree: walked once already
            continue
        visited.add(identity)
        if identity == target:
            return Path(top)
        for name in names:
            candidate = Path(top, name)
            try:
                found = os.stat(candidate)
            except OSError:  # a dangling link: no file to replace
                continue
            if (found.st_dev, found.st_ino) == target:
                return candidate
    return None


def check_output(path: Path, annotation_dir: Path, image_dir: str | Path | None,
                 model_files: dict[str, str | None]) -> None:
    """Refuse an output path the report cannot be written to, or one that is an input: a file
    among the annotation files or the images (it would replace one, or be read as a bad one)
    or a model file (the checkpoint would be replaced by the report), before the work is done.

    Args:
        path: ``--output``.
        annotation_dir: ``--annotation-dir``.
        image_dir: the image folder the run reads (None: none).
        model_files: ``{'--checkpoint': path, '--config': path}``, None where not given.
    """
    # a name too long, before the run rather than once it is done (and before any look-up of
    # the path, which fails on it): the longest the nearest existing folder takes
    existing = next((p for p in Path(os.path.abspath(path)).parents if p.is_dir()), None)
    try:
        longest = os.pathconf(existing, 'PC_NAME_MAX') if existing is not None else None
    except (OSError, ValueError):  # a file system that does not say
        longest = None
    if longest and len(os.fsencode(path.name)) > longest:
        raise QualityCheckError(f'--output {path}: a name of {len(os.fsencode(path.name))} '
                                f'bytes, longer than the {longest} its folder takes')
    folders = (('--annotation-dir', annotation_dir), ('--image-dir', image_dir))
    for flag, folder in folders:
        if folder is not None and lies_in_folder(path, folder):
            raise QualityCheckError(f'--output {path} is inside {flag} {folder}; write the '
                                    'report elsewhere (e.g. work_dirs/check/report.json)')
    for flag, model_file in model_files.items():
        if model_file is not None and is_same_file(path, model_file):
            raise QualityCheckError(f'--output {path} is the {flag} file {model_file}; write '
                                    'the report elsewhere (e.g. work_dirs/check/report.json)')
    if path.is_dir():
        raise QualityCheckError(f'--output {path} is a folder; give a file name such as '
                                f'{path / "report.json"}')
    if path.is_file():  # only an existing file can be an input reached through a link
        for flag, folder in folders:
            linked = folder is not None and Path(folder).is_dir() and _same_file_in(path, folder)
            if linked:
                raise QualityCheckError(f'--output {path} is the input file {linked} of {flag} '
                                        f'{folder}; write the report elsewhere (e.g. '
                                        'work_dirs/check/report.json)')
    for flag, folder in folders:  # before a folder of the output is made for nothing
        if folder is not None and not Path(folder).is_dir():
            raise QualityCheckError(f'{"annotation" if flag == "--annotation-dir" else "image"}'
                                    f' folder not found: {folder}')
    if path.parent.is_dir():  # a folder the reading reaches through a linked subfolder
        for flag, folder in folders:
            linked = folder is not None and _same_file_in(path.parent, folder)
            if linked:
                raise QualityCheckError(f'--output {path} is inside {linked}, read as part of '
                                        f'{flag} {folder}; write the report elsewhere (e.g. '
                                        'work_dirs/check/report.json)')
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise QualityCheckError(f'--output {path}: cannot create its folder '
                                f'({e.strerror or e})') from None
    if not path.parent.is_dir():
        raise QualityCheckError(f'--output {path}: {path.parent} is not a folder')
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise QualityCheckError(f'--output {path}: not writable')


def main(argv=None):
    args = parse_args(argv)
    output = Path(args.output)
    with exit_on_error(args.output):
        if args.config and not args.checkpoint:
            raise QualityCheckError('--config needs --checkpoint')
        image_dir = args.image_dir or default_image_dir(args.annotation_dir)
        check_output(output, Path(args.annotation_dir), image_dir,
                     {'--checkpoint': args.checkpoint, '--config': args.config})
        report = check_annotations(
            args.annotation_dir, image_dir, checkpoint=args.checkpoint, config=args.config,
            device=args.device, include_predicted=args.include_predicted,
            progress=not args.no_progress)
        images = f'images in {image_dir}' if image_dir else 'no images (annotation files only)'
        print(printable(f'checked {args.annotation_dir} with {images}'))
        print(report.format_summary(args.top))  # before the write: a write that fails (a
        # full disk) leaves the run's findings on the screen
        report.write(output)
        print(printable(f'wrote {output} (open the images in this order: '
                        f'tools/annotate_landmarks.py ... --files {output})'))


if __name__ == '__main__':
    main()
