"""Static checks of the 3D Slicer extension (no Slicer here): files compile, the .ui defines every
widget the code uses, CMake lists every script, the pure library imports nothing from Slicer."""
import ast
import re
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from helpers_slicer import ICON_FILE, LIB_DIR, MODULE_DIR, MODULE_FILE, ROOT, UI_FILE

EXTENSION_DIR = ROOT / "slicer_module"
PY_FILES = sorted(EXTENSION_DIR.rglob("*.py"))
# Widgets Slicer's .ui loader knows besides the ones a .ui declares as custom widgets.
QT_WIDGETS = {"QWidget", "QLabel", "QLineEdit", "QPushButton", "QComboBox", "QSpinBox", "QProgressBar",
              "QCheckBox", "QGroupBox", "QToolButton", "QDoubleSpinBox", "QFrame"}


def module_ast():
    return ast.parse(MODULE_FILE.read_text(), str(MODULE_FILE))


def ui_tree():
    return ET.parse(UI_FILE)


@pytest.mark.parametrize("path", PY_FILES, ids=lambda p: str(p.relative_to(EXTENSION_DIR)))
def test_every_module_file_compiles(path):
    compile(path.read_text(), str(path), "exec")


def test_pure_library_imports_only_stdlib_and_numpy():
    allowed = set(sys.stdlib_module_names) | {"numpy"}
    files = sorted(LIB_DIR.glob("*.py"))
    assert len(files) >= 10
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module.split(".")[0]]
            else:
                continue
            bad = [n for n in names if n not in allowed]
            assert not bad, f"{path.name} imports {bad}: the library must run without Slicer (stdlib + numpy only)"


def test_ui_file_is_valid_and_defines_every_widget_the_module_uses():
    root = ui_tree().getroot()
    assert root.tag == "ui" and root.find("class").text == "SAMUSSegment"
    widgets = {w.get("name"): w.get("class") for w in root.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    assert len(used) > 20
    missing = sorted(used - set(widgets))
    assert not missing, f"widgets used in SAMUSSegment.py but not defined in the .ui: {missing}"
    custom = {c.find("class").text for c in root.iter("customwidget")}
    unknown = {cls for cls in widgets.values() if cls not in QT_WIDGETS | custom}
    assert not unknown, f".ui uses widget classes neither Qt nor declared as custom widgets: {unknown}"
    # Qt Designer requires unique object names.
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names))


def test_ui_parameter_bindings_match_the_parameter_node():
    root = ui_tree().getroot()
    bound = {p.find("string").text for p in root.iter("property") if p.get("name") == "SlicerParameterName"}
    tree = module_ast()
    node_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SAMUSSegmentParameterNode")
    fields = {s.target.id for s in node_class.body if isinstance(s, ast.AnnAssign)}
    assert bound == {"inputVolume", "serverUrl", "propagateCount"}
    assert bound <= fields


def test_module_follows_the_scripted_module_template():
    tree = module_ast()
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for name in ("SAMUSSegment", "SAMUSSegmentWidget", "SAMUSSegmentLogic", "SAMUSSegmentTest"):
        assert name in classes, f"missing class {name}"
    test_methods = {f.name for f in classes["SAMUSSegmentTest"].body if isinstance(f, ast.FunctionDef)}
    assert {"runTest", "setUp", "test_cine_clicks_with_server"} <= test_methods
    widget_methods = {f.name for f in classes["SAMUSSegmentWidget"].body if isinstance(f, ast.FunctionDef)}
    assert {"setup", "cleanup", "enter", "exit", "onSceneStartClose", "onSceneEndClose"} <= widget_methods
    assert 'resourcePath("UI/SAMUSSegment.ui")' in MODULE_FILE.read_text()


def test_extension_cmake_has_the_fields_the_extension_wizard_needs():
    text = (EXTENSION_DIR / "CMakeLists.txt").read_text()
    for field in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf"set\(EXTENSION_{field} ", text), f"EXTENSION_{field} missing"
    assert re.search(r'set\(EXTENSION_HOMEPAGE "https?://\S+"\)', text), "EXTENSION_HOMEPAGE must be a URL"
    assert "add_subdirectory(SAMUSSegment)" in text and "## NEXT_MODULE" in text
    assert "Slicer_EXTENSION_GENERATE_CONFIG" in text and "Slicer_EXTENSION_CPACK" in text


def test_module_cmake_lists_every_script_and_resource():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    listed = set(re.findall(r"\$\{MODULE_NAME\}(\S*\.py)", text))
    expected = {"/".join(p.relative_to(MODULE_DIR).parts).replace("SAMUSSegment", "", 1)
                for p in MODULE_DIR.glob("SAMUSSegment*/*.py")} | {".py"}
    assert listed == expected
    for resource in re.findall(r"(Resources/\S+)", text):
        assert (MODULE_DIR / resource.replace("${MODULE_NAME}", "SAMUSSegment")).is_file(), resource
    assert "slicerMacroBuildScriptedModule" in text and "slicer_add_python_unittest" in text
    testing = (MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt").read_text()
    for script in re.findall(r"SCRIPT (\S+)\)", testing):
        assert (MODULE_DIR / "Testing" / "Python" / script).is_file()


def test_icon_is_a_real_png():
    with Image.open(ICON_FILE) as icon:
        icon.verify()
    with Image.open(ICON_FILE) as icon:
        assert icon.format == "PNG" and icon.size[0] == icon.size[1] >= 64
        colours = np.unique(np.asarray(icon.convert("RGB")).reshape(-1, 3), axis=0)
        assert len(colours) > 50  # a picture, not a flat square


def test_shortcuts_are_in_the_help_text_and_unique():
    import helpers_slicer  # noqa: F401
    from SAMUSSegmentLib.shortcuts import SHORTCUTS

    keys = [k for k, _ in SHORTCUTS.values()]
    assert len(keys) == len(set(keys))
    assert "help_lines()" in MODULE_FILE.read_text()
    assert {"nextFrame", "previousFrame", "undo", "propagate"} <= set(SHORTCUTS)
