"""mkdocs hooks of the reds_jax documentation site (``hooks:`` in ``mkdocs.yml``).

* ``{{ table FILE rows=PATH columns=FIELD:Label,... [where=FIELD=VALUE;...] [digits=N] }}`` in a
  page becomes a Markdown table read from the JSON file ``FILE`` (relative to the repository root)
  at build time, with a caption naming the file, the commit and date of its run (the JSON's own
  ``commit`` / ``date`` fields, else the last git commit that changed the file) and its ``machine``.
  ``PATH`` and ``FIELD`` are dot-separated keys (list indices are numbers); ``rows`` must lead to a
  list (one row per element) or a dict (one row per value, or per value of ``keys=A,B,...`` in
  that order; its key is the field ``_key``). A
  missing file, or a field no row has, stops the build, so a guide never shows a number its JSON
  no longer has (a field only some rows have is a dash in the others).
* Images of ``benchmarks/results`` that the guides show are copied into the site.
* The docstrings' Sphinx roles (``:func:`~reds_jax.traverse```) are shown as code (``traverse``).
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import subprocess
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[1]
MARKER = re.compile(r"\{\{\s*table\s+(.+?)\}\}", re.DOTALL)
# a Sphinx cross-reference role of a docstring, as Markdown renders it: :func:`~a.b.c` -> `c`
ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):<code>(~?)([^<]*)</code>")
IMAGES = (
    "benchmarks/results/faces/hair.png",
    "benchmarks/results/rooms/oracle_sofa_pixels.png",
)
_MISSING = object()


def on_files(files, config):
    """Adds the benchmark images the guides show (they live outside ``docs/``)."""
    for name in IMAGES:
        files.append(File(name, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replaces every ``{{ table ... }}`` marker of a page by its table."""
    where = page.file.src_uri

    def replace(match: re.Match) -> str:
        try:
            return table(match.group(1))
        except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
            raise PluginError(f"{where}: table marker {match.group(0)!r}: {err}") from err

    return MARKER.sub(replace, markdown)


def on_page_content(html: str, page, config, files) -> str:
    """Renders the docstrings' Sphinx roles (``:func:`x```) as plain code, as Sphinx shows them."""
    return ROLE.sub(lambda m: f"<code>{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}</code>", html)


def lookup(value: Any, path: str) -> Any:
    """``value`` at the dot-separated ``path`` (empty: ``value`` itself), or ``_MISSING``."""
    for part in path.split(".") if path else ():
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif (
            isinstance(value, list)
            and part.lstrip("-").isdigit()
            and -len(value) <= int(part) < len(value)
        ):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def cell(value: Any, digits: int) -> str:
    """One table cell: floats to ``digits`` significant digits, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):  # significant digits; large values whole
        return f"{value:.0f}" if abs(value) >= 10 ** (digits - 1) else f"{value:.{digits}g}"
    if isinstance(value, list):
        return ", ".join(cell(v, digits) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def provenance(path: pathlib.Path, data: Any) -> str:
    """Commit and date of the run recorded in ``data``, else of the file's last git commit."""
    commit = data.get("commit") if isinstance(data, dict) else None
    date = data.get("date") if isinstance(data, dict) else None
    if not (commit and date):
        try:
            out = subprocess.run(
                ["git", "log", "-1", "--format=%h %cs", "--", str(path.relative_to(ROOT))],
                cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
            ).stdout.split()  # fmt: skip
        except OSError:
            out = []
        if len(out) == 2:
            commit, date = commit or out[0], date or out[1]
    if not (commit and date):
        return "commit and date not recorded"
    return f"commit `{str(commit)[:7]}`, {date}"


def table(spec: str) -> str:
    """The Markdown table (and caption) of one marker's ``spec``."""
    words = shlex.split(spec)
    name, args = words[0], dict(w.split("=", 1) for w in words[1:])
    unknown = set(args) - {"rows", "keys", "columns", "where", "digits"}
    if unknown:
        raise ValueError(
            f"unknown argument(s) {sorted(unknown)}; use rows, keys, columns, where, digits"
        )
    path = ROOT / name
    data = json.loads(path.read_text())
    rows = lookup(data, args.get("rows", ""))
    if rows is _MISSING:
        raise KeyError(f"{name} has no {args.get('rows')!r}")
    if isinstance(rows, dict) and "keys" in args:  # these rows of a dict, in this order
        rows = {k: rows[k] for k in args["keys"].split(",")}
    if isinstance(rows, dict) and (args.get("rows") or "keys" in args):
        rows = [
            dict(v, _key=k) if isinstance(v, dict) else {"_key": k, "value": v}
            for k, v in rows.items()
        ]
    elif not isinstance(rows, list):
        rows = [rows]
    for condition in filter(None, args.get("where", "").split(";")):
        field, wanted = condition.split("=", 1)
        rows = [r for r in rows if str(lookup(r, field)) == wanted]
    if not rows:
        raise ValueError(f"no rows of {name} match {args.get('where')!r}")
    columns = [c.split(":", 1) if ":" in c else (c, c) for c in args["columns"].split(",")]
    digits = int(args.get("digits", 3))
    lines = ["| " + " | ".join(label for _, label in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    table_values = [[lookup(row, field) for field, _ in columns] for row in rows]
    for i, (field, _) in enumerate(columns):  # a field no row has is a stale guide
        if all(values[i] is _MISSING for values in table_values):
            raise KeyError(f"no row of {name} has the field {field!r}")
    for values in table_values:
        cells = [None if v is _MISSING else v for v in values]
        lines.append("| " + " | ".join(cell(v, digits) for v in cells) + " |")
    machine = data.get("machine") if isinstance(data, dict) else None
    where = f"; {cell(machine, digits)}" if isinstance(machine, str) else ""
    caption = f"*Read from `{name}` at build time ({provenance(path, data)}{where}).*"
    return "\n".join(lines) + "\n\n" + caption + "\n"
