"""Hydra's and OmegaConf's error text, made into one line for the user: the only module that reads
it, so that a Hydra upgrade that rewords its errors breaks the CLI's messages here and nowhere else
(tests/cli/test_bad_input.py pins every message)."""

from __future__ import annotations


def one_line(ex: BaseException) -> str | None:
    """Hydra/OmegaConf composition errors condensed to one line; None for anything else."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(ex, (HydraException, OmegaConfBaseException)):
        return None
    lines, options = [], []
    for chain in (ex, ex.__cause__):
        if chain is None:
            continue
        for line in str(chain).splitlines():
            if line.startswith("Config search path"):
                break
            if line.startswith("\t"):
                options.append(line.strip())
            elif line.strip() and not line.startswith(("    full_key", "    object_type", "full_key", "object_type")):
                lines.append(line.strip())
    text = " ".join(lines)
    if options:
        text += " " + ", ".join(options)
    for launcher, plugin in (("joblib", "hydra-joblib-launcher"), ("submitit", "hydra-submitit-launcher")):
        if f"hydra/launcher/{launcher}" in text:
            return f"this launcher needs the {plugin} plugin: pip install 'ics-study[cluster]'"
    return text


def quote_home(arg: str) -> str:
    """``key=~/x`` -> ``key='~/x'``: Hydra's grammar refuses a bare '~' (shells like zsh leave it)."""
    key, sep, value = arg.partition("=")
    if sep and value.startswith("~") and not arg.startswith("-"):
        return f"{key}='{value}'"
    return arg


def culprit(args: list[str]) -> str | None:
    """The first override that Hydra's grammar cannot parse as key=value, if any."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for arg in args:
        if arg.startswith("-"):
            continue
        try:
            if "=" not in arg or not parser.parse_overrides([arg])[0].key_or_group:
                return arg
        except Exception:
            return arg
    return None


def malformed(args: list[str], error: Exception, line: str | None) -> str | None:
    """One line for an override Hydra could not parse (its own message names no key, or it raised a
    bare ValueError): name the override and the form it should take."""
    from hydra.errors import OverrideParseException

    if line is not None and not isinstance(error, OverrideParseException):
        return line
    found = culprit(args)
    if found is not None:
        return f"the override {found!r} is malformed; write key=value (e.g. optim.lr=0.05 or model=vgg_bn)"
    if line is not None:
        return line
    first = (str(error).splitlines() or [type(error).__name__])[0]
    return f"the overrides were refused ({first}); check them against `ics-study train --help`"
