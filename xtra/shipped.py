"""Where the stage configs live after a plain install (inside the package: ``xtra/configs``; the repository's
``configs/`` is a link to it), and how an overlay config brings in the config it changes.

An overlay starts with ``# extends: <path relative to the overlay>``; ``-c overlay.yaml`` then reads as
``-c base.yaml -c overlay.yaml`` (bases of bases too), unless the base already came earlier on the command line —
so ``-c xtra.yaml -c mine.yaml -c no-task-weights.yaml`` keeps ``mine.yaml``'s changes.
"""

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


EXTENDS = "# extends:"


def base_of(path: str) -> str | None:
    """The config an overlay extends (its ``# extends:`` line among the leading comments), or ``None``."""
    try:
        with open(path) as f:
            for line in f:
                if not line.startswith("#"):
                    return None
                if line.startswith(EXTENDS):
                    return str(Path(path).parent / line[len(EXTENDS) :].strip())
    except OSError:
        return None
    return None


def config_chain(path: str) -> list[str]:
    """``path`` preceded by the configs it extends, outermost base first."""
    chain = [path]
    while (base := base_of(chain[0])) is not None:
        if any(Path(base).resolve() == Path(p).resolve() for p in chain):
            raise ValueError(f"{path}: its '{EXTENDS}' lines form a cycle through {base}")
        if not Path(base).is_file():
            raise ValueError(f"{chain[0]} extends {base}, which does not exist: fix its '{EXTENDS}' line")
        chain.insert(0, base)
    return chain


def with_shipped_configs(argv: list[str]) -> list[str]:
    """Every ``-c``/``--config`` value resolved by :func:`resolve_config` and preceded by the bases it extends
    (those not already given earlier)."""
    out: list[str] = []
    given: set[Path] = set()

    def add(value: str, flag: str | None) -> None:
        for path in config_chain(resolve_config(value)):
            key = Path(path).resolve()
            if key in given:
                continue
            given.add(key)
            out.extend([flag, path] if flag else [f"--config={path}"])

    take = None
    for arg in argv:
        if take:
            add(arg, take)
            take = None
        elif arg in ("-c", "--config"):
            take = arg
        elif arg.startswith("--config="):
            add(arg.split("=", 1)[1], None)
        else:
            out.append(arg)
    return out


def merged(*overlays: dict) -> dict:
    """Mappings merged left to right (nested mappings merged, any other value replaced), as repeated ``-c`` do;
    the arguments are not changed."""
    out: dict = {}
    for overlay in overlays:
        for key, value in overlay.items():
            both = isinstance(value, dict) and isinstance(out.get(key), dict)
            out[key] = merged(out[key], value) if both else (merged(value) if isinstance(value, dict) else value)
    return out


def nested(path: tuple[str, ...], values: dict) -> dict:
    """``values`` placed at ``path`` (``("data", "init_args")`` → ``{"data": {"init_args": values}}``)."""
    for key in reversed(path):
        values = {key: values}
    return values


def composed_yaml(path: str) -> dict:
    """The keys a config and its bases set (bases first, merged as repeated ``-c`` merge them), without the
    defaults the CLI adds: enough to read a config's structure without building the parser."""
    import yaml

    parts = []
    for part in config_chain(resolve_config(path)):
        with open(part) as f:
            parts.append(yaml.safe_load(f) or {})
    return merged(*parts)


def online_data_path(cfg: dict) -> tuple[str, ...]:
    """Where a composed config keeps the online datamodule's settings: under ``target`` when the data mixes the
    online game with offline ones, else in the data's own ``init_args``."""
    init = (cfg.get("data") or {}).get("init_args") or {}
    return ("data", "init_args", "target", "init_args") if "target" in init else ("data", "init_args")


def online_data_key(cfg: dict) -> str:
    """:func:`online_data_path` as a command-line override prefix."""
    return "--" + ".".join(online_data_path(cfg))
