"""Export a checkpoint trained here for anime_face_detector (or as an mmpose release file).

Example:
    python tools/export.py work_dirs/.../best_NME_epoch_60.pth work_dirs/animal_face.safetensors
"""
import argparse
import sys

from animal_landmarks_mm.errors import AnimalLandmarksError
from animal_landmarks_mm.export import FORMATS, export_checkpoint

HOW_TO_LOAD = '''load it in anime_face_detector with:
    import cv2, numpy as np
    from anime_face_detector import LandmarkDetector
    detector = LandmarkDetector(landmark_checkpoint_path='{out}', face_detector_name=None,
                                device='cpu')
    faces = detector(cv2.imread('image.png'), boxes=[np.array([x0, y0, x1, y1, 1.0])])'''

HOW_TO_LOAD_MMPOSE = '''load it in mmpose with:
    from mmpose.apis import init_model, inference_topdown
    model = init_model('CONFIG', '{out}', device='cpu')'''


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='a checkpoint trained here (epoch_N.pth, best_*.pth)')
    parser.add_argument('out', help='output file')
    parser.add_argument(
        '--format', choices=FORMATS,
        help='safetensors / pth: anime_face_detector layout (tensors only, mmpose 0.x names); '
        'mmpose: state_dict + meta with a sha256 suffix, as mmpose publishes models. '
        'Default: from the suffix of OUT')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        out = export_checkpoint(args.checkpoint, args.out, fmt=args.format)
    except (AnimalLandmarksError, OSError) as e:
        sys.exit(f'error: {e}')
    print(f'wrote {out}')
    print((HOW_TO_LOAD_MMPOSE if args.format == 'mmpose' else HOW_TO_LOAD).format(out=out))


if __name__ == '__main__':
    main()
