"""pip's configuration, said to uv: `make setup` installs with uv, which reads none of pip's.

    eval "$(python tools/pip_to_uv.py [PIP])"; uv pip install ...

prints `export` lines for the package sources pip is configured with (its index, extra indexes,
find-links, constraints and certificate bundle, from pip's configuration files and PIP_*
variables, as `pip config list` shows them; a variable over a file, `install.` over `global.`),
so that uv installs from where pip would, e.g. a local mirror. Nothing when pip sets none.
PIP: the pip to ask [default: pip beside this Python].
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

# pip's setting -> (uv's variable, how uv separates several values: None for one)
UV = {
    "index-url": ("UV_INDEX_URL", None),
    "extra-index-url": ("UV_EXTRA_INDEX_URL", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "constraint": ("UV_CONSTRAINT", " "),
    "cert": ("SSL_CERT_FILE", None),
}
RANK = {"global": 0, "install": 1, ":env:": 2}  # which source wins: pip's own order
LINE = re.compile(r"^(?P<section>[^.]+)\.(?P<key>[a-z-]+)=(?P<value>'.*'|\".*\")$")


def pip_settings(listing: str) -> dict[str, list[str]]:
    """The values of UV's settings in `pip config list` output (several values split on
    whitespace, as pip splits them)."""
    found: dict[str, tuple[int, list[str]]] = {}
    for line in listing.splitlines():
        match = LINE.match(line.strip())
        if not match or match["key"] not in UV or match["section"] not in RANK:
            continue
        rank, values = RANK[match["section"]], ast.literal_eval(match["value"]).split()
        if values and rank >= found.get(match["key"], (-1, []))[0]:
            found[match["key"]] = rank, values
    return {key: values for key, (_, values) in found.items()}


def exports(settings: dict[str, list[str]]) -> list[str]:
    """`export NAME=value` lines for uv."""
    lines = []
    for key, values in settings.items():
        name, separator = UV[key]
        lines.append(f"export {name}={shlex.quote(values[0] if separator is None else separator.join(values))}")
    return lines


def main() -> None:
    pip = sys.argv[1] if len(sys.argv) > 1 else str(Path(sys.executable).with_name("pip"))
    listing = subprocess.run([pip, "config", "list"], capture_output=True, text=True).stdout
    print("\n".join(exports(pip_settings(listing))))


if __name__ == "__main__":
    main()
