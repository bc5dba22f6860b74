"""Where the stage configs live after a plain install: inside the package (``xtra/configs``; the repository's
``configs/`` is a link to it)."""

from __future__ import annotations

from pathlib import Path

SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"


def resolve_config(path: str) -> str:
    """``configs/<family>/<stage>.yaml`` from anywhere: the file itself if it exists, else the copy shipped in the
    package (a plain install has no repository around it). Any other missing path is left for the parser to
    report."""
    if Path(path).exists() or not Path(path).parts[:1] == ("configs",):
        return path
    shipped = SHIPPED_CONFIGS.joinpath(*Path(path).parts[1:])
    return str(shipped) if shipped.exists() else path


def with_shipped_configs(argv: list[str]) -> list[str]:
    """Every ``-c``/``--config`` value resolved by :func:`resolve_config`."""
    out, take = [], False
    for arg in argv:
        if take:
            out.append(resolve_config(arg))
            take = False
        elif arg in ("-c", "--config"):
            out.append(arg)
            take = True
        elif arg.startswith("--config="):
            out.append("--config=" + resolve_config(arg.split("=", 1)[1]))
        else:
            out.append(arg)
    return out
