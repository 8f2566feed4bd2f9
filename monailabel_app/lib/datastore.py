"""MONAI Label's local datastore, with uploads checked before they are stored.

The stock datastore copies whatever arrives: an id like `../x` writes outside the studies folder, and a
corrupt, empty or huge file is only discovered when a user clicks on it or training reads it. Here images
and labels are decoded once on upload and refused with a 4xx that says why.
"""
import os
import re
import tempfile

import numpy as np

from monailabel.datastore.local import LocalDatastore
from samus.data import read_array

from .errors import bad_request, not_found
from .image_io import inspect_image

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.() +-]{0,199}$")


def check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise bad_request(f"{what} {name!r} is not allowed: use letters, digits, spaces and . _ - + ( ), "
                          "starting with a letter, digit or _")


class CheckedDatastore(LocalDatastore):
    def __init__(self, *args, max_voxels: int, **kwargs):
        self.max_voxels = max_voxels
        super().__init__(*args, **kwargs)

    def _decoded_info(self, path: str, what: str):
        info = inspect_image(path, self.max_voxels)
        try:
            read_array(path)  # the header can be fine and the pixel data truncated
        except (ValueError, OSError) as e:
            raise bad_request(f"cannot decode the {what}: {e}") from None
        return info

    def add_image(self, image_id, image_filename, image_info):
        if image_id:
            check_name(image_id, "image id")
        self._decoded_info(image_filename, "image")
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id, label_filename, label_tag, label_info):
        check_name(label_tag, "label tag")
        image_path = self.get_image_uri(image_id) if isinstance(image_id, str) else ""
        if not image_path or not os.path.isfile(image_path):
            raise not_found(f"image {image_id!r} is not in the datastore; upload it before its label")
        image = inspect_image(image_path, self.max_voxels)
        label = self._decoded_info(label_filename, "label")
        same_size = (label.rows, label.cols, label.frames) == (image.rows, image.cols, image.frames)
        if same_size and not image.is_volume and label.is_volume:
            # A viewer (3D Slicer) saves the label of a PNG as NIfTI/NRRD: keep it as a PNG like its image, so
            # the datastore holds one kind of file per image (and CVAT-style clients can read it).
            png = _as_png(read_array(label_filename)[0].reshape(label.rows, label.cols))
            try:
                return super().save_label(image_id, png, label_tag, label_info)
            finally:
                os.unlink(png)
        if (label.rows, label.cols, label.frames) != (image.rows, image.cols, image.frames):
            raise bad_request(f"label is {label.rows} x {label.cols} x {label.frames} but image {image_id!r} is "
                              f"{image.rows} x {image.cols} x {image.frames}; a label must match its image")
        return super().save_label(image_id, label_filename, label_tag, label_info)


def _as_png(mask: np.ndarray) -> str:
    from PIL import Image

    if mask.min() < 0 or mask.max() > 65535:
        raise bad_request("label values must be in 0..65535")
    fd, path = tempfile.mkstemp(suffix=".png")
    os.close(fd)
    Image.fromarray(np.ascontiguousarray(mask.astype(np.uint8 if mask.max() <= 255 else np.uint16))).save(path)
    return path
