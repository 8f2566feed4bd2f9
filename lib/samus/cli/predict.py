"""`samus predict`: segment one image, or one frame of a volume, from clicks or a box."""
import math
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..io import is_volume_file, read_array
from .common import add_model_args, guarded, make_predictor


DESCRIPTION = (
    "Segment one 2D image (PNG/JPG/BMP/TIFF) or one frame of a NIfTI/NRRD/MHA volume. 2D: "
    "X,Y = column,row in pixels. Volumes: X,Y = voxel indices i,j of frame k (--frame), the "
    "IJK order of ITK/Slicer. Writes a 0/255 PNG (2D) or a label volume with the input's "
    "geometry holding the mask in that frame.")


def register(subparsers) -> None:
    q = subparsers.add_parser("predict", help="segment one image, or one frame of a volume, from clicks",
                              description=DESCRIPTION)
    q.add_argument("image", help="input image or volume")
    q.add_argument("--fg", action="append", default=[], metavar="X,Y", help="positive click (repeatable)")
    q.add_argument("--bg", action="append", default=[], metavar="X,Y", help="negative click (repeatable)")
    q.add_argument("--box", default=None, metavar="X1,Y1,X2,Y2", help="box prompt (inclusive corners)")
    q.add_argument("--frame", type=int, default=None, help="frame (last axis) of a volume")
    q.add_argument("--out", "-o", required=True, help="output mask: .png for 2D images; .nii.gz/.nrrd/... "
                   "for volumes")
    add_model_args(q)
    q.set_defaults(func=guarded(run_predict, "predict"))


def _parse_numbers(text: str, n: int, what: str) -> List[float]:
    parts = [t.strip() for t in str(text).split(",")]
    try:
        values = [float(t) for t in parts]
    except ValueError:
        values = []
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what} {text!r}: expected {n} comma-separated numbers")
    return values



def read_frame(args):
    """-> (image or frame to segment, frame index or None, number of frames or None)."""
    src = args.image
    if not Path(src).is_file():
        raise FileNotFoundError(f"input {src}: no such file")
    volume_in = is_volume_file(src)
    array, n_frames = read_array(src)
    if n_frames is None:
        if args.frame not in (None, 0):
            raise ValueError(f"{src} is a 2D image; --frame {args.frame} does not exist")
        frame, image = None, array
    else:
        if args.frame is None:
            raise ValueError(f"{src} is a volume with {n_frames} frames; choose one with --frame (0..{n_frames - 1})")
        if not 0 <= args.frame < n_frames:
            raise ValueError(f"{src} has {n_frames} frames (0..{n_frames - 1}); --frame {args.frame} does not exist")
        frame, image = args.frame, array[:, :, args.frame]
    if volume_in != is_volume_file(args.out):
        raise ValueError(f"--out {args.out}: write a {'label volume (.nii.gz, .nrrd, ...)' if volume_in else '2D image (.png)'}"
                         f" for a {'volume' if volume_in else '2D'} input")
    return image, frame, n_frames


def read_prompts(args, h: int, w: int, volume_in: bool):
    """-> (clicks [(x, y)], labels, box or None), checked against the image size."""
    # Frames are rows x columns with voxel index i along the columns, so a voxel (i, j) is the point (x=i, y=j).
    size_text = f"{w}x{h} (width x height{'; i x j' if volume_in else ''})"
    clicks, labels = [], []
    for text, label in [(t, 1) for t in args.fg] + [(t, 0) for t in args.bg]:
        x, y = _parse_numbers(text, 2, "--fg" if label else "--bg")
        if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
            raise ValueError(f"click {text!r} is outside the image of size {size_text}")
        clicks.append((x, y))
        labels.append(label)
    box = None
    if args.box is not None:
        box = list(_parse_numbers(args.box, 4, "--box"))
        if not (0 <= box[0] <= box[2] <= w - 1 and 0 <= box[1] <= box[3] <= h - 1):
            raise ValueError(f"--box {args.box!r} must have first corner <= second corner and lie inside the "
                             f"image of size {size_text}")
    if not clicks and box is None:
        raise ValueError("give at least one click (--fg / --bg) or a --box")
    return clicks, labels, box


def run_predict(args) -> int:
    src = args.image
    image, frame, n_frames = read_frame(args)
    volume_in = is_volume_file(src)
    h, w = image.shape[:2]
    clicks, labels, box = read_prompts(args, h, w, volume_in)
    predictor, _ = make_predictor(args)
    predictor.set_image(image)
    mask, score, _ = predictor.predict(np.array(clicks, dtype=np.float64).reshape(-1, 2) if clicks else None,
                                       np.array(labels, dtype=np.int32) if clicks else None, box=box)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if volume_in:
        _write_label_volume(src, out, mask, frame, n_frames)
    else:
        from PIL import Image

        Image.fromarray(mask.astype(np.uint8) * 255).save(out)
    where = f" frame {frame}" if frame is not None else ""
    print(f"score {score:.4f}  area {int(mask.sum())} px{where}  -> {out}")
    return 0


def _write_label_volume(src: str, out: Path, mask: np.ndarray, frame: Optional[int], n_frames: Optional[int]) -> None:
    """A uint8 label volume (1 = mask) with the geometry of `src`, the mask in frame `frame` (last axis)."""
    import SimpleITK as sitk

    ref = sitk.ReadImage(src)
    size = ref.GetSize()  # (i, j, k[, t]) including any singleton axes `read_array` dropped
    label = np.zeros(mask.shape + (n_frames or 1,), np.uint8)
    label[:, :, frame or 0] = mask
    label = np.swapaxes(label, 0, 1).reshape(size)  # back to (i, j, k); only singleton axes differ in size
    img = sitk.GetImageFromArray(label.transpose(tuple(reversed(range(label.ndim)))))
    img.CopyInformation(ref)
    sitk.WriteImage(img, str(out), True)
