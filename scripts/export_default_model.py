"""Make a trained checkpoint a bundled model, with the provenance the model card cites.

    python scripts/export_default_model.py CHECKPOINT_OR_RUN_DIR --data "what it was trained on" \
        --command "samus train ..." [--command ...] [--history EARLIER_RUN/history.json ...]

A run folder means its best.pt and history.json. The weights are stored unchanged (float32; `--half`
stores float16, as for the accurate model, whose frozen trunk is not stored at all). The
provenance keeps the checkpoint's own record, the commands, and the history of every run in the chain
(earlier runs first), with the total training time. A bundled file as the source keeps its chain (history,
commands, notes) and appends the new `--command` / `--note`, e.g. to switch on `--box-union`; a run that
started from a bundled file names it with `--continues`, and the file's chain goes first.
"""
import argparse
import dataclasses
import json
from pathlib import Path

import samus
from samus.checkpoint import read_checkpoint


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("source", type=Path, help="a checkpoint, or a run folder (its best.pt and history.json)")
    ap.add_argument("--data", required=True, help="the training data, in words (recorded in the provenance)")
    ap.add_argument("--command", action="append", default=[], help="the commands that produced it, in order")
    ap.add_argument("--history", action="append", default=[], type=Path,
                    help="history.json of an earlier run this one continued from (repeatable, earliest first)")
    ap.add_argument("--continues", type=Path,
                    help="the bundled file the run started from: its runs, commands and notes go first")
    ap.add_argument("--out", type=Path, default=samus.DEFAULT_CHECKPOINT)
    ap.add_argument("--half", action="store_true", help="store floating-point weights as float16")
    ap.add_argument("--note", action="append", default=[], help="free text kept in the provenance (ablation...)")
    ap.add_argument("--box-union", action="store_true",
                    help="LiteMedSAM-based models: answer a box alone with the union of ours and LiteMedSAM's own")
    args = ap.parse_args()
    path = args.source / "best.pt" if args.source.is_dir() else args.source
    ckpt = read_checkpoint(path)
    provenance = dict(ckpt.provenance or {})
    bundled = not args.source.is_dir() and "history" in provenance
    if bundled:  # re-export of a bundled file: its chain goes on
        runs = [json.loads(p.read_text()) for p in args.history] + list(provenance["history"])
        commands, notes = list(provenance.get("commands", [])) + args.command, list(provenance.get("notes", [])) + args.note
    else:
        earlier = (read_checkpoint(args.continues).provenance or {}) if args.continues else {}
        runs = list(earlier.get("history", [])) + [json.loads(p.read_text()) for p in args.history]
        own = args.source / "history.json" if args.source.is_dir() else None
        runs.append(json.loads(own.read_text()) if own else (ckpt.extra or {}).get("history") or [])
        commands = list(earlier.get("commands", [])) + args.command
        notes = list(earlier.get("notes", [])) + args.note
    if args.box_union:
        if ckpt.arch != "lite_medsam":
            ap.error(f"--box-union needs a LiteMedSAM-based model, not {ckpt.arch}")
        ckpt.config = dataclasses.replace(ckpt.config, box_union=True)
    model = samus.build_model(checkpoint=ckpt)
    provenance.update({
        "source": "bundled model (see MODEL_CARD.md)",
        "notes": notes,
        "data": args.data,
        "commands": commands,
        "best_epoch": (ckpt.extra or {}).get("epoch"),
        "epochs_run": sum(len(r) for r in runs),
        "training_seconds": round(sum(h.get("seconds", 0.0) for r in runs for h in r), 1),
        "history": runs,  # one list per run, earliest first
    })
    samus.save_checkpoint(args.out, model, provenance, extra={"epoch": (ckpt.extra or {}).get("epoch")},
                          half=args.half)
    print(json.dumps({k: provenance[k] for k in ("best_epoch", "epochs_run", "training_seconds", "val_dice")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
