"""Hold every function of tinyllm to at most 60 lines (STYLE.md), with a written allow-list.

A function's length is its lines from ``def`` to its last line, without its decorators
and without its docstring (the docstrings STYLE.md asks for list every argument; they are
documentation, not logic to read). A nested function counts inside the one that holds it
too. Every module of the package is read, ``sdk/suite`` and ``sdk/facade`` included (the
folder -> package mapping comes from pyproject.toml).

A function over the limit fails the check unless ``ALLOWED`` names it with its length and
the reason it stays long; it then fails when it grows past that length, and the entry
fails as stale once the function is back under the limit (or gone), so the list only
shrinks. ``tinyllm.api`` is held to 40 lines, with no exceptions.

    python .ci/function_length.py          # list offenders, exit 1 on any
    python .ci/function_length.py --all    # also print every function over 40 lines
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

from import_cycles import ROOT, module_files

LIMIT = 60
FACADE_LIMIT = 40  # api.py is re-exports and forwarding
FACADE = "tinyllm.api"

# "module.qualname" -> (its length now, why it stays long). Keep the reasons honest:
# an entry is a debt with a reason, not a waiver.
ALLOWED: dict[str, tuple[int, str]] = {}


@dataclass(frozen=True)
class Function:
    """One function: where it is and how long it is."""

    name: str  # module.qualname
    path: Path
    line: int
    length: int


def function_length(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the end, less the docstring."""
    assert node.end_lineno is not None
    length = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
        and len(node.body) > 1  # a function that is only a docstring is its own body
    ):
        assert first.end_lineno is not None
        length -= first.end_lineno - first.lineno + 1
    return length


def functions(module: str, path: Path) -> list[Function]:
    """Every function and method in ``path``, nested ones included, named by qualname."""
    found: list[Function] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}.{child.name}"
                found.append(Function(name, path, child.lineno, function_length(child)))
                visit(child, name)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}.{child.name}")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(), filename=str(path)), module)
    return found


def problems(
    root: Path = ROOT, allowed: dict[str, tuple[int, str]] | None = None
) -> tuple[list[str], list[Function]]:
    """What breaks the rule (one line each), and every function of the package."""
    allowed = ALLOWED if allowed is None else allowed
    every = [f for module, path in module_files(root).items() for f in functions(module, path)]
    lengths = {f.name: f for f in every}
    found = []
    for f in every:
        where = f"{f.path.relative_to(root)}:{f.line} {f.name.rsplit('.', 1)[-1]}"
        if f.name.startswith(FACADE + ".") and f.length > FACADE_LIMIT:
            found.append(f"{where}: {f.length} lines, over {FACADE_LIMIT} in {FACADE}")
        elif f.length > LIMIT and f.name not in allowed:
            found.append(f"{where}: {f.length} lines, over {LIMIT} (split it, or list it)")
        elif f.name in allowed and f.length > allowed[f.name][0]:
            found.append(f"{where}: {f.length} lines, grew past its allowed {allowed[f.name][0]}")
    for name in sorted(allowed):
        if name not in lengths or lengths[name].length <= LIMIT:
            found.append(f"allow-list entry {name} is stale: remove it")
    return found, every


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="print every function over 40")
    args = parser.parse_args(argv)
    found, every = problems()
    if args.all:
        for f in sorted(every, key=lambda f: -f.length):
            if f.length > FACADE_LIMIT:
                print(f"{f.length:4d} {f.path.relative_to(ROOT)}:{f.line} {f.name}")
    longest = max(every, key=lambda f: f.length)
    over = sum(f.length > LIMIT for f in every)
    print(
        f"functions {len(every)}, over {LIMIT} lines {over} (allowed {len(ALLOWED)}), "
        f"longest {longest.length} ({longest.name})"
    )
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
