"""Seeded fuzzing of a real server: at least 500 hostile requests across all endpoints.

Requests go through MONAI Label's official client where it can send them (about a third) and through plain
HTTP where it cannot (requests, hand-built multipart bodies, http.client for lying headers). The run asserts:
- no answer >= 500 (the app's guard stands in front of every endpoint, so none at all);
- no bytes of a file outside the studies and model folders in any answer (a secret file, /etc/passwd),
  also after decoding images and zip archives that come back;
- no temporary files left behind, server memory growth below 100 MB;
- the datastore listing still works and every label saved before the fuzz is byte-identical after it.
FUZZ_DEBUG=1 prints every answer. Against the app as it was before issue 9 the same run finds over 200
answers >= 500, the secret in 20 answers (as label pixels and inside dataset zips) and over 200 MB of
memory growth.
"""
import http.client
import io
import json
import os
import random
import re
import string
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import psutil
import pytest
import requests
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException
from PIL import Image

from app_server import server_process
from helpers_app import (SAMPLES, detached_mha, detached_nrrd, huge_png, multipart, nifti_pair_header, png_bytes,
                         save_nifti)

SEED = 9
N_HOSTILE = 560
SECRET = bytes(np.random.default_rng(SEED).integers(0, 256, 256, dtype=np.uint8))
PASSWD = b"root:x:0:0:"
PROTECTED = ("scan", "cine")  # images whose final labels are saved before the fuzz and must survive it
IMAGE_IDS = ("scan", "cine", "plain", "tiny16")


# ------------------------------------------------------------------------------------------ the server
@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("fuzz")
    studies, tmp, secret = root / "studies", root / "server_tmp", root / "outside" / "secret.raw"
    for folder in (studies, tmp, secret.parent):
        folder.mkdir()
    secret.write_bytes(SECRET)
    rng = np.random.default_rng(0)
    Image.open(SAMPLES / "images" / "benign_3.png").convert("L").resize((96, 80)).save(studies / "scan.png")
    Image.fromarray(rng.integers(0, 255, (40, 56), dtype=np.uint8)).save(studies / "plain.png")
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(studies / "tiny16.png")
    save_nifti(rng.integers(0, 255, (40, 48, 6), dtype=np.uint8), studies / "cine.nii.gz")
    conf = {"checkpoint": str(tiny_checkpoint), "model_dir": str(root / "model"), "threads": "1", "cache_mb": "16",
            "max_upload_mb": "8", "max_params_kb": "512"}
    env = {"TMPDIR": str(tmp), "MONAI_LABEL_SESSION_PATH": str(root / "sessions")}
    with server_process(studies, conf, env=env, log_dir=root / "log") as server:
        client = MONAILabelClient(server.url, tmpdir=str(root / "client"))
        (root / "client").mkdir()
        label = root / "scan_label.png"
        Image.fromarray((np.asarray(Image.open(studies / "scan.png")) > 100).astype(np.uint8)).save(label)
        client.save_label("scan", str(label), tag="final")
        save_nifti((rng.random((40, 48, 6)) > 0.5).astype(np.uint8), root / "cine_label.nii.gz")
        client.save_label("cine", str(root / "cine_label.nii.gz"), tag="final")
        labels = {name: (studies / "labels" / "final" / f"{name}{ext}").read_bytes()
                  for name, ext in (("scan", ".png"), ("cine", ".nii.gz"))}
        yield {"url": server.url, "pid": server.proc.pid, "studies": studies, "tmp": tmp, "secret": secret,
               "root": root, "labels": labels, "client": client}


# ------------------------------------------------------------------------------------------ request makers
@dataclass
class Call:
    kind: str
    method: str
    path: str
    query: Dict[str, str] = field(default_factory=dict)
    files: Optional[dict] = None  # requests' multipart
    data: Optional[object] = None
    json_body: object = None
    raw: Optional[bytes] = None  # a hand-built body...
    content_type: Optional[str] = None  # ...and its type
    send: Optional[Callable] = None  # anything else: (url) -> (status, body)
    hostile: bool = True


class Fuzz:
    def __init__(self, rng: random.Random, world):
        self.rng, self.world = rng, world
        self.secret = str(world["secret"])
        self.files = self._hostile_files()

    # ---------------------------------------------------------------------------- values
    def text(self, n=None) -> str:
        n = self.rng.randint(0, 40) if n is None else n
        alphabet = string.printable + "\x00\x01\x7f\u00e9\u4e2d\U0001f600/..\\%"
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def number(self):
        return self.rng.choice([0, -1, 1, 3.5, -0.0, 1e308, -1e308, 10**400, -(10**400), 2**63, 2**64 + 1, 1e-320,
                                float(self.rng.randint(-10**6, 10**6)), self.rng.randint(-5, 500)])

    def junk(self, depth=0):
        kinds = ["number", "text", "bool", "null", "list", "dict", "click", "clicks"]
        kind = self.rng.choice(kinds if depth < 3 else kinds[:4])
        if kind == "number":
            return self.number()
        if kind == "text":
            return self.text()
        if kind == "bool":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        if kind == "list":
            return [self.junk(depth + 1) for _ in range(self.rng.randint(0, 4))]
        if kind == "click":
            return [self.number() for _ in range(self.rng.choice([0, 1, 2, 3, 4]))]
        if kind == "clicks":
            return [[self.number(), self.number()] for _ in range(self.rng.randint(0, 5))]
        return {self.text(8): self.junk(depth + 1) for _ in range(self.rng.randint(0, 4))}

    def json_text(self, value) -> str:
        """JSON as a careless client writes it: NaN / Infinity and numbers past float range included."""
        text = json.dumps(value)
        r = self.rng.random()
        if r < 0.1:
            return text[: self.rng.randint(0, len(text))]  # cut off
        if r < 0.2:
            return "[" * 3000 + "]" * 3000
        if r < 0.3:
            return '{"a": NaN, "b": Infinity}'
        return text

    def infer_params(self) -> dict:
        keys = ["foreground", "background", "slice", "roi", "frames", "direction", "min_area", "min_score",
                "mask_input", "result_extension", "result_dtype", "label", "save_label", "label_tag", "timeout",
                "device", "output"]
        if self.rng.random() < 0.1:
            keys += ["image", "model", "session"]  # MONAI Label would take these from params
        params = {k: self.junk() for k in self.rng.sample(keys, self.rng.randint(1, 4))}
        if self.rng.random() < 0.6:
            params["foreground"] = [[self.rng.randint(-5, 120), self.rng.randint(-5, 100)] +
                                    ([self.rng.randint(-1, 8)] if self.rng.random() < 0.5 else [])
                                    for _ in range(self.rng.choice([1, 1, 2, 70, 300]))]
        if self.rng.random() < 0.1:
            params["mask_input"] = [[self.rng.choice([0.5, 1e308, 10**40, "x"])] * 128] * self.rng.choice([1, 128])
        return params

    def image_id(self) -> str:
        if self.rng.random() < 0.5:
            return self.rng.choice(IMAGE_IDS)
        return self.rng.choice([
            "", "../../etc/passwd", "/etc/passwd", self.secret, "..", "scan\x00", "scan.png", "labels/final/scan",
            str(self.world["studies"] / "scan.png"), str(self.world["tmp"] / "tmpfuzz.png"), "a" * 5000,
            "%2e%2e%2fetc%2fpasswd", "scan/../../x", self.text()])

    def filename(self) -> bytes:
        return self.rng.choice([b"x.png", b"x.nrrd", b"x.mha", b"x.nii.gz", b"a\x00b.png", b"a" * 300 + b".png",
                                b"..", b"../../etc/x.png", b"/etc/passwd", b"", b"x.tar.gz", b"x.png.exe",
                                ("\u00e9" * 150 + ".png").encode(), b"x.seg.nrrd", b"x.nhdr", b"x.foo.mha"])

    def _hostile_files(self) -> List[tuple]:
        root = self.world["root"] / "hostile"
        root.mkdir(exist_ok=True)
        big = root / "big.png"
        huge_png(big, 70000, 70000)
        eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n"
        scan = (self.world["studies"] / "scan.png").read_bytes()
        return [
            ("x.nrrd", detached_nrrd(root / "a.nrrd", self.secret).read_bytes()),
            ("x.mha", detached_mha(root / "a.mha", self.secret).read_bytes()),
            ("x.nrrd", detached_nrrd(root / "b.nrrd", "/etc/passwd", (8, 4)).read_bytes()),
            ("x.nii", nifti_pair_header(root / "p.nii").read_bytes()),
            ("x.nhdr", detached_nrrd(root / "c.nhdr", self.secret).read_bytes()),
            ("x.png", eps),
            ("x.png", big.read_bytes()),
            ("x.png", scan[: len(scan) // 2]),
            ("x.png", b""),
            ("x.nii.gz", b"\x1f\x8b" + self.rng.randbytes(200)),
            ("x.png", self.rng.randbytes(3000)),
            ("x.png", png_bytes(np.zeros((1, 5000), np.uint8))),
        ] + self.plausible

    @property
    def plausible(self) -> List[tuple]:
        """Well-formed files (a label for `scan`): only ever sent where something else is wrong."""
        return [("x.png", png_bytes(np.zeros((80, 96), np.uint8))),
                ("x.png", png_bytes(np.full((80, 96), 7, np.uint16)))]

    def hostile_file(self):
        return self.rng.choice(self.files[:-len(self.plausible)])

    # ---------------------------------------------------------------------------- the official client
    def client_file(self, name: str, content: bytes) -> str:
        folder = self.world["root"] / "client_files"
        folder.mkdir(exist_ok=True)
        path = folder / f"{self.rng.randrange(10**6)}_{name}"
        path.write_bytes(content)
        return str(path)

    def client_params(self) -> dict:
        """What the client can send: any dict it can json.dumps, NaN and 60-deep nesting included."""
        deep: dict = {}
        for _ in range(60):
            deep = {"d": deep}
        return self.rng.choice([{"a": float("nan")}, {"b": float("inf")}, deep, {"x": 10**400},
                                {self.text(5): self.junk()}])

    def via_client(self, kind: str, action: Callable) -> Call:
        def send(url):
            client = MONAILabelClient(url, tmpdir=str(self.world["root"] / "client"))
            try:
                result = action(client)
            except MONAILabelClientException as e:
                text = " ".join(str(a) for a in e.args)
                status = re.search(r"Status: (\d+)", text)
                return (int(status.group(1)) if status else 0), text.encode("utf-8", "replace")
            if isinstance(result, tuple) and result and isinstance(result[0], str) and os.path.isfile(result[0]):
                return 200, Path(result[0]).read_bytes()  # infer: the result file
            return 200, json.dumps(result, default=str).encode()

        return Call(f"{kind} (client)", "CLIENT", kind, send=send)

    def client_calls(self) -> Call:
        name, content = self.hostile_file()
        image = self.image_id()
        choice = self.rng.randrange(6)
        if choice == 0:
            params, model = self.infer_params(), self.rng.choice(["samus", "samus_propagate"])
            upload = self.client_file(name, content) if self.rng.random() < 0.4 else None
            return self.via_client("infer", lambda c: c.infer(model, image if not upload else "", params, file=upload))
        if choice == 1:
            path, params = self.client_file(name, content), self.client_params()
            tag = self.rng.choice(["final", "original", "../x"])
            return self.via_client("save label", lambda c: c.save_label(self.rng.choice(IMAGE_IDS), path, tag, params))
        if choice == 2:
            path, params = self.client_file(name, content), self.client_params()
            return self.via_client("upload image", lambda c: c.upload_image(path, image or "x", params))
        if choice == 3:
            strategy, params = self.rng.choice(["random", "diversity", "nope"]), self.client_params()
            return self.via_client("next sample", lambda c: c.next_sample(strategy, params))
        if choice == 4:
            params = self.rng.choice([{"max_epochs": 0}, {"learning_rate": float("nan")}, {"gpus": [0]},
                                      {"train_batch_size": 10**400}, {"name": "../x"}])
            return self.via_client("train", lambda c: c.train_start(self.rng.choice(["samus", "nope"]), params))
        path = self.client_file(name, content)
        return self.via_client("session", lambda c: c.infer("samus", "", {"foreground": [[2, 2]]},
                                                            session_id=c.create_session(path)["session_id"]))

    # ---------------------------------------------------------------------------- plain HTTP
    def infer(self) -> Call:
        model = self.rng.choices(["samus", "samus_propagate", "nope", "wsi"], [5, 3, 1, 1])[0]
        query = {"image": self.image_id(),
                 "output": self.rng.choices(["json", "image", "all", "dicom_seg", "x"], [4, 2, 2, 1, 1])[0]}
        if self.rng.random() < 0.2:
            query["session_id"] = self.rng.choice(["..", "nope", self.text(10), "a" * 70])
        files = {"params": (None, self.json_text(self.infer_params()))}
        r = self.rng.random()
        if r < 0.3:
            name, content = self.hostile_file()
            files["file"] = (name, content)
        elif r < 0.35:
            files["label"] = ("x.bin", b"\x01" * 100)
        return Call("infer", "POST", f"/infer/{model}", query, files=files)

    def empty_params(self) -> Call:
        """`params` that is no JSON object: whitespace (once a 500 from MONAI Label's json.loads), empty, a
        list, null, a string; on infer and on the datastore's uploads and info updates."""
        params = self.rng.choice(["", " ", " " * 100_002, "\t\n\r ", "[]", "null", "1", '"{}"'])
        path, query = self.rng.choice([("/infer/samus", {"image": "scan"}), ("/infer/samus_propagate", {"image": "cine"}),
                                       ("/datastore/image/info", {"image": "scan"})])
        method = "PUT" if path.startswith("/datastore") else "POST"
        field = "info" if path.startswith("/datastore") else "params"
        return Call("empty params", method, path, query, files={field: (None, params)})

    def infer_raw_names(self) -> Call:
        body, content_type = multipart([("params", '{"foreground": [[3, 3]]}')],
                                       [("file", self.filename(), self.hostile_file()[1])])
        return Call("infer raw", "POST", "/infer/samus", {"image": ""}, raw=body, content_type=content_type)

    def add_image(self) -> Call:
        name, content = self.hostile_file()
        image = self.rng.choice(["scan", "cine", "../escape", "a\x00b", "x" * 300, "", "new image", ".hidden",
                                 self.text(12)])
        if self.rng.random() < 0.5:
            return Call("add image", "PUT", "/datastore/image", {"image": image},
                        files={"params": (None, self.json_text(self.junk())), "file": (name, content)})
        body, content_type = multipart([("params", self.json_text(self.junk()))], [("file", self.filename(), content)])
        return Call("add image raw", "PUT", self.rng.choice(["/datastore/image", "/datastore/"]), {"image": image},
                    raw=body, content_type=content_type)

    def save_label(self) -> Call:
        image = self.rng.choice(list(IMAGE_IDS) + ["nope", "../scan", self.text(8)])
        tag = self.rng.choice(["final", "final", "original", "../final", "", "a/b", "x\x00", "t" * 300])
        bad_params = ["[1, 2]", '"text"', '{"a": NaN}', "{", "null", '{"label_info": ' + "[" * 60 + "]" * 60 + "}"]
        if self.rng.random() < 0.5:  # a well-formed file with broken params
            name, content = self.rng.choice(self.plausible)
            params = self.rng.choice(bad_params)
        else:  # a hostile file with good params
            name, content = self.hostile_file()
            params = json.dumps({"label_info": [{"name": "lesion", "idx": 1}]})
        return Call("save label", "PUT", "/datastore/label", {"image": image, "tag": tag},
                    files={"params": (None, params), "label": (name, content)})

    def steal(self) -> Call:
        """A detached header as the label of the 16 x 16 image, then the label read back: the classic read of
        a server file (`data file: <secret>` turned into pixels)."""
        name, content = self.rng.choice(self.files[:5])

        def send(url):
            r = requests.put(f"{url}/datastore/label", params={"image": "tiny16", "tag": "final"},
                             files={"params": (None, "{}"), "label": (name, content)}, timeout=60)
            back = requests.get(f"{url}/datastore/label", params={"label": "tiny16", "tag": "final"}, timeout=60)
            return max(r.status_code, back.status_code), back.content if back.status_code == 200 else r.content

        return Call("steal", "PUT+GET", "/datastore/label", send=send)

    def info_update(self) -> Call:
        which = self.rng.choice(["image", "label"])
        query = {"image": self.image_id()} if which == "image" else {"label": self.image_id(), "tag": "final"}
        info = self.rng.choice(['{"x": NaN}', "[1]", '"s"', "{", "[" * 2000, '{"a": ' + "[" * 50 + "]" * 50 + "}",
                                json.dumps({"a": "x" * 600_000})])
        return Call("info", "PUT", f"/datastore/{which}/info", query, data={"info": info})

    def delete(self) -> Call:
        which = self.rng.choice(["image", "label"])
        victim = self.rng.choice(["nope", "../scan", "scan\x00", "", self.text(10)])  # never a protected id
        query = {"id": victim} if which == "image" else {"id": victim, "tag": self.rng.choice(["final", "x", "../"])}
        return Call("delete", "DELETE", f"/datastore/{which}", query)

    def download(self) -> Call:
        r = self.rng.random()
        if r < 0.3:
            return Call("dataset", "GET", "/datastore/dataset",
                        {"limit_cases": str(self.rng.choice([0, 1, -5, 10**20]))}, hostile=False)
        if r < 0.6:
            tag = self.rng.choice(["final", "original", "../"])
            return Call("get label", "GET", "/datastore/label", {"label": self.image_id(), "tag": tag})
        if r < 0.8:
            return Call("head image", "HEAD", "/datastore/image",
                        {"image": self.image_id(), "check_sum": self.rng.choice(["CRC:1", "MD5:x", "abc", "SHA1:"])})
        return Call("get image", "GET", "/datastore/image", {"image": self.image_id()})

    def listing(self) -> Call:
        return Call("listing", "GET", "/datastore/", {"output": self.rng.choice(["all", "stats", "train", "x"])},
                    hostile=False)

    def train(self) -> Call:
        """Never a valid request: that would start a real training run."""
        bad = self.rng.choice([
            {"max_epochs": self.rng.choice([0, -1, "lots", 10**400, 1.5, None, [1]])},
            {"learning_rate": self.rng.choice([10**400, -1, "x", 0, None])}, {"train_batch_size": 10**9},
            {"name": self.rng.choice(["../../x", "a\x00", "", "x" * 100, 5])}, {"gpus": ["0"]}, {"gpus": "0;rm -rf"},
            {"device": [5]}, {"device": {"a": 1}}, {"device": "tpu:x"}, {"model": "other"}, {"val_split": 1.0},
            {"max_rounds": 10**6}, {"seed": -1}, {"precision": {"a": 1}}, {"train_mode": "everything"}])
        extra = self.junk()
        body = dict(extra if isinstance(extra, dict) and self.rng.random() < 0.3 else {}, **bad)
        model = self.rng.choice(["samus", "samus", "nope", ""])
        if not model:
            body = {"samus": body}
        query = {"run_sync": self.rng.choice(["true", "false"]), "enqueue": self.rng.choice(["true", "false"])}
        if self.rng.random() < 0.3:
            text = self.rng.choice(['{"max_epochs": NaN}', "{", "[" * 3000, "[1]", '"x"'])
            return Call("train raw", "POST", f"/train/{model}", query, raw=text.encode(),
                        content_type=self.rng.choice(["application/json", ""]))
        return Call("train", "POST", f"/train/{model}" if model else "/train/", query,
                    raw=json.dumps(body).encode(), content_type="application/json")

    def valid_run_sync(self) -> Call:
        return Call("run_sync", "POST", "/train/samus", {"run_sync": "true"}, json_body={"max_epochs": 1})

    def active_learning(self) -> Call:
        strategy = self.rng.choice(["random", "first", "diversity", "nope", "../x", "x\x00"])
        body = self.rng.choice(['{"client_id": NaN}', "[1]", "{", "[" * 3000, json.dumps(self.junk()), "{}"])
        return Call("active learning", "POST", f"/activelearning/{strategy}", raw=body.encode(),
                    content_type="application/json",
                    hostile=body != "{}" or strategy not in ("random", "first", "diversity"))

    def session(self) -> Call:
        name, content = self.hostile_file()
        if self.rng.random() < 0.3:
            body, content_type = multipart([], [("files", self.filename(), content), ("files", b"b.png", content)])
            return Call("session raw", "PUT", "/session/", {"uncompress": self.rng.choice(["true", "false"])},
                        raw=body, content_type=content_type)
        return Call("session", "PUT", "/session/", {"uncompress": self.rng.choice(["true", "false"]),
                                                    "expiry": str(self.number())}, files={"files": (name, content)})

    def session_use(self) -> Call:
        name, content = self.hostile_file()

        def send(url):
            r = requests.put(f"{url}/session/", files={"files": (name, content)}, timeout=60)
            if r.status_code != 200:
                return r.status_code, r.content
            session_id = r.json()["session_id"]
            r = requests.post(f"{url}/infer/samus", params={"session_id": session_id, "image": "", "output": "json"},
                              files={"params": (None, '{"foreground": [[2, 2]]}')}, timeout=60)
            return r.status_code, r.content

        return Call("session infer", "PUT+POST", "/session/ + /infer/samus", send=send)

    def session_get(self) -> Call:
        method = self.rng.choice(["GET", "DELETE"])
        return Call("session id", method, f"/session/{self.rng.choice(['%2E%2E', 'nope', 'a' * 100, '%00'])}",
                    {"image": "true"})

    def model(self) -> Call:
        r = self.rng.random()
        if r < 0.4:
            return Call("model upload", "PUT", f"/model/{self.rng.choice(['samus', 'samus_propagate', 'nope'])}",
                        files={"file": ("m.pt", self.rng.choice([b"garbage", b"PK\x03\x04" + self.rng.randbytes(100),
                                                                  b""]))})
        if r < 0.6:
            return Call("model delete", "DELETE", f"/model/{self.rng.choice(['samus', 'nope', '..'])}")
        return Call("model get", "GET", self.rng.choice(["/model/nope", "/model/info/nope", "/model/info/samus"]))

    def other(self) -> Call:
        method, path, query = self.rng.choice([
            ("GET", "/logs/", {"lines": str(10**30)}), ("GET", "/logs/", {"lines": "-1e9"}),
            ("GET", "/logs/", {"refresh": "9" * 40}), ("POST", "/reload", {}), ("GET", "/ohif/..", {}),
            ("GET", "/ohif/../../etc/passwd", {}), ("GET", "/proxy/dicom/x", {}), ("POST", "/proxy/dicom/qido/x", {}),
            ("GET", "/static/../../etc/passwd", {}), ("POST", "/scoring/dice", {"run_sync": "true"}),
            ("POST", "/batch/infer/samus", {"run_sync": "true"}), ("POST", "/infer/wsi_v2/samus", {"image": "scan"}),
            ("POST", "/infer/wsi/samus", {"image": "scan"}), ("GET", "/train/", {"all": "x"}),
            ("GET", "/info/", {"x": "\x00"}), ("GET", "/" + "a" * 3000, {}), ("DELETE", "/train/", {}),
            ("GET", "/datastore/", {"output": "all", "q": "x" * 5000})])
        return Call("other", method, path, query)

    def lying_headers(self) -> Call:
        choice = self.rng.random()

        def send(url):
            host, port = url.replace("http://", "").split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                if choice < 0.4:  # claims a terabyte
                    conn.putrequest("PUT", "/datastore/image?image=x")
                    conn.putheader("Content-Type", "multipart/form-data; boundary=b")
                    conn.putheader("Content-Length", str(10**12))
                    conn.endheaders()
                    conn.send(b"--b\r\n")
                elif choice < 0.7:  # no boundary, or a multipart body that never closes
                    body = b'--b\r\nContent-Disposition: form-data; name="params"\r\n\r\n{}\r\n--b'
                    conn.putrequest("POST", "/infer/samus?image=scan")
                    conn.putheader("Content-Type", self.rng.choice(["multipart/form-data",
                                                                    "multipart/form-data; boundary=b"]))
                    conn.putheader("Content-Length", str(len(body)))
                    conn.endheaders()
                    conn.send(body)
                else:  # chunked JSON far over the limit
                    conn.putrequest("POST", "/activelearning/random")
                    conn.putheader("Content-Type", "application/json")
                    conn.putheader("Transfer-Encoding", "chunked")
                    conn.endheaders()
                    for _ in range(40):
                        conn.send(b"%x\r\n%s\r\n" % (65536, b" " * 65536))
                    conn.send(b"0\r\n\r\n")
            except OSError:
                pass  # the server refused (and closed) before the whole body was sent
            try:
                r = conn.getresponse()
                return r.status, r.read()
            except (ConnectionError, http.client.HTTPException):
                # The server answered and closed while the client was still sending an over-limit body: the
                # reset can swallow the answer. A refusal all the same; a crash would show on the next request.
                return 400, b""
            finally:
                conn.close()

        return Call("lying headers", "RAW", "(http.client)", send=send)

    def valid_click(self) -> Call:
        image, click = self.rng.choice([("scan", [[40, 30]]), ("plain", [[10, 10]]), ("cine", [[10, 10, 2]])])
        return Call("click", "POST", "/infer/samus", {"image": image, "output": "json"},
                    files={"params": (None, json.dumps({"foreground": click}))}, hostile=False)

    def makers(self):
        return [(self.infer, 12), (self.infer_raw_names, 3), (self.add_image, 6), (self.save_label, 8), (self.steal, 2),
                (self.info_update, 3), (self.delete, 3), (self.download, 4), (self.listing, 1), (self.train, 6),
                (self.valid_run_sync, 1), (self.active_learning, 3), (self.session, 3), (self.session_use, 2),
                (self.session_get, 2), (self.model, 3), (self.other, 4), (self.lying_headers, 2),
                (self.valid_click, 2), (self.client_calls, 32), (self.empty_params, 3)]

    def calls(self):
        makers, weights = zip(*self.makers())
        while True:
            yield self.rng.choices(makers, weights)[0]()


def send(url: str, call: Call):
    if call.send is not None:
        return call.send(url)
    kwargs = {"params": call.query, "timeout": 120}
    if call.raw is not None:
        kwargs.update(data=call.raw, headers={"Content-Type": call.content_type} if call.content_type else {})
    elif call.json_body is not None:
        kwargs["json"] = call.json_body
    else:
        kwargs.update(files=call.files, data=call.data)
    r = requests.request(call.method, url + call.path, **kwargs)
    return r.status_code, r.content


# ------------------------------------------------------------------------------------------ checks
def leaked(body: bytes, depth: int = 0) -> Optional[str]:
    """What of a forbidden file an answer holds: raw, as the pixels of an image, or inside a zip."""
    if not body:
        return None
    if SECRET[:64] in body or PASSWD in body:
        return "raw bytes"
    if depth > 1:
        return None
    if body[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as archive:
                for name in archive.namelist():
                    found = leaked(archive.read(name), depth + 1)
                    if found:
                        return f"{name} in a zip: {found}"
        except zipfile.BadZipFile:
            pass
    pixels = decoded(body)
    if pixels is not None and (SECRET[:64] in pixels or PASSWD in pixels):
        return "image pixels"
    return None


def decoded(body: bytes) -> Optional[bytes]:
    if body[:8] == b"\x89PNG\r\n\x1a\n":
        try:
            return np.asarray(Image.open(io.BytesIO(body))).tobytes()
        except Exception:  # noqa: BLE001 - not an image after all
            return None
    if body[:4] == b"NRRD" or body[:2] == b"\x1f\x8b":
        import tempfile

        import SimpleITK as sitk

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "x.nrrd" if body[:4] == b"NRRD" else "x.nii.gz")
            Path(path).write_bytes(body)
            try:
                return sitk.GetArrayFromImage(sitk.ReadImage(path)).tobytes()
            except RuntimeError:
                return None
    return None


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def settle_temp(world, before, timeout=10.0):
    deadline = time.time() + timeout
    while set(os.listdir(world["tmp"])) - before and time.time() < deadline:
        time.sleep(0.2)
    return sorted(set(os.listdir(world["tmp"])) - before)


def test_hostile_requests_break_nothing(world):
    url = world["url"]
    tmp_before = set(os.listdir(world["tmp"]))
    (world["tmp"] / "tmpfuzz.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))  # a neighbour's upload
    tmp_before.add("tmpfuzz.png")

    # Warm-up: every kind of request twice, so that lazily loaded code and caches count as the baseline.
    warm = Fuzz(random.Random(SEED + 1), world)
    for maker, _ in warm.makers() * 2:
        send(url, maker())
    memory_before = rss(world["pid"])

    fuzz = Fuzz(random.Random(SEED), world)
    failures, kinds, hostile, t0 = [], {}, 0, time.time()
    calls = fuzz.calls()
    while hostile < N_HOSTILE:
        call = next(calls)
        hostile += call.hostile
        try:
            status, body = send(url, call)
        except (requests.RequestException, OSError) as e:
            failures.append(f"{call.kind} {call.method} {call.path}: no answer ({e})")
            continue
        kinds.setdefault(call.kind, []).append(status)
        if os.environ.get("FUZZ_DEBUG"):
            print(call.kind, status, body[:120])
        if status >= 500 or status == 0:
            failures.append(f"{call.kind} {call.method} {call.path} {call.query}: {status} {body[:300]!r}")
        found = leaked(body)
        if found:
            failures.append(f"{call.kind} {call.method} {call.path} {call.query}: leaked {found}")
    seconds = time.time() - t0
    growth = rss(world["pid"]) - memory_before
    total = sum(len(v) for v in kinds.values())
    print(f"\nfuzz: {total} requests ({hostile} hostile) in {seconds:.1f} s; server memory growth "
          f"{growth / 2**20:.1f} MiB; answers by kind: " +
          "; ".join(f"{k} {sorted(set(v))}" for k, v in sorted(kinds.items())))

    assert not failures, "\n".join(failures[:20])
    assert hostile >= 500
    assert growth < 100 * 2**20, f"server memory grew by {growth / 2**20:.1f} MiB"
    left = settle_temp(world, tmp_before)
    assert not left, f"temporary files left behind: {left[:20]}"
    r = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=60)
    assert r.status_code == 200 and set(IMAGE_IDS) <= set(r.json()["objects"])
    for name, content in world["labels"].items():
        ext = ".png" if name == "scan" else ".nii.gz"
        assert (world["studies"] / "labels" / "final" / f"{name}{ext}").read_bytes() == content, name
        assert Path(world["client"].download_label(name, "final")).read_bytes() == content, name
    # No hostile request started a training run, and the server still does its job.
    assert requests.get(f"{url}/train/", timeout=30).status_code == 404  # "No Train Tasks Found"
    _, params = world["client"].infer("samus", "scan", {"foreground": [[40, 30]]})
    assert params["frame"] == 0
