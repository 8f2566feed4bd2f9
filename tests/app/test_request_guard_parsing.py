"""The request guard's parsing parts on their own: JSON and name checks, the query, the multipart inspector,
reading (spooling) a body and replaying it."""
import asyncio
import io
import json
import os
import sys

import pytest
from fastapi import HTTPException

from app_server import APP_DIR
from helpers_app import multipart

sys.path.insert(0, str(APP_DIR))  # the app's `lib` package, as MONAI Label imports it
from lib.request_guard.body import Disconnected, read_body, replay  # noqa: E402
from lib.request_guard.checks import MAX_JSON_DEPTH, check_filename, check_json  # noqa: E402
from lib.request_guard.multipart import MAX_PARTS, MultipartInspector  # noqa: E402
from lib.request_guard.parsing import Parsed, check_json_fields, parse_query  # noqa: E402


def refused(call, *args, **kwargs) -> HTTPException:
    with pytest.raises(HTTPException) as caught:
        call(*args, **kwargs)
    return caught.value


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def test_check_json_keeps_plain_objects_and_names_what_is_wrong():
    assert check_json('{"clicks": [[1, 2]], "label": "lesion"}', "params", 1000) == {
        "clicks": [[1, 2]], "label": "lesion"}
    assert check_json(b"  ", "params", 1000) is None
    assert check_json("null", "the JSON body", 1000, allow_null=True) is None
    e = refused(check_json, '{"x": NaN}', "form field 'params'", 1000)
    assert e.status_code == 400 and "form field 'params'" in e.detail and "NaN" in e.detail
    e = refused(check_json, "[1, 2]", "params", 1000)
    assert e.status_code == 400 and "must be a JSON object" in e.detail and "list" in e.detail
    assert refused(check_json, "null", "params", 1000).status_code == 400
    assert "not UTF-8" in refused(check_json, b"{\xff}", "params", 1000).detail
    e = refused(check_json, '{"x": "' + "a" * 2000 + '"}', "params", 1000)
    assert e.status_code == 413 and "max_params_kb" in e.detail


def test_check_json_limits_nesting():
    assert check_json(nested(MAX_JSON_DEPTH), "params", 10**6) is not None
    e = refused(check_json, nested(MAX_JSON_DEPTH + 1), "params", 10**6)
    assert e.status_code == 400 and "nested too deeply" in e.detail
    e = refused(check_json, "[" * 100_000 + "]" * 100_000, "params", 10**6)  # json.loads' RecursionError
    assert e.status_code == 400 and "nested too deeply" in e.detail


def test_check_filename_takes_the_last_part_of_a_client_path():
    check_filename("C:\\Users\\me\\scan.png")
    check_filename("/home/me/" + "x" * 200)  # 200 bytes: the most
    assert "control character" in refused(check_filename, "scan\x00.png").detail
    assert "does not end in a file name" in refused(check_filename, "/home/me/..").detail
    assert "at most 200" in refused(check_filename, "x" * 201).detail
    assert "empty file name" in refused(check_filename, "").detail


def test_parse_query_checks_each_value():
    assert parse_query(b"image=benign_3&output=json&empty=") == {"image": "benign_3", "output": "json", "empty": ""}
    assert "control character" in refused(parse_query, b"image=a%00b").detail
    assert "longer than 4096" in refused(parse_query, b"image=" + b"a" * 4097).detail


def test_json_form_fields_are_checked_and_kept():
    parsed = Parsed(query={}, fields=[("params", '{"a": 1}'), ("other", "not json")])
    check_json_fields(parsed, 1000)
    assert parsed.json_fields == {"params": {"a": 1}}
    e = refused(check_json_fields, Parsed(query={}, fields=[("info", "   ")]), 1000)
    assert e.status_code == 400 and "'info' is empty" in e.detail


def inspect(body: bytes, content_type: str, limits, capture=False, chunk=7) -> Parsed:
    parsed = Parsed(query={})
    boundary = content_type.split("boundary=")[1].encode()
    inspector = MultipartInspector(boundary, parsed, limits, capture)
    for i in range(0, len(body), chunk):  # small chunks: parts cross chunk borders
        inspector.write(body[i:i + chunk])
    inspector.finish()
    return parsed


def test_multipart_inspector_records_fields_and_file_parts(limits):
    body, content_type = multipart([("params", '{"x": 1}')], [("file", "/tmp/scan.png", b"\x89PNG" + b"\0" * 100)])
    parsed = inspect(body, content_type, limits)
    assert parsed.fields == [("params", '{"x": 1}')]
    (part,) = parsed.files_named("file")
    assert part.filename == "/tmp/scan.png" and part.size == 104 and not part.data and parsed.captured == []


def test_multipart_inspector_captures_file_parts_when_asked(limits):
    body, content_type = multipart(files=[("file", "model.pt", b"weights")])
    parsed = inspect(body, content_type, limits, capture=True)
    try:
        (path,) = parsed.captured
        assert open(path, "rb").read() == b"weights"
    finally:
        for path in parsed.captured:
            os.unlink(path)


def test_multipart_inspector_refuses_what_monai_label_would_fail_on(limits):
    body, content_type = multipart([(f"f{n}", "1") for n in range(MAX_PARTS + 1)])
    assert f"more than {MAX_PARTS} parts" in refused(inspect, body, content_type, limits).detail
    body, content_type = multipart(files=[("file", "a\x00b.png", b"x")])
    assert "control character" in refused(inspect, body, content_type, limits).detail
    body, content_type = multipart([("params", "x" * (limits.params_bytes + 1))])
    e = refused(inspect, body, content_type, limits)
    assert e.status_code == 413 and "form field 'params'" in e.detail
    body, content_type = multipart([("params", b"\xff")])
    assert "not UTF-8" in refused(inspect, body, content_type, limits).detail
    nameless = b'--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n'
    assert "has no name" in refused(inspect, nameless, "multipart/form-data; boundary=b", limits).detail


def receiver(body: bytes, chunk: int = 10, disconnect: bool = False):
    messages = [{"type": "http.request", "body": body[i:i + chunk], "more_body": i + chunk < len(body)}
                for i in range(0, len(body), chunk)] or [{"type": "http.request", "body": b"", "more_body": False}]
    if disconnect:
        messages = messages[:1] + [{"type": "http.disconnect"}]
        messages[0]["more_body"] = True

    async def receive():
        return messages.pop(0)

    return receive


def read(body: bytes, content_type: bytes, limits, length=None, disconnect=False):
    headers = [(b"content-type", content_type)] + ([(b"content-length", length)] if length is not None else [])
    spool, parsed = io.BytesIO(), Parsed(query={})
    asyncio.run(read_body({"headers": headers}, receiver(body, disconnect=disconnect), spool, parsed, limits, False))
    return spool, parsed


def test_read_body_spools_and_parses_json_and_forms(limits):
    body = json.dumps({"samus": {"max_epochs": 2}}).encode()
    spool, parsed = read(body, b"application/json", limits)
    assert parsed.json_body == {"samus": {"max_epochs": 2}} and parsed.body_bytes == len(body)
    assert spool.read() == body  # left at its start, for the replay
    _, parsed = read(b"a=1&b=", b"application/x-www-form-urlencoded", limits)
    assert parsed.fields == [("a", "1"), ("b", "")]
    form, content_type = multipart([("params", "{}")], [("file", "x.png", b"data")])
    _, parsed = read(form, content_type.encode(), limits)
    assert parsed.fields == [("params", "{}")] and [p.name for p in parsed.files] == ["file"]


def test_read_body_enforces_the_size_limits(limits):
    e = refused(read, b"{}", b"application/json", limits, length=str(limits.upload_bytes + 1).encode())
    assert e.status_code == 413 and "max_upload_mb" in e.detail
    assert "not a number" in refused(read, b"{}", b"application/json", limits, length=b"12x").detail
    e = refused(read, b'{"a": "' + b"x" * limits.params_bytes + b'"}', b"application/json", limits)
    assert e.status_code == 413 and "max_params_kb, for bodies without files" in e.detail
    assert "without a boundary" in refused(read, b"", b"multipart/form-data", limits).detail


def test_read_body_stops_when_the_client_goes_away(limits):
    with pytest.raises(Disconnected):
        read(b"x" * 100, b"application/octet-stream", limits, disconnect=True)


def test_replay_hands_the_spooled_body_back_in_chunks():
    body = bytes(range(256)) * 1000  # 256000 bytes: several chunks
    spool = io.BytesIO(body)

    async def run():
        watcher = asyncio.get_running_loop().create_future()
        receive = replay(spool, watcher)
        got, message = b"", {"more_body": True}
        while message["more_body"]:
            message = await receive()
            got += message["body"]
        watcher.set_result({"type": "http.disconnect"})
        return got, await receive()

    got, after = asyncio.run(run())
    assert got == body and after == {"type": "http.disconnect"}
