"""MONAI Label's local datastore, with uploads checked before they are stored and no request able to break it.

The stock datastore copies whatever arrives: an id like `../x` writes outside the studies folder, a
corrupt, empty or huge file is only discovered when a user clicks on it or training reads it, an upload
can name another file of the server as its pixel data, `{"a": NaN}` as label info makes the datastore
json unreadable for good, and info that is not a dict fails after the file was copied, replacing a good
label. Here every request is checked first (4xx naming the problem), then files and the datastore json
are replaced atomically, so a refused or failed request leaves the datastore as it was. Refused uploads
are deleted (MONAI Label deletes its temporary copy only after a successful request).
"""
import contextlib
import filecmp
import json
import os
import re
import shutil
import tempfile
import time

import numpy as np
from filelock import FileLock

from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore
from samus.atomic import TEMP_PREFIX, atomic_path
from samus.io import IMAGE_EXTS, VOLUME_EXTS, read_array

from .app_conf import RequestLimits
from .errors import bad_request, conflict, not_found, show, too_large
from .image_access import is_temp_file
from .image_io import inspect_image
from .request_guard import remove_after_response
from .storage_limits import check_datastore_room

STORED_EXTS = IMAGE_EXTS + VOLUME_EXTS + (".seg.nrrd",)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.() +-]{0,199}$")


def check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise bad_request(f"{what} {show(name)} is not allowed: use letters, digits, spaces and . _ - + ( ), "
                          "starting with a letter, digit or _, at most 200 characters")


def checked_info(info, what: str, limits: RequestLimits) -> dict:
    """A private copy of client-sent info that the datastore json can always hold: a JSON object without
    NaN / Infinity, within --conf max_params_kb."""
    if info is None:
        return {}
    if not isinstance(info, dict):
        raise bad_request(f"{what} must be a JSON object ({{...}}), got {type(info).__name__}")
    try:
        text = json.dumps(info, allow_nan=False)
    except (ValueError, TypeError, RecursionError) as e:
        raise bad_request(f"{what} must be plain JSON without NaN or Infinity ({e})") from None
    if len(text) > limits.params_bytes:
        raise too_large(f"{what} is {len(text)} bytes of JSON; this server accepts at most {limits.params_bytes} "
                        "(--conf max_params_kb)")
    return json.loads(text)


def discard_temp(path) -> None:
    """Delete a refused upload: MONAI Label removes its temporary copy only after a successful request."""
    if is_temp_file(path):
        with contextlib.suppress(OSError):
            os.unlink(path)


class CheckedDatastore(LocalDatastore):
    def __init__(self, *args, limits: RequestLimits, room: tuple = (10**9, 10**9), **kwargs):
        self.limits = limits
        self.room = room  # (--conf max_datastore_files, max_datastore_mb)
        super().__init__(*args, **kwargs)

    def _list_files(self, path, patterns):
        """As MONAI Label's, without files still being written (named `.tmp-XXXX.png` by samus.atomic): a
        concurrent rescan never lists them."""
        return {name: f for name, f in super()._list_files(path, patterns).items() if not name.startswith(TEMP_PREFIX)}

    def _check_room(self, dest: str, src: str) -> None:
        """With the lock held, before `src` is stored as `dest` (which it may replace)."""
        replaced = os.path.getsize(dest) if os.path.isfile(dest) else 0
        check_datastore_room(self._datastore.image_path(), 0 if replaced else 1,
                             max(0, os.path.getsize(src) - replaced), *self.room)

    # ---------------------------------------------------------------------------------------- checks
    def _decoded_info(self, path: str, what: str):
        info = inspect_image(path, self.limits, client_file=True)
        try:
            read_array(path)  # the header can be fine and the pixel data truncated
        except (ValueError, OSError) as e:
            raise bad_request(f"cannot decode the {what}: {e}") from None
        return info

    def _stored_ext(self, path: str, what: str) -> str:
        """The extension MONAI Label stores the file under (from the client's file name): one the file can be
        read as again, or the stored file would be unreadable (`x.foo.mha` would be stored as `<id>.foo.mha`)."""
        _, ext = self._to_id(os.path.basename(path))
        if ext.lower() not in STORED_EXTS:
            raise bad_request(f"the {what} file name must end in an image extension ({', '.join(STORED_EXTS)}), "
                              f"got {ext[:40]!r}")
        return ext

    # ---------------------------------------------------------------------------------------- images
    def add_image(self, image_id, image_filename, image_info):
        try:
            check_name(image_id, "image id")
            info = checked_info(image_info, "image info", self.limits)
            ext = self._stored_ext(image_filename, "image")
            self._decoded_info(image_filename, "image")
            return self._store_image(image_id, image_filename, ext, info)
        except BaseException:
            discard_temp(image_filename)
            raise

    def _store_image(self, image_id: str, src: str, ext: str, info: dict) -> str:
        name = self._filename(image_id, ext)
        dest = os.path.realpath(os.path.join(self._datastore.image_path(), name))
        with FileLock(self._lock_file):
            old = self._datastore.objects.get(image_id)
            if old is not None:
                old_path = os.path.join(self._datastore.image_path(), self._filename(image_id, old.image.ext))
                if old.image.ext == ext and os.path.isfile(old_path) and filecmp.cmp(src, old_path, shallow=False):
                    return image_id  # the same file again
                if old.labels:
                    raise conflict(f"image {image_id!r} already exists with labels ({', '.join(old.labels)}); "
                                   "upload under a new id, or delete it first (DELETE /datastore/image)")
            self._check_room(dest, src)
            with atomic_path(dest) as tmp:
                shutil.copyfile(src, tmp)
            if old is not None and old.image.ext != ext:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self._datastore.image_path(), self._filename(image_id, old.image.ext)))
            info.update(ts=int(time.time()), name=name)
            self._datastore.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=ext))
            self._update_datastore_file(lock=False)
        return image_id

    def _require_image(self, image_id) -> None:
        if not isinstance(image_id, str) or image_id not in self._datastore.objects:
            raise not_found(f"image {show(image_id)} is not in the datastore")

    def remove_image(self, image_id):
        self._require_image(image_id)
        return super().remove_image(image_id)

    def update_image_info(self, image_id, info):
        self._require_image(image_id)
        return super().update_image_info(image_id, checked_info(info, "image info", self.limits))

    # ---------------------------------------------------------------------------------------- labels
    def save_label(self, image_id, label_filename, label_tag, label_info):
        try:
            check_name(label_tag, "label tag")
            info = checked_info(label_info, "label info", self.limits)
            image_path = self.get_image_uri(image_id) if isinstance(image_id, str) else ""
            if not image_path or not os.path.isfile(image_path):
                raise not_found(f"image {image_id!r} is not in the datastore; upload it before its label")
            ext = self._stored_ext(label_filename, "label")
            image = inspect_image(image_path, self.limits)
            label = self._decoded_info(label_filename, "label")
            same_size = (label.rows, label.cols, label.frames) == (image.rows, image.cols, image.frames)
            if not same_size:
                raise bad_request(f"label is {label.rows} x {label.cols} x {label.frames} but image {image_id!r} "
                                  f"is {image.rows} x {image.cols} x {image.frames}; a label must match its image")
            if not image.is_volume and label.is_volume:
                # A viewer (3D Slicer) saves the label of a PNG as NIfTI/NRRD: keep it as a PNG like its image,
                # so the datastore holds one kind of file per image (and CVAT-style clients can read it).
                png = _as_png(read_array(label_filename)[0].reshape(label.rows, label.cols))
                try:
                    return self._store_label(image_id, png, ".png", label_tag, info)
                finally:
                    os.unlink(png)
            return self._store_label(image_id, label_filename, ext, label_tag, info)
        except BaseException:
            discard_temp(label_filename)
            raise

    def _store_label(self, image_id: str, src: str, ext: str, tag: str, info: dict) -> str:
        label_path = self._datastore.label_path(tag)
        name = self._filename(image_id, ext)
        with FileLock(self._lock_file):
            obj = self._datastore.objects.get(image_id)
            if obj is None:  # removed meanwhile
                raise not_found(f"image {image_id!r} is not in the datastore; upload it before its label")
            os.makedirs(label_path, exist_ok=True)
            self._check_room(os.path.join(label_path, name), src)
            with atomic_path(os.path.join(label_path, name)) as tmp:
                shutil.copyfile(src, tmp)
            info.update(ts=int(time.time()), name=name)
            obj.labels[tag] = DataModel(info=info, ext=ext)
            self._update_datastore_file(lock=False)
        return image_id

    def _require_label(self, label_id, label_tag) -> None:
        known = isinstance(label_id, str) and isinstance(label_tag, str) and self.get_label_uri(label_id, label_tag)
        if not known:
            raise not_found(f"no label {show(label_id)} with tag {show(label_tag)} in the datastore")

    def remove_label(self, label_id, label_tag):
        self._require_label(label_id, label_tag)
        return super().remove_label(label_id, label_tag)

    def update_label_info(self, label_id, label_tag, info):
        self._require_label(label_id, label_tag)
        return super().update_label_info(label_id, label_tag, checked_info(info, "label info", self.limits))

    # ---------------------------------------------------------------------------------------- the rest
    def get_dataset_archive(self, limit_cases):
        if not self.datalist():
            raise not_found("no final labels yet: the dataset archive holds image / final label pairs")
        path = super().get_dataset_archive(limit_cases)
        remove_after_response(path)  # MONAI Label sends the zip and leaves it in the temporary folder
        return path

    def _update_datastore_file(self, lock=True):
        """As MONAI Label's, but strict JSON (a NaN would make the file unreadable) written atomically."""
        def write():
            text = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str,
                              allow_nan=False)
            self._ignore_event_config = True
            with atomic_path(self._datastore_config_path) as tmp, open(tmp, "w") as f:
                f.write(text)
            self._config_ts = os.stat(self._datastore_config_path).st_mtime

        if lock:
            with FileLock(self._lock_file):
                write()
        else:
            write()


def _as_png(mask: np.ndarray) -> str:
    from PIL import Image

    if not np.all(np.isfinite(mask)) or mask.min() < 0 or mask.max() > 65535:
        raise bad_request("label values must be in 0..65535")
    fd, path = tempfile.mkstemp(suffix=".png")
    os.close(fd)
    try:
        Image.fromarray(np.ascontiguousarray(mask.astype(np.uint8 if mask.max() <= 255 else np.uint16))).save(path)
    except BaseException:
        os.unlink(path)
        raise
    return path
