"""The layout rules of the code base (scripts/check_layout.py): modules <= 400 lines, functions <= 60 lines
of code, no import cycles in lib/samus and monailabel_app."""
import ast
import importlib.util
import subprocess
import sys

from repo_paths import ROOT


def _checker():
    spec = importlib.util.spec_from_file_location("check_layout", ROOT / "scripts" / "check_layout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_code_base_keeps_its_layout_rules():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_layout.py")], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("layout ok"), run.stdout + run.stderr


def test_the_checker_counts_code_not_docstrings_and_finds_cycles():
    check = _checker()
    body = "\n".join(f"    x{i} = {i}  # note" for i in range(61))
    source = f'def long():\n    """Doc\n\n    string."""\n\n{body}\n'
    assert check.code_lines(source, ast.parse(source).body[0]) == 62  # the def line and 61 statements
    assert check.find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert check.find_cycles({"a": {"b"}, "b": set()}) == []
