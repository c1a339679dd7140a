"""``python -m bench adapter new NAME``: a new in-tree method adapter from the templates.

Writes exactly two files the suite reads (``methods/NAME.py``, ``configs/method/NAME.yaml``)
and one test (``tests/test_method_NAME.py``); edits nothing else. The generated adapter runs as
is, so a contributor starts from a green ``adapter check`` and changes one thing at a time.
"""
from __future__ import annotations

import re
from pathlib import Path
from string import Template

from bench.errors import BenchError
from bench.records import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part) or "Method"


def targets(name: str, root: Path) -> dict[str, Path]:
    return {"adapter.py.tmpl": root / "methods" / f"{name}.py",
            "adapter.yaml.tmpl": root / "configs" / "method" / f"{name}.yaml",
            "test_adapter.py.tmpl": root / "tests" / f"test_method_{name}.py"}


def new_adapter(name: str, root: Path = ROOT) -> list[Path]:
    """Write the adapter module, its config and its test; refuse to overwrite anything."""
    from bench.adapters import config_names

    if not NAME.match(name):
        raise BenchError(f"adapter name '{name}' must be a Python identifier in lower case "
                         "(letters, digits, underscores; e.g. my_method): it names a module")
    if name in config_names("method"):
        raise BenchError(f"method '{name}' exists already; pick another name")
    files = targets(name, Path(root))
    existing = [str(p) for p in files.values() if p.exists()]
    if existing:
        raise BenchError(f"refusing to overwrite {', '.join(existing)}; pick another name")
    values = {"name": name, "cls": _class_name(name)}
    for template, path in files.items():
        text = Template((TEMPLATES / template).read_text(encoding="utf-8")).substitute(values)
        write_text_atomic(path, text)
    return list(files.values())
