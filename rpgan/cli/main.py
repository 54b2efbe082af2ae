"""The `rpgan` program: the root group and the one place that turns errors into exit codes.

The commands come from the packages that own them: each is an entry point of the group
`rpgan.commands` (pyproject.toml), rpgan's own (train, sample, ...), analysis's and sweeps'. The
core imports neither of the packages above it, and a command's module is imported only when
that command runs (or `--help` lists them all). A package adds a command by listing it there.
"""

from __future__ import annotations

import errno
import sys
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from rpgan.errors import RemoteError, UserError

import click

GROUP = "rpgan.commands"


@cache
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            raise UserError(f"two installed packages define `rpgan {ep.name}` ({found[ep.name].value} and "
                            f"{ep.value}); uninstall one")
        found[ep.name] = ep
    if not found:
        raise UserError(f"no rpgan commands are installed (entry points {GROUP}); run `make setup` or "
                        "`pip install -e .` in the project")
    return found


class Commands(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_entry_points())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        ep = _entry_points().get(name)
        return ep.load() if ep else None


@click.group(cls=Commands, epilog="\b\nQuick start:\n  rpgan train --steps 200 --out runs/first\n"
             "  rpgan analyze --ckpt runs/first --workers 0\nThe guide: README.md and docs/.")
@click.version_option(package_name="rpgan")
def cli() -> None:
    """RPGAN: random paths as a GAN's latent space (Voynov & Babenko, arXiv 1912.10920)."""


# OSError numbers that `main` reports in one line (see there).
USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EEXIST,
               errno.EISDIR, errno.ENAMETOOLONG}


def main() -> None:
    """Entry point: every user error is one line on stderr and exit code 2; a failure of remote
    storage is one line and exit code 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.UsageError as e:
        command = e.ctx.command_path if e.ctx else "rpgan"
        click.echo(f"{command}: {e.format_message()} (see {command} --help)", err=True)
        sys.exit(2)
    except UserError as e:
        click.echo(f"rpgan: {e}", err=True)
        sys.exit(2)
    except RemoteError as e:
        click.echo(f"rpgan: {e}", err=True)
        sys.exit(1)
    except click.Abort:
        click.echo("rpgan: interrupted", err=True)
        sys.exit(130)
    except OSError as e:
        # Only conditions of the file system the user points rpgan at (--out, --storage, --ckpt):
        # a read-only or full disk, no permission, a path through a regular file, a name too long.
        # They carry a path and the user can act on them; any other OSError (ENOENT of a file
        # rpgan itself wrote, EIO, ...) may be a bug and keeps its traceback.
        if e.errno not in USER_ERRNOS:
            raise
        where = f"{e.filename}: " if e.filename else ""  # pyarrow.fs errors name the path in strerror
        reason = " ".join(str(e.strerror or e).split())
        click.echo(f"rpgan: {where}{reason}; check that path, or choose another --out or --storage", err=True)
        sys.exit(2)
