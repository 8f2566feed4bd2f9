"""Which files an infer request may read.

MONAI Label 0.8.5 resolves the `image` parameter loosely: an id that happens to be an existing path (such
as `../../etc/passwd`) reaches the task as that file, an unknown id as an empty path. The app accepts only
images of its datastore, MONAI Label sessions, and the temporary file the infer endpoint writes for an
uploaded image.
"""
import os
import tempfile
from typing import Optional

from .errors import bad_request, not_found


def _inside(path: str, root: Optional[str]) -> bool:
    if not root:
        return False
    root = os.path.realpath(root)
    return os.path.commonpath([path, root]) == root


def is_upload(path: str) -> bool:
    """The infer endpoint saves an uploaded `file` as tempfile.NamedTemporaryFile(suffix=ext).name."""
    real = os.path.realpath(path)
    return (os.path.dirname(real) == os.path.realpath(tempfile.gettempdir())
            and os.path.basename(real).startswith("tmp"))


class ImageAccess:
    def __init__(self, studies: str, sessions_path: Optional[str] = None):
        self.studies = os.path.realpath(studies)
        self.sessions_path: Optional[str] = None
        if sessions_path:
            self.allow_sessions(sessions_path)

    def allow_sessions(self, sessions_path: str) -> None:
        self.sessions_path = os.path.realpath(sessions_path)

    def check_id(self, image, datastore, session: Optional[dict] = None) -> None:
        """App level, before MONAI Label resolves the id: clear 4xx messages for bad ids."""
        if not isinstance(image, str) or session or is_upload(image) or (image and datastore.get_image_uri(image)):
            return
        if not image:
            raise bad_request("no image: give `image` (an id from the datastore), upload a `file`, or a session_id")
        if os.sep in image or "/" in image or image.startswith(".") or os.path.isabs(image):
            raise bad_request(f"image {image!r} looks like a file path; `image` must be the id of an image in the "
                              "datastore (see GET /datastore/?output=all) or upload the image as `file`")
        raise not_found(f"image {image!r} is not in the datastore")

    def check_path(self, path) -> bool:
        """Task level: the resolved file must be a datastore, session or upload file. Returns True for an
        upload (identified by content rather than by path)."""
        if not isinstance(path, str) or not path:
            raise not_found("the requested image is not in the datastore")
        real = os.path.realpath(path)
        if _inside(real, self.studies) or _inside(real, self.sessions_path):
            return False
        if is_upload(real):
            return True
        raise bad_request("image must be an image of the datastore, a session or an uploaded file")
