"""Count import cycles among tinyllm's modules, statically.

Every module of the package is parsed (the folder -> package mapping comes from
pyproject.toml); every import statement counts, at module level, inside functions and
under ``if TYPE_CHECKING``, since a function-local import hides a cycle without removing
it. An edge runs from a module to each tinyllm module it names; the implicit import of
parent packages is not an edge (the same graph import-linter builds).

Prints the cyclic groups (strongly connected components with more than one module), the
modules in them, the two-module cycles, and the number of elementary cycles (capped).
``--max N`` exits 1 when there are more than N elementary cycles, so CI can hold a count.

    python .ci/import_cycles.py            # report
    python .ci/import_cycles.py --max 0    # fail on any cycle
"""

from __future__ import annotations

import argparse
import ast
import sys
import tomllib
from collections.abc import Collection, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CYCLE_CAP = 100_000


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Map each module name (``tinyllm.runtime.engine``) to its source file."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    package_dir: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    files: dict[str, Path] = {}
    for package, folder in package_dir.items():
        for path in sorted((root / folder).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            files[name] = path
    return files


def imported_names(
    tree: ast.AST, module: str, is_package: bool, modules: Collection[str]
) -> Iterator[str]:
    """The dotted name each import statement in ``tree`` refers to."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join([*parts[:keep], *([base] if base else [])])
            for alias in node.names:
                # `from tinyllm import api` names the module tinyllm.api when there is one
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """The static import graph: module -> the package modules it imports."""
    files = module_files(root)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for target in imported_names(tree, name, path.stem == "__init__", files):
            if target in files and target != name:
                graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, each sorted, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def count_cycles(graph: dict[str, set[str]], cap: int = CYCLE_CAP) -> int:
    """Elementary cycles, counted once each (rooted at their smallest module), up to ``cap``."""
    order = sorted(graph)
    rank = {name: i for i, name in enumerate(order)}
    count = 0
    for root in order:
        # Depth-first over simple paths from root through larger-ranked modules only.
        path_set = {root}
        work = [iter(sorted(graph[root]))]
        path = [root]
        while work:
            child = next(work[-1], None)
            if child is None:
                work.pop()
                path_set.discard(path.pop())
                continue
            if child == root:
                count += 1
                if count >= cap:
                    return count
            elif rank[child] > rank[root] and child not in path_set:
                path.append(child)
                path_set.add(child)
                work.append(iter(sorted(graph[child])))
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=None, help="fail above this many cycles")
    parser.add_argument("--quiet", action="store_true", help="print only the counts")
    args = parser.parse_args(argv)
    graph = import_graph()
    groups = [c for c in strongly_connected(graph) if len(c) > 1]
    pairs = sorted((a, b) for a in graph for b in graph[a] if a < b and a in graph[b])
    cycles = count_cycles(graph)
    if not args.quiet:
        for group in sorted(groups, key=len, reverse=True):
            print(f"cyclic group of {len(group)}: {' '.join(group)}")
        for a, b in pairs:
            print(f"two-module cycle: {a} <-> {b}")
    capped = "+" if cycles >= CYCLE_CAP else ""
    print(
        f"modules {len(graph)}, cyclic groups {len(groups)}, modules in cycles "
        f"{sum(map(len, groups))}, two-module cycles {len(pairs)}, "
        f"elementary cycles {cycles}{capped}"
    )
    if args.max is not None and cycles > args.max:
        print(f"too many import cycles: {cycles} > {args.max}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
