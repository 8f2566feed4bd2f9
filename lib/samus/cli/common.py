"""What several commands share: the model flags, loading the chosen model, and user errors as messages."""
import hashlib
import sys

from ..build import build_lite_medsam, build_model
from ..checkpoint import read_checkpoint
from ..default import DEFAULT_MODEL, bundled_checkpoint
from ..modeling.tiny_vit_encoder import lite_medsam_checkpoint_path
from ..openvino_trunk import BACKENDS
from ..predictor import PRECISIONS, SamusPredictor

USER_ERRORS = (ValueError, FileNotFoundError, KeyError, OSError)


def add_model_args(p) -> None:
    p.add_argument("--model", default=None, choices=("accurate", "fast"),
                   help="a bundled model (default: accurate, SAMUS on LiteMedSAM; fast: the small SAMUS)")
    p.add_argument("--checkpoint", default=None, help="checkpoint: ours (any architecture), official SAMUS, SAM "
                   "ViT-B or LiteMedSAM's lite_medsam.pth (default: the bundled model)")
    p.add_argument("--config", default=None, help="model configuration for checkpoints that do not name "
                   "one (official SAMUS / SAM files): vit_b, small, tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="what runs the image encoder: torch, or openvino for the accurate model's frozen trunk "
                        "(bench_encoders.py, 2-core AMD EPYC: 22%% less time per frame in bf16, 56%% in fp32; converted "
                        "once and cached)")



def guarded(fn, name: str):
    """`fn(args)` with user errors printed as `samus NAME: error: ...` and exit status 2."""
    def run(args) -> int:
        try:
            return fn(args)
        except USER_ERRORS as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            print(f"samus {name}: error: {msg}", file=sys.stderr)
            return 2
    return run


def load_model(args):

    if args.checkpoint is not None and args.model is not None:
        raise ValueError("give --model or --checkpoint, not both")
    if args.checkpoint is None:
        path = bundled_checkpoint(args.model or DEFAULT_MODEL)
        return build_model(checkpoint=path, device=args.device), str(path)
    ckpt = read_checkpoint(args.checkpoint)
    config = args.config if ckpt.arch == "samus" and ckpt.config_name is None else None
    return build_model(ckpt.arch, config=config, checkpoint=ckpt, device=args.device), str(args.checkpoint)



def baseline_predictor(args):
    model = build_lite_medsam(device=args.device)  # the package's weights as they ship
    return (SamusPredictor(model, device=args.device, precision=args.precision, backend=args.backend),
            str(lite_medsam_checkpoint_path()))



def make_predictor(args):
    model, ckpt = load_model(args)
    return SamusPredictor(model, device=args.device, precision=args.precision, backend=args.backend), ckpt


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

