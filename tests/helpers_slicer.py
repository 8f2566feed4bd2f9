"""Helpers for the Slicer module tests: import the module's Slicer-free library from its folder."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "slicer_module" / "SAMUSSegment"
LIB_DIR = MODULE_DIR / "SAMUSSegmentLib"
MODULE_FILE = MODULE_DIR / "SAMUSSegment.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SAMUSSegment.ui"
ICON_FILE = MODULE_DIR / "Resources" / "Icons" / "SAMUSSegment.png"

# Slicer puts the module folder on sys.path; do the same so `import SAMUSSegmentLib` works.
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))
