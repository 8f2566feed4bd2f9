"""A streaming multipart/form-data inspector: part names, file names and small field values, checked as
the body arrives (file parts are not kept, unless captured for a check of their content)."""
import tempfile
from typing import Dict, Optional

from fastapi import HTTPException

from ..app_conf import RequestLimits
from ..errors import bad_request, too_large
from .checks import check_filename, check_name_bytes
from .parsing import Parsed, Part

try:
    from python_multipart.multipart import MultipartParser, parse_options_header
except ModuleNotFoundError:  # python-multipart < 0.0.13
    from multipart.multipart import MultipartParser, parse_options_header

__all__ = ["MAX_PARTS", "MultipartInspector", "parse_options_header"]

MAX_PARTS = 16


class MultipartInspector:
    """Feeds body chunks to python-multipart and keeps part names, file names and small field values."""

    def __init__(self, boundary: bytes, parsed: Parsed, limits: RequestLimits, capture_files: bool):
        self.parsed, self.limits, self.capture_files = parsed, limits, capture_files
        self.part: Optional[Part] = None
        self.headers: Dict[bytes, bytes] = {}
        self.header_name, self.header_value = b"", b""
        self.error: Optional[HTTPException] = None
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data, "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field, "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end, "on_headers_finished": self.on_headers_finished})

    def write(self, chunk: bytes) -> None:
        if self.error is None:
            try:
                self.parser.write(chunk)
            except HTTPException as e:
                self.error = e
            except Exception as e:  # python-multipart's own errors for malformed bodies
                self.error = bad_request(f"malformed multipart body: {str(e)[:200]}")

    def finish(self) -> None:
        if self.error is None:
            try:
                self.parser.finalize()
            except Exception as e:
                self.error = bad_request(f"malformed multipart body: {str(e)[:200]}")
        if self.error is not None:
            raise self.error

    def on_part_begin(self):
        self.headers = {}

    def on_header_field(self, data, start, end):
        self.header_name += data[start:end]

    def on_header_value(self, data, start, end):
        self.header_value += data[start:end]

    def on_header_end(self):
        self.headers[self.header_name.lower()] = self.header_value
        self.header_name, self.header_value = b"", b""

    def on_headers_finished(self):
        if len(self.parsed.fields) + len(self.parsed.files) >= MAX_PARTS:
            raise bad_request(f"more than {MAX_PARTS} parts in one form")
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise bad_request("a form part has no name (Content-Disposition: form-data; name=...)")
        name = options[b"name"].decode("utf-8", "replace")
        check_name_bytes(name, f"form part name {name[:60]!r}")
        filename = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
        self.part = Part(name=name, filename=filename)
        if filename is not None:
            check_filename(filename)
            self.parsed.files.append(self.part)
            if self.capture_files:
                tmp = tempfile.NamedTemporaryFile(prefix="samus-check-", suffix=".pt", delete=False)
                self.parsed.captured.append(tmp.name)
                self.part.capture = tmp

    def on_part_data(self, data, start, end):
        part = self.part
        part.size += end - start
        if part.filename is None:
            if part.size > self.limits.params_bytes:
                raise too_large(f"form field {part.name!r} is larger than {self.limits.params_bytes} bytes "
                                "(--conf max_params_kb)")
            part.data += data[start:end]
        elif part.capture is not None:
            part.capture.write(data[start:end])

    def on_part_end(self):
        part = self.part
        if part.filename is None:
            try:
                value = part.data.decode("utf-8")
            except UnicodeDecodeError:
                raise bad_request(f"form field {part.name!r} is not UTF-8 text") from None
            self.parsed.fields.append((part.name, value))
        elif part.capture is not None:
            part.capture.close()
