"""What the request guard asks the app, as plain callables (SamusApp.guard_hooks builds them; tests give
stand-ins): the guard needs answers about tasks, sessions, training and models, not the app object."""
from dataclasses import dataclass
from typing import Callable, List, Optional


@dataclass(frozen=True)
class GuardHooks:
    infer_models: Callable[[], List[str]]  # infer task names (POST /infer/<model>, /model/<model>)
    trainer_names: Callable[[], List[str]]
    scoring_methods: Callable[[], List[str]]
    dicomweb_datastore: Callable[[], bool]  # dicom_seg results and /proxy/dicom need one
    session_exists: Callable[[str], bool]
    check_session_room: Callable[[int], None]  # raises 429 / 413 for a new session of that many bytes
    check_train_request: Callable[[str, dict], None]  # raises 400 for bad training options of a trainer
    train_queued: Callable[[], bool]  # a training run waits in MONAI Label's queue
    check_model_file: Callable[[str], Optional[str]]  # None if uploaded weights can be served, else why not
    check_model_delete: Callable[[str], Optional[str]]  # None if DELETE /model/<model> may go ahead, else why not
