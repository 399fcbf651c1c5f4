"""Writing Hydra command-line overrides from request values, safely.

A value taken from a request must reach the pipeline as exactly that value: the string "150" must
stay a string, a path with spaces must stay one token, and no quote, space or `${...}` may change
the meaning of the override. Two layers parse what we write: `shlex.split` (the Project's
`overrides` parameter is one string) and then Hydra's override grammar.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser

# Values left unquoted when Hydra reads them back as the same string: readable parameters in
# the MLflow UI, and no shell quoting either (every character is also shlex-safe).
_PLAIN_STRING = re.compile(r"[A-Za-z0-9_/.][A-Za-z0-9_\-./:@%+]*")
# Backslashes right before a quote (or at the end) are escapes in Hydra's quoted strings.
_BACKSLASHES_BEFORE_QUOTE = re.compile(r'(\\*)("|$)')

_parser = OverridesParser.create()


class UnsafeOverrideValue(ValueError):
    """A value that cannot be passed to the pipeline as a plain literal."""


def hydra_value(value: object) -> str:
    """The Hydra literal that parses back to `value` (a str, int, float, bool or None)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnsafeOverrideValue(f"{value} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        return _hydra_string(value)
    raise UnsafeOverrideValue(
        f"expected a number, string, boolean or null, got {type(value).__name__}"
    )


def _hydra_string(text: str) -> str:
    if "${" in text:
        # OmegaConf would resolve it after composition (e.g. ${oc.env:SECRET}).
        raise UnsafeOverrideValue("interpolations (${...}) are not allowed")
    if any(ord(char) < 32 for char in text):
        raise UnsafeOverrideValue("control characters are not allowed")
    if _PLAIN_STRING.fullmatch(text) and _parses_to(text, text):
        return text

    def escape(match: re.Match[str]) -> str:
        backslashes, quote = match.group(1), match.group(2)
        return backslashes * 2 + ('\\"' if quote else "")

    return '"' + _BACKSLASHES_BEFORE_QUOTE.sub(escape, text) + '"'


def _parses_to(literal: str, expected: object) -> bool:
    try:
        parsed = _parser.parse_override(f"k={literal}").value()
    except Exception:
        return False
    return type(parsed) is type(expected) and parsed == expected


def hydra_override(key: str, value: object, *, force_add: bool = False) -> str:
    """`key=value` (or `++key=value`, which also adds a key missing from the config)."""
    return f"{'++' if force_add else ''}{key}={hydra_value(value)}"


def join_overrides(overrides: Sequence[str]) -> str:
    """One string for the Project's `overrides` parameter; `split_overrides` reverses it."""
    return " ".join(shlex.quote(override) for override in overrides)


def split_overrides(overrides: str) -> list[str]:
    """How the pipeline entry point splits the `overrides` parameter."""
    return shlex.split(overrides)
