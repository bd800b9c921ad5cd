"""Enforce DESIGN §4: imports go one way.

cli/api/jobs → core → redundancy, spaces, meta, keys → errors, types.
Protocol code (api/*) may not import meta or spaces; core may not import a
web framework.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "jointcloud"

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "api": ("jointcloud.meta", "jointcloud.spaces", "jointcloud.redundancy.stream"),
    "core": ("fastapi", "starlette", "uvicorn", "jointcloud.api", "jointcloud.cli", "httpx"),
    "meta": ("jointcloud.api", "jointcloud.cli", "jointcloud.jobs", "fastapi", "starlette"),
    "spaces": ("jointcloud.core", "jointcloud.meta", "jointcloud.api", "jointcloud.redundancy"),
    "redundancy": ("jointcloud.core", "jointcloud.meta", "jointcloud.api", "fastapi"),
    "keys": ("jointcloud.core", "jointcloud.meta", "jointcloud.api", "fastapi"),
}


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def main() -> int:
    bad = []
    for layer, banned in FORBIDDEN.items():
        for path in (ROOT / layer).rglob("*.py"):
            for name in imports(path):
                if any(name == b or name.startswith(b + ".") for b in banned):
                    bad.append(f"{path.relative_to(ROOT.parent)}: imports {name}")
    for line in bad:
        print(line)
    print(f"layer check: {len(bad)} violations")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
