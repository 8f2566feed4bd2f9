"""Which files an infer request may read.

MONAI Label 0.8.5 resolves the `image` parameter loosely: an id that happens to be an existing path (such
as `../../etc/passwd`) reaches the task as that file, an unknown id as an empty path. The app accepts only
images of its datastore, MONAI Label sessions, and the file uploaded with this very request. MONAI Label
saves an upload as a temporary file and passes its path on as `image`, a path any client could also type
(`image=/tmp/tmpXXXX.png` would read another request's upload). So the app records the path of this
request's own upload under UPLOAD_KEY (SamusApp.infer, told by the request guard that a file came with the
request); it overwrites whatever a client sent under that key.
"""
import os
import tempfile
from typing import Optional

from .errors import bad_request, not_found

UPLOAD_KEY = "_samus_upload"  # the path of the file uploaded with this request, set by the app only

DATASTORE, SESSION, UPLOAD = "datastore", "session", "upload"


def _inside(path: str, root: Optional[str]) -> bool:
    if not root:
        return False
    root = os.path.realpath(root)
    return os.path.commonpath([path, root]) == root


def is_temp_file(path) -> bool:
    """Directly in the temporary folder, where MONAI Label's endpoints put uploads."""
    if not isinstance(path, str) or not path or "\0" in path:
        return False
    return os.path.dirname(os.path.realpath(path)) == os.path.realpath(tempfile.gettempdir())


def looks_like_path(image: str) -> bool:
    return os.sep in image or "/" in image or image.startswith(".") or os.path.isabs(image)


class ImageAccess:
    def __init__(self, studies: str, sessions_path: Optional[str] = None):
        self.studies = os.path.realpath(studies)
        self.sessions_path: Optional[str] = None
        if sessions_path:
            self.allow_sessions(sessions_path)

    def allow_sessions(self, sessions_path: str) -> None:
        self.sessions_path = os.path.realpath(sessions_path)

    def check_id(self, image, datastore, session: Optional[dict] = None, upload: Optional[str] = None) -> None:
        """App level, before MONAI Label resolves the id: clear 4xx messages for bad ids."""
        if upload or session:
            return
        if not isinstance(image, str):
            raise bad_request(f"image must be the id of an image in the datastore, got {type(image).__name__}")
        if image and datastore.get_image_uri(image):
            return
        if not image:
            raise bad_request("no image: give `image` (an id from the datastore), upload a `file`, or a session_id")
        if looks_like_path(image):
            raise bad_request(f"image {image!r} looks like a file path; `image` must be the id of an image in the "
                              "datastore (see GET /datastore/?output=all) or upload the image as `file`")
        raise not_found(f"image {image!r} is not in the datastore")

    def check_path(self, request: dict) -> str:
        """Task level: the resolved file must be a datastore image, a session file or this request's upload.
        Returns which of DATASTORE, SESSION, UPLOAD it is."""
        path = request.get("image")
        if not isinstance(path, str) or not path or "\0" in path:
            raise not_found("the requested image is not in the datastore")
        real = os.path.realpath(path)
        upload = request.get(UPLOAD_KEY)
        if isinstance(upload, str) and real == os.path.realpath(upload):
            return UPLOAD
        if _inside(real, self.studies):
            return DATASTORE
        if _inside(real, self.sessions_path):
            return SESSION
        raise bad_request("image must be an image of the datastore, a session or the file uploaded with the request")
