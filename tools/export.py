"""Export a checkpoint for anime_face_detector, as an mmpose release file, or as an ONNX graph.

A checkpoint trained here becomes a file anime_face_detector loads, an mmpose release file, or
one ONNX graph (crops in, keypoints out) that onnxruntime runs without torch or mmpose.

Examples:
    python tools/export.py work_dirs/.../best_NME_epoch_60.pth work_dirs/animal_face.safetensors
    python tools/export.py work_dirs/.../best_NME_epoch_60.pth work_dirs/animal_face.onnx
    # int8, calibrated on the training split's faces (2-3x faster on CPUs with VNNI / AMX)
    python tools/export.py work_dirs/.../best_NME_epoch_60.pth work_dirs/animal_face_int8.onnx \
        --int8 --calibration-annotation-dir data/animal_faces/landmarks \
        --calibration-split-file data/animal_faces/train.txt --calibration-image-dir data/raw
"""
import argparse
import os
import sys

from animal_landmarks_mm.errors import exit_on_error, printable
from animal_landmarks_mm.export import FORMATS, export_checkpoint
from animal_landmarks_mm.onnx_predictor import is_onnx_path

#: every --format; onnx is written by animal_landmarks_mm.onnx_export
ALL_FORMATS = (*FORMATS, 'onnx')

HOW_TO_LOAD = '''load it in anime_face_detector with:
    import cv2, numpy as np
    from anime_face_detector import LandmarkDetector
    detector = LandmarkDetector(landmark_checkpoint_path='{out}', face_detector_name=None,
                                device='cpu')
    faces = detector(cv2.imread('image.png'), boxes=[np.array([x0, y0, x1, y1, 1.0])])'''

HOW_TO_LOAD_MMPOSE = '''load it in mmpose with:
    from mmpose.apis import init_model, inference_topdown
    model = init_model('CONFIG', '{out}', device='cpu')'''

HOW_TO_LOAD_ONNX = '''run it with onnxruntime alone (input: uint8 BGR crops (B, 256, 256, 3) as
cv2.warpAffine gives them; output: keypoints (B, 28, 2) in crop pixels and scores (B, 28);
flip test and DARK decoding are inside the graph):
    import cv2, numpy as np, onnxruntime as ort
    session = ort.InferenceSession('{out}', providers=['CPUExecutionProvider'])
    image, (x0, y0, x1, y1) = cv2.imread('image.png'), (100, 100, 300, 300)
    size = max(x1 - x0, y1 - y0) * 1.25  # mmpose's box padding, square crop
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    matrix = np.float32([[256 / size, 0, 128 - cx * 256 / size],
                         [0, 256 / size, 128 - cy * 256 / size]])
    crop = cv2.warpAffine(image, matrix, (256, 256), flags=cv2.INTER_LINEAR)
    keypoints, scores = session.run(None, {{'crops': crop[None]}})
    points = keypoints[0] * size / 256 + [cx - size / 2, cy - size / 2]  # image pixels
or, with the crop exactly as mmpose makes it, several faces per run:
    from animal_landmarks_mm.onnx_predictor import OnnxLandmarkPredictor
    result = OnnxLandmarkPredictor('{out}').predict(image, [[x0, y0, x1, y1]])
    result.pred_instances.keypoints, result.pred_instances.keypoint_scores'''


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='a checkpoint trained here (epoch_N.pth, best_*.pth)')
    parser.add_argument('out', help='output file')
    parser.add_argument(
        '--format', choices=ALL_FORMATS,
        help='safetensors / pth: anime_face_detector layout (tensors only, mmpose 0.x names); '
        'mmpose: state_dict + meta with a sha256 suffix, as mmpose publishes models; onnx: one '
        'graph from uint8 BGR crops to keypoints and scores, flip test and DARK decoding inside. '
        'Default: from the suffix of OUT (.safetensors, .onnx, in any case; else pth). A '
        'safetensors file must be named .safetensors, lowercase (anime_face_detector reads '
        'other names with torch.load), a pth file not .safetensors nor .onnx. OUT must not be '
        'CHECKPOINT (nor a link to it)')
    parser.add_argument('--config', help='onnx: the model\'s config (default: the main config)')
    int8 = parser.add_argument_group('onnx, int8 (static quantisation of the network)')
    int8.add_argument('--int8', action='store_true',
                      help='write an int8 graph, its activations calibrated on annotated faces')
    int8.add_argument('--calibration-annotation-dir', metavar='DIR',
                      help='annotation files of faces to calibrate on')
    int8.add_argument('--calibration-split-file', metavar='FILE',
                      help='only the annotation files it lists: the training split '
                      '(tools/dataset.py\'s train.txt), so that the faces you evaluate on are '
                      'not those the int8 ranges were fitted to')
    int8.add_argument('--calibration-image-dir', metavar='DIR', help='their images')
    int8.add_argument('--calibration-faces', type=int, default=None, metavar='N',
                      help='at most this many faces, spread over the folder (default 64)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # a Path drops a trailing slash or '.': a file would be written under the folder's name
    if args.out.endswith(('/', os.sep)) or os.path.basename(args.out) in ('.', '..'):
        sys.exit(f'error: {printable(args.out, one_line=True)}: a folder\'s name (it ends with '
                 'a slash, or . or ..); give the name of the file to write')
    fmt = args.format or ('onnx' if is_onnx_path(args.out) else None)
    if fmt != 'onnx' and (args.config or args.int8):
        sys.exit('error: --config and --int8 are for --format onnx')
    calibration_given = args.calibration_annotation_dir and args.calibration_image_dir
    if args.int8 != bool(calibration_given) or (not args.int8 and (
            args.calibration_annotation_dir or args.calibration_image_dir
            or args.calibration_split_file or args.calibration_faces is not None)):
        sys.exit('error: --int8 needs --calibration-annotation-dir and --calibration-image-dir '
                 '(and they, --calibration-split-file and --calibration-faces, are only for '
                 '--int8)')
    with exit_on_error(args.out):
        if fmt == 'onnx':
            from animal_landmarks_mm.onnx_export import CALIBRATION_FACES, OPSET, export_onnx
            calibration = (args.calibration_annotation_dir, args.calibration_image_dir) \
                if args.int8 else None
            out = export_onnx(args.checkpoint, args.out, config=args.config,
                              calibration=calibration,
                              calibration_faces=CALIBRATION_FACES if args.calibration_faces is None
                              else args.calibration_faces,
                              calibration_split_file=args.calibration_split_file)
            kind = ', int8' if args.int8 else ''
            print(f'wrote {printable(str(out), one_line=True)} (ONNX opset {OPSET}{kind}, '
                  'checked with onnx.checker)')
        else:
            out = export_checkpoint(args.checkpoint, args.out, fmt=fmt)
            print(f'wrote {printable(str(out), one_line=True)}')
    how = dict(onnx=HOW_TO_LOAD_ONNX, mmpose=HOW_TO_LOAD_MMPOSE).get(fmt, HOW_TO_LOAD)
    print(how.format(out=printable(str(out), one_line=True)))


if __name__ == '__main__':
    main()
