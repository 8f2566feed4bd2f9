"""A validation layer in front of MONAI Label's own endpoints, installed when the server starts.

MONAI Label 0.8.5 handles parts of each request before the app sees them, and answers 500 to what it
cannot handle: `params` / `info` form fields go through json.loads (invalid JSON, or nesting deep enough
for a RecursionError), upload file names become temporary file names (a NUL byte or 250 characters),
`/logs/?lines=` reaches deque() (10^30), `output=dicom_seg` fails after the infer ran. It also accepts
what would harm the app later: NaN in JSON bodies (stored in the datastore json, which no longer loads),
an upload that replaces the served model with garbage, DELETE /model renaming the base checkpoint,
tar extraction into session folders, unbounded bodies and training queues.

This ASGI middleware reads each request first (the body is spooled to an anonymous temporary file, then
replayed to MONAI Label unchanged) and answers 4xx with a message naming the problem, or 413 naming the
`--conf` limit. It also carries per-request state that the app's own code reads: whether a file was
uploaded with this request (image_access), and files to delete once the response is sent.

    checks     JSON texts, names and upload file names
    parsing    the Parsed record of a request: query, form fields, file parts, JSON body
    multipart  the streaming multipart/form-data inspector
    body       reading (spooling) the body once, and replaying it to MONAI Label
    policies   the rules of each route
    auth       token checks with MONAI Label's authentication on
    hooks      GuardHooks: what the guard asks the app
    state      per-request state (current(), remove_after_response, on_disconnect)
    middleware the ASGI middleware and install()
"""
from .hooks import GuardHooks
from .middleware import RequestGuard, install
from .state import RequestState, current, on_disconnect, remove_after_response

__all__ = ["GuardHooks", "RequestGuard", "RequestState", "current", "install", "on_disconnect",
           "remove_after_response"]
