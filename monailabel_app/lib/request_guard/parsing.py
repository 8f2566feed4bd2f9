"""What the guard learns from a request before MONAI Label sees it: the query, form fields, file parts and
JSON bodies (checked as they are read), in a Parsed record that the route policies look at."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qsl

from ..errors import bad_request
from .checks import MAX_QUERY_VALUE, check_json, check_name_bytes

JSON_FIELDS = ("params", "info", "wsi")  # form fields MONAI Label passes through json.loads


@dataclass
class Part:
    name: str
    filename: Optional[str]
    data: bytearray = field(default_factory=bytearray)  # fields only
    size: int = 0
    capture: Optional[object] = None  # an open file receiving a file part's bytes


@dataclass
class Parsed:
    query: Dict[str, str]
    fields: List[Tuple[str, str]] = field(default_factory=list)
    files: List[Part] = field(default_factory=list)
    json_body: object = None
    json_fields: Dict[str, object] = field(default_factory=dict)  # checked `params` / `info` form fields
    body_bytes: int = 0
    captured: List[str] = field(default_factory=list)  # temporary copies of file parts, deleted after the checks

    def files_named(self, name: str) -> List[Part]:
        return [p for p in self.files if p.name == name]


def parse_query(query_string: bytes) -> Dict[str, str]:
    """The query parameters; 400 for control characters or values longer than MAX_QUERY_VALUE."""
    query = {}
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        check_name_bytes(key + value, f"query parameter {key[:40]!r}")
        if len(value) > MAX_QUERY_VALUE:
            raise bad_request(f"query parameter {key[:40]!r} is longer than {MAX_QUERY_VALUE} characters")
        query[key] = value
    return query


def check_json_fields(parsed: Parsed, max_bytes: int) -> None:
    """Fills parsed.json_fields from the form fields MONAI Label would json.loads."""
    for name, value in parsed.fields:
        if name in JSON_FIELDS:
            if not value.strip():  # MONAI Label would json.loads whitespace (500) or read "" as {}
                raise bad_request(f"form field {name!r} is empty; send a JSON object such as {{}} "
                                  "or leave the field out")
            parsed.json_fields[name] = check_json(value, f"form field {name!r}", max_bytes)
