"""Copy a training run's best checkpoint to the bundled default model, with provenance for the model card.

    python scripts/export_default_model.py RUN_DIR [--history EXTRA_HISTORY.json ...]

The weights are stored unchanged (float32); the provenance records the run's history and total time.
"""
import argparse
import json
from pathlib import Path

import samus
from samus.checkpoint import read_checkpoint


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--command", action="append", default=[], help="the commands that produced the run")
    ap.add_argument("--out", type=Path, default=samus.DEFAULT_CHECKPOINT)
    args = ap.parse_args()
    best = read_checkpoint(args.run_dir / "best.pt")
    history = json.loads((args.run_dir / "history.json").read_text())
    model = samus.build_samus(None, checkpoint=args.run_dir / "best.pt")
    provenance = dict(best.provenance or {})
    provenance.update({
        "source": "bundled default model (see MODEL_CARD.md)",
        "data": "BUSI development subset, train split (361 images); model selection on val (52 images)",
        "commands": args.command,
        "best_epoch": best.extra.get("epoch"),
        "epochs_run": len(history),
        "training_seconds": round(sum(h["seconds"] for h in history), 1),
        "history": history,
    })
    samus.save_checkpoint(args.out, model, provenance)
    print(json.dumps({k: provenance[k] for k in ("best_epoch", "epochs_run", "training_seconds", "val_dice")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
