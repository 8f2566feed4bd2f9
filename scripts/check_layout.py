"""Layout checks for CI: modules over 400 lines, functions over 60 lines of code (docstrings, blank lines and
comments not counted) and import cycles among the modules of lib/samus and monailabel_app.

    python scripts/check_layout.py            # exit status 1 when anything is found
"""
import ast
import io
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"samus": ROOT / "lib" / "samus", "lib": ROOT / "monailabel_app" / "lib"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def code_lines(source: str, node: ast.AST) -> int:
    """Lines of `node` that hold code: no blank lines, comments or docstrings."""
    lines = set()
    text = "\n".join(source.splitlines()[node.lineno - 1:node.end_lineno])
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
            lines.update(range(tok.start[0], tok.end[0] + 1))
    docstrings = set()
    for sub in ast.walk(node):
        body = getattr(sub, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.update(range(body[0].lineno - node.lineno + 1, body[0].end_lineno - node.lineno + 2))
    return len(lines - docstrings)


def module_name(package: str, root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package] + parts)


def imports_of(name: str, path: Path, tree: ast.Module, known) -> set:
    """Modules of the same packages that `name` imports at module level (imports inside functions are
    deferred on purpose and do not form cycles at import time)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.add(full if full in known else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in known and m != name}


def find_cycles(graph) -> list:
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def main() -> int:
    problems, graph, parsed = [], {}, {}
    for package, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            source = path.read_text()
            parsed[module_name(package, root, path)] = (path, source, ast.parse(source))
    for name, (path, source, tree) in parsed.items():
        rel = path.relative_to(ROOT)
        n_lines = len(source.splitlines())
        if n_lines > MAX_MODULE_LINES:
            problems.append(f"{rel}: {n_lines} lines (> {MAX_MODULE_LINES})")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = code_lines(source, node)
                if n > MAX_FUNCTION_LINES:
                    problems.append(f"{rel}:{node.lineno}: {node.name}() has {n} lines of code (> {MAX_FUNCTION_LINES})")
        graph[name] = imports_of(name, path, tree, parsed)
    for cycle in find_cycles(graph):
        problems.append("import cycle: " + " -> ".join(cycle))
    print("\n".join(problems) if problems else f"layout ok ({len(parsed)} modules)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
