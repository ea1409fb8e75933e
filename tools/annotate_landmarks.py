"""Annotate the 28 face landmarks of images in a browser (a Gradio app).

Example:
    python tools/annotate_landmarks.py --image-dir data/raw/safebooru \
        --output-dir data/landmarks
    # then open http://127.0.0.1:7860

Each image gets OUTPUT_DIR/<image stem>.json when finished (unfinished work is kept in
OUTPUT_DIR/.drafts/); tools/dataset.py converts the folder.
"""
import argparse
import getpass
import sys

from animal_landmarks_mm.annotate import AnnotationSession
from animal_landmarks_mm.annotation import AnnotationError
from animal_landmarks_mm.infer import FACE_DETECTORS, FaceDetector, InferenceInputError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--image-dir', required=True, help='the images to annotate')
    parser.add_argument('--output-dir', required=True, help='where annotation files go')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (0.0.0.0: reachable from other machines, '
                        'without login)')
    parser.add_argument('--port', type=int, default=7860)
    parser.add_argument('--annotator', default=None,
                        help='your name in the files\' meta (default: the login name)')
    model = parser.add_argument_group('model-assisted annotation')
    model.add_argument('--checkpoint', help='a model trained here, or an anime_face_detector '
                       'landmark checkpoint (.pth or .safetensors)')
    model.add_argument('--config', help='the model\'s config')
    model.add_argument('--face-detector', choices=FACE_DETECTORS,
                       help='find faces with anime_face_detector\'s detector')
    model.add_argument('--face-detector-checkpoint',
                       help='the face detector\'s weights (a local file; nothing is downloaded)')
    model.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    return parser.parse_args(argv)


def login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return ''


def main(argv=None):
    args = parse_args(argv)
    try:
        if bool(args.checkpoint) != bool(args.config):
            raise InferenceInputError('--checkpoint and --config go together')
        if args.face_detector and not (args.checkpoint and args.face_detector_checkpoint):
            raise InferenceInputError(
                '--face-detector needs --face-detector-checkpoint and a landmark model')
        session = AnnotationSession(args.image_dir, args.output_dir,
                                    annotator=args.annotator or login_name())
        # gradio loads in seconds; only after the arguments are known to be good
        from animal_landmarks_mm.annotate_app import Annotator, launch
        predictor = detector = None
        if args.checkpoint:
            from animal_landmarks_mm.infer import LandmarkPredictor
            predictor = LandmarkPredictor(args.config, args.checkpoint, args.device)
        if args.face_detector:
            detector = FaceDetector(args.face_detector, args.face_detector_checkpoint,
                                    args.device)
        annotator = Annotator(session, predictor, detector)
    except (AnnotationError, InferenceInputError, FileNotFoundError) as e:
        sys.exit(f'error: {e}')
    done, total = session.progress()
    print(f'{total} images in {session.image_dir}, {done} annotated; annotations go to '
          f'{session.output_dir}', flush=True)
    print(f'open http://{args.host}:{args.port} (Ctrl+C to stop)', flush=True)
    launch(annotator, args.host, args.port)


if __name__ == '__main__':
    main()
