"""`make setup` installs with uv from the package sources pip is configured with
(tools/pip_to_uv.py): what a user's pip.conf or PIP_* variables name reaches uv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "pip_to_uv.py"


def uv_environment(listing: str, tmp_path: Path) -> dict[str, str]:
    """The variables the script exports, given a pip whose `pip config list` prints `listing`."""
    (tmp_path / "listing.txt").write_text(listing)
    pip = tmp_path / "pip"
    pip.write_text(f"#!/bin/sh\ncat {tmp_path / 'listing.txt'}\n")
    pip.chmod(0o755)
    shell = f'eval "$({sys.executable} {SCRIPT} {pip})" && env -0'
    out = subprocess.run(["bash", "-c", shell], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         check=True).stdout
    return {k: v for k, _, v in (e.partition("=") for e in out.split("\0") if e) if k.startswith(("UV_", "SSL_"))}


def test_pips_sources_reach_uv_with_a_variable_over_a_file_and_install_over_global(tmp_path):
    listing = "\n".join([
        ":env:.default-timeout='180'",  # not a package source: left alone
        "global.extra-index-url='http://a/simple http://b/simple'",
        "install.extra-index-url='http://c/simple'",
        ":env:.extra-index-url='\\nhttp://d/simple\\nhttp://e/simple'",  # one per line, as pip.conf often has them
        "global.index-url='http://mirror/simple'",
        "global.find-links='/opt/wheels /srv/wheels'",
        "global.constraint='/etc/pip/constraints.txt'",
        ":env:.cert='/etc/ssl/certs/ca.pem'",
    ])
    assert uv_environment(listing, tmp_path) == {
        "UV_EXTRA_INDEX_URL": "http://d/simple http://e/simple",
        "UV_INDEX_URL": "http://mirror/simple",
        "UV_FIND_LINKS": "/opt/wheels,/srv/wheels",  # uv separates these with commas
        "UV_CONSTRAINT": "/etc/pip/constraints.txt",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca.pem",
    }


def test_a_pip_without_settings_leaves_uv_to_its_defaults(tmp_path):
    assert uv_environment("", tmp_path) == {}
    assert uv_environment("global.extra-index-url=''\n", tmp_path) == {}
