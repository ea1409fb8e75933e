"""Annotate the 28 face landmarks of images in a browser (a point editor served by a Gradio app).

Example:
    python tools/annotate_landmarks.py --image-dir data/raw/safebooru \
        --output-dir data/landmarks
    # then open http://127.0.0.1:7860

Each image gets an annotation file in OUTPUT_DIR when finished (OUTPUT_DIR/<stem>.json, or
another free name when names clash; unfinished work is kept in OUTPUT_DIR/.drafts/);
tools/dataset.py converts the folder. One annotator at a time works in an OUTPUT_DIR (it holds
OUTPUT_DIR/.annotator.lock while it runs).
"""
import argparse
import errno
import getpass
import os
import socket
import sys

from animal_landmarks_mm.annotate import (
    AnnotationSession,
    persons_files_in_subfolders,
    read_order_file,
)
from animal_landmarks_mm.annotate_app import PRE_ANNOTATE_AHEAD
from animal_landmarks_mm.annotation import misnamed_images_warning
from animal_landmarks_mm.errors import exit_on_error, printable, some_names
from animal_landmarks_mm.infer import FACE_DETECTORS, FaceDetector, InferenceInputError, model_id


def port_number(text: str) -> int:
    """``--port``: a TCP port to listen on, 1-65535 (0, "any free port", would leave the
    address printed unknown).

    Raises:
        argparse.ArgumentTypeError: anything else (argparse says so in one line).
    """
    try:
        port = int(text)
    except ValueError:
        port = None
    if port is None or not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f'a port is a number from 1 to 65535, not {text!r}')
    return port


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--image-dir', required=True, help='the images to annotate')
    parser.add_argument('--output-dir', required=True, help='where annotation files go')
    parser.add_argument('--files', metavar='LIST',
                        help='visit these images first, in this order: a text file of names, '
                        'one per line, or a JSON list of names or of objects with a "file" or '
                        '"image" key (a ranking, a report); the other images follow')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (0.0.0.0: reachable from other machines, '
                        'without login)')
    parser.add_argument('--port', type=port_number, default=7860,
                        help='port to listen on, 1-65535 (default %(default)s)')
    parser.add_argument('--allow-host', action='append', default=[], metavar='NAME',
                        help='also answer requests made to this host name (a name other '
                        'machines reach this one by; repeatable). Other names are refused, '
                        'against DNS rebinding')
    parser.add_argument('--annotator', default=None,
                        help='your name in the files\' meta (default: the login name)')
    model = parser.add_argument_group('model-assisted annotation')
    model.add_argument('--checkpoint', help='a model trained here, an anime_face_detector '
                       'landmark checkpoint (.pth or .safetensors), the pretrained name '
                       'anime-face-detector (downloaded once into the Hugging Face cache), or an '
                       'exported .onnx graph')
    model.add_argument('--config', help='the model\'s config (default: the project\'s main '
                       'config)')
    model.add_argument('--face-detector', choices=FACE_DETECTORS,
                       help='find faces with anime_face_detector\'s detector')
    model.add_argument('--face-detector-checkpoint',
                       help='the face detector\'s weights (default: its published weights, '
                       'downloaded once into the Hugging Face cache)')
    model.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    model.add_argument('--pre-annotate', type=int, default=PRE_ANNOTATE_AHEAD, metavar='N',
                       help='predict in the background, for the image opened and the next N '
                       'to do, what Predict would give, so that Predict is instant there '
                       '(kept in memory, never written; 0: off; default %(default)s)')
    return parser.parse_args(argv)


def login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return ''


def main(argv=None):
    args = parse_args(argv)
    with exit_on_error(args.output_dir):
        if args.config and not args.checkpoint:
            raise InferenceInputError('--config needs --checkpoint')
        if args.face_detector and not args.checkpoint:
            raise InferenceInputError('--face-detector needs a landmark model (--checkpoint)')
        if args.face_detector_checkpoint and not args.face_detector:
            raise InferenceInputError('--face-detector-checkpoint needs --face-detector')
        if args.pre_annotate < 0:
            raise InferenceInputError('--pre-annotate is a number of images, 0 or more')
        order = read_order_file(args.files) if args.files else None
        # the folder held until the process ends (session.folder_lock), from before its files
        # are read: a second annotator on the folder ends here, before it reads a model or
        # writes anything
        session = AnnotationSession(args.image_dir, args.output_dir,
                                    annotator=args.annotator or login_name(), order=order,
                                    lock_option='--output-dir')
        if session.misnamed_images:
            warn_misnamed(session)
        warn_annotated_in_subfolders(session)
        # gradio loads in seconds; only after the arguments are known to be good
        from animal_landmarks_mm.annotate_app import Annotator, launch
        predictor = detector = None
        if args.checkpoint:
            from animal_landmarks_mm.infer import load_predictor
            predictor = load_predictor(args.checkpoint, config=args.config, device=args.device)
        if args.face_detector:
            detector = FaceDetector(name=args.face_detector,
                                    checkpoint=args.face_detector_checkpoint,
                                    device=args.device)
        annotator = Annotator(session=session, predictor=predictor, detector=detector,
                              model=model_id(args.checkpoint) if args.checkpoint else None,
                              pre_annotate=args.pre_annotate)
    if session.unknown_in_order:
        # the names come from the --files list: no escape sequence reaches the terminal
        print(printable(f'warning: {len(session.unknown_in_order)} names of {args.files} are '
                        f'not images of {session.image_dir} '
                        f'({some_names(session.unknown_in_order)}); left out', one_line=True),
              file=sys.stderr, flush=True)
    if not os.access(session.output_dir, os.W_OK):
        print(f'warning: {session.output_dir} is not writable: edits will show "not saved" '
              'and stay in the page', file=sys.stderr, flush=True)
    print(f'{len(session.images)} images in {session.image_dir} ({session.progress()}); '
          f'annotations go to {session.output_dir}', flush=True)
    check_can_listen(args.host, args.port)
    shown = f'[{args.host}]' if ':' in args.host else args.host
    print(f'open http://{shown}:{args.port} (Ctrl+C to stop)', flush=True)
    try:
        launch(annotator, host=args.host, port=args.port, allow_hosts=args.allow_host)
    except OSError as e:  # taken between the check and now
        sys.exit(f'error: cannot listen on {args.host}:{args.port}: {e.strerror or e}')


def warn_misnamed(session: AnnotationSession) -> None:
    """One line on the images left out for names no annotation file can hold (escaped: bytes
    that are not UTF-8 show as \\udcXX, a line break as \\n)."""
    print(printable('warning: ' + misnamed_images_warning(
        session.image_dir, session.misnamed_images, 'annotate'), one_line=True),
        file=sys.stderr, flush=True)


def warn_annotated_in_subfolders(session: AnnotationSession) -> None:
    """One line on the images a person's file in a subfolder of the output folder annotates
    and none at its top level: shown as to do here, trained on by the converter."""
    images = set(session.images)
    found = {image: path for image, path in
             persons_files_in_subfolders(session.output_dir).items()
             if image in images and not session.annotation_path(image).exists()}
    if found:
        first = next(iter(found.values())).relative_to(session.output_dir)
        print(printable(
            f'warning: {len(found)} images are annotated in subfolders of '
            f'{session.output_dir} only (such as {first}): the annotator lists the top level '
            'and shows them as to do; the converter trains on those files (a file of the '
            'image saved here would come first)', one_line=True), file=sys.stderr, flush=True)


def check_can_listen(host: str, port: int) -> None:
    """End with one line when the address cannot be listened on (the port is another
    annotator's, say), before the 'open http://...' line points the user at that other one:
    uvicorn would log its own error and exit with status 3."""
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as e:
        hint = '; pass --port N' if e.errno == errno.EADDRINUSE else ''
        sys.exit(f'error: cannot listen on {host}:{port}: {e.strerror or e}{hint}')


if __name__ == '__main__':
    main()
