"""The request guard's route rules with stand-in answers from the app (GuardHooks), no server."""
import sys

import pytest
from fastapi import HTTPException

from app_server import APP_DIR

sys.path.insert(0, str(APP_DIR))  # the app's `lib` package, as MONAI Label imports it
from lib.errors import bad_request  # noqa: E402
from lib.request_guard import GuardHooks  # noqa: E402
from lib.request_guard.parsing import Parsed, Part  # noqa: E402
from lib.request_guard.policies import TRAIN_BODY_BYTES, RoutePolicies  # noqa: E402


class App:
    """Answers as a SAMUS app with one trainer and one session would; records what the guard asked."""

    def __init__(self):
        self.asked = []
        self.queued = False
        self.delete_error = None

    def check_train_request(self, model, params):
        self.asked.append((model, params))
        if params.get("max_epochs") == -1:
            raise bad_request("max_epochs must be an integer in [1, 100000], got -1")

    def hooks(self) -> GuardHooks:
        return GuardHooks(
            infer_models=lambda: ["samus", "samus_propagate"], trainer_names=lambda: ["samus"],
            scoring_methods=lambda: [], dicomweb_datastore=lambda: False,
            session_exists=lambda sid: sid == "0f1e-2d3c", check_session_room=lambda size: self.asked.append(size),
            check_train_request=self.check_train_request, train_queued=lambda: self.queued,
            check_model_file=lambda path: None, check_model_delete=lambda model: self.delete_error)


@pytest.fixture
def app():
    return App()


@pytest.fixture
def policies(app):
    return RoutePolicies(app.hooks())


def check(policies, method, path, query=None, json_body=None, files=(), json_fields=None, body_bytes=0):
    """Runs the route's before- and after-checks; the match (None where no rule applies)."""
    parsed = Parsed(query=query or {}, files=[Part(name, filename, size=size) for name, filename, size in files],
                    json_body=json_body, json_fields=json_fields or {}, body_bytes=body_bytes)
    match = policies.match(method, path)
    if match:
        match.before(parsed)
        match.after(parsed)
    return match


def refused(*args, **kwargs) -> HTTPException:
    with pytest.raises(HTTPException) as caught:
        check(*args, **kwargs)
    return caught.value


def test_routes_match_by_method_and_whole_path(policies):
    assert policies.match("GET", "/info/") is None
    assert policies.match("GET", "/infer/samus") is None  # infer rules are for POST
    assert policies.match("POST", "/infer/samus/").groups == ("samus",)
    assert policies.match("POST", "/infer/wsi/samus").groups == ("wsi",)  # the whole-slide rule comes first
    assert policies.match("PATCH", "/proxy/dicom/x") is not None  # "*": every method
    assert policies.match("GET", "/model/info/samus").groups == ("samus",)


def test_infer_rules(policies):
    e = refused(policies, "POST", "/infer/other", {"image": "a"})
    assert e.status_code == 404 and "samus, samus_propagate" in e.detail
    assert "DICOMweb" in refused(policies, "POST", "/infer/samus", {"image": "a", "output": "dicom_seg"}).detail
    assert "not a session id" in refused(policies, "POST", "/infer/samus", {"session_id": "../x"}).detail
    assert refused(policies, "POST", "/infer/samus", {"session_id": "abc"}).status_code == 404
    check(policies, "POST", "/infer/samus", {"session_id": "0f1e-2d3c"})
    check(policies, "POST", "/infer/samus", {"image": "benign_3"})
    check(policies, "POST", "/infer/samus", files=[("file", "scan.png", 10)])
    assert "no image" in refused(policies, "POST", "/infer/samus").detail
    e = refused(policies, "POST", "/infer/samus", {"image": "a"}, json_fields={"params": {"image": "/etc/passwd"}})
    assert "params may not set image" in e.detail
    assert "one image" in refused(policies, "POST", "/infer/samus", files=[("file", "a", 1), ("file", "b", 1)]).detail
    assert "no `label` file" in refused(policies, "POST", "/infer/samus", {"image": "a"},
                                        files=[("label", "l.png", 1)]).detail
    assert "whole-slide" in refused(policies, "POST", "/infer/wsi_v2/samus").detail
    assert "batch inference" in refused(policies, "POST", "/batch/infer/samus").detail


def test_session_rules_ask_the_app_for_room(policies, app):
    check(policies, "PUT", "/session/", files=[("files", "cine.nii.gz", 1234)])
    assert app.asked == [1234]
    assert "exactly one file" in refused(policies, "PUT", "/session/", files=[]).detail
    assert "uncompress" in refused(policies, "PUT", "/session", {"uncompress": "Yes"}).detail
    assert "not a session id" in refused(policies, "DELETE", "/session/a.b").detail


def test_train_rules_pass_each_trainers_options_to_the_app(policies, app):
    check(policies, "POST", "/train/samus", json_body={"max_epochs": 2})
    check(policies, "POST", "/train/", json_body={"samus": {"max_epochs": 3}})
    check(policies, "POST", "/train")
    assert app.asked == [("samus", {"max_epochs": 2}), ("samus", {"max_epochs": 3}), ("samus", {})]
    assert "max_epochs must be an integer" in refused(policies, "POST", "/train/samus",
                                                      json_body={"max_epochs": -1}).detail
    assert refused(policies, "POST", "/train/other").status_code == 404
    assert "name model 'x'" in refused(policies, "POST", "/train/samus", json_body={"model": "x"}).detail
    assert "JSON object" in refused(policies, "POST", "/train/", json_body={"samus": [1]}).detail
    e = refused(policies, "POST", "/train/samus", body_bytes=TRAIN_BODY_BYTES + 1)
    assert e.status_code == 413
    app.queued = True
    check(policies, "POST", "/train/samus")  # without enqueue a second run is MONAI Label's to refuse
    assert refused(policies, "POST", "/train/samus", {"enqueue": "true"}).status_code == 429


def test_model_rules(policies, app):
    assert refused(policies, "GET", "/model/other").status_code == 404
    check(policies, "DELETE", "/model/samus")
    app.delete_error = "the base model stays"
    e = refused(policies, "DELETE", "/model/samus")
    assert e.status_code == 409 and e.detail == "the base model stays"
    assert "one `file`" in refused(policies, "PUT", "/model/samus", files=[("file", "m.pt", 3)]).detail  # not captured


def test_the_other_rules(policies):
    check(policies, "GET", "/logs/", {"lines": " -12 "})
    assert "at most 7 digits" in refused(policies, "GET", "/logs", {"refresh": "1" * 8}).detail
    check(policies, "HEAD", "/datastore/image", {"check_sum": "MD5:abc"})
    assert "check_sum" in refused(policies, "HEAD", "/datastore/image", {"check_sum": "CRC:abc"}).detail
    assert refused(policies, "POST", "/reload").status_code == 403
    assert refused(policies, "GET", "/ohif/a/../b").status_code == 404
    check(policies, "GET", "/ohif/a/b.js")
    assert refused(policies, "GET", "/proxy/dicom/studies").status_code == 404
    assert refused(policies, "POST", "/scoring/dice").status_code == 404
