"""multipart/form-data encoding for uploads and decoding for MONAI Label's infer answers.

Written by hand because Slicer's Python may lack requests, and `cgi` (what the MONAI Label
client uses to parse answers) is gone from Python 3.13.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass
class Part:
    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None


def encode_multipart(fields: dict | None = None, files: dict | None = None) -> tuple[bytes, str]:
    """fields: name -> str; files: name -> (filename, bytes). Returns (body, content type)."""
    boundary = "samus-" + uuid.uuid4().hex
    chunks = []
    for name, value in (fields or {}).items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + str(value).encode("utf-8") + b"\r\n"
        )
    for name, (filename, data) in (files or {}).items():
        chunks.append(
            (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
             "Content-Type: application/octet-stream\r\n\r\n").encode()
            + bytes(data) + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _header_params(value: str) -> tuple[str, dict]:
    """'form-data; name="a"; filename="b.nrrd"' -> ('form-data', {'name': 'a', 'filename': 'b.nrrd'})."""
    head, *rest = value.split(";")
    params = {}
    for item in rest:
        key, _, val = item.strip().partition("=")
        params[key.strip().lower()] = val.strip().strip('"')
    return head.strip().lower(), params


def decode_multipart(body: bytes, content_type: str) -> dict[str, Part]:
    """Splits a multipart body into its named parts."""
    kind, params = _header_params(content_type)
    boundary = params.get("boundary")
    if not kind.startswith("multipart/") or not boundary:
        raise ValueError(f"not a multipart answer (Content-Type: {content_type!r})")
    delimiter = b"--" + boundary.encode("latin-1")
    parts: dict[str, Part] = {}
    for section in body.split(delimiter)[1:]:
        if section.startswith(b"--"):
            break  # closing delimiter
        section = section[2:] if section.startswith(b"\r\n") else section
        head, sep, data = section.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("malformed multipart part: no blank line after its headers")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        _, disposition = _header_params(headers.get("content-disposition", ""))
        name = disposition.get("name", f"part{len(parts)}")
        parts[name] = Part(name, data, disposition.get("filename"), headers.get("content-type"))
    return parts
