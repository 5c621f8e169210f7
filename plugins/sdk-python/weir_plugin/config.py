"""Reading a plugin's ``config`` table: the host passes it as JSON.

:class:`Settings` refuses unknown keys (so a typo is reported, not
ignored) and reads each value with an error that names its key; durations
and sizes are read as the host reads its own pipeline files: ``"1s"``,
``"250ms"``, ``"1.5s"``, ``"64MiB"`` or a whole number (ms, bytes).
"""

import json
import re
from typing import Any, Iterable, List, Mapping, Optional, Union

_NUMBER_UNIT = re.compile(r"^\s*([0-9.]*)\s*(.*?)\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_BYTES = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 10**6, "mb": 10**6,
    "mib": 1 << 20, "g": 10**9, "gb": 10**9, "gib": 1 << 30,
}


def _number_and_unit(text: str, what: str, example: str):
    m = _NUMBER_UNIT.match(text)
    try:
        return float(m.group(1)), m.group(2)
    except (AttributeError, ValueError):
        raise ValueError(
            f"invalid {what} {json.dumps(text)}: expected a number and a unit, like {example}"
        ) from None


def parse_duration_ms(value: Union[str, int]) -> int:
    """Milliseconds of ``"1s"``, ``"250ms"``, ``"1.5s"``, ``"2m"``, ``"1h"``,
    ``"1d"`` or a whole number of milliseconds."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, int) and value < 0):
        raise ValueError('expected a duration like "1s" or "250ms", or a whole number of milliseconds')
    if isinstance(value, int):
        return value
    n, unit = _number_and_unit(value, "duration", '"1s" or "250ms"')
    if unit not in _SECONDS:
        raise ValueError(
            f"invalid duration {json.dumps(value)}: unknown unit {json.dumps(unit)} (use ms, s, m, h or d)"
        )
    # Nanoseconds first, then rounded to the nearest millisecond, as the host does.
    return (round(n * _SECONDS[unit] * 1e9) + 500_000) // 1_000_000


def parse_bytes(value: Union[str, int]) -> int:
    """Bytes of ``"64MiB"``, ``"512KiB"``, ``"1GB"`` or a whole number."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError('expected a size like "64MiB", or a whole number of bytes')
    if isinstance(value, int):
        return value
    n, unit = _number_and_unit(value, "size", '"64MiB"')
    scale = _BYTES.get(unit.lower())
    if scale is None:
        raise ValueError(
            f"invalid size {json.dumps(value)}: unknown unit {json.dumps(unit)} (use B, KiB, MiB, GiB, KB, MB or GB)"
        )
    return round(n * scale)


_MISSING = object()


class Settings:
    """A stage's config table, read key by key.

    ``Settings(config, ["window", "key"])`` refuses any other key; each
    getter returns the default when the key is absent and raises
    ``ValueError`` naming the key when its value is of the wrong kind.
    """

    def __init__(self, config: Union[str, Mapping[str, Any], None], keys: Iterable[str]) -> None:
        if config is None or (isinstance(config, str) and not config.strip()):
            config = {}
        if isinstance(config, str):
            try:
                config = json.loads(config)
            except ValueError as e:
                raise ValueError(f"config is not JSON: {e}") from None
        if not isinstance(config, Mapping):
            raise ValueError("config must be a table")
        self.keys = list(keys)
        for k in config:
            if k not in self.keys:
                expected = (
                    "expected one of " + ", ".join(f"`{k}`" for k in self.keys)
                    if self.keys
                    else "this plugin takes no settings"
                )
                raise ValueError(f"unknown field `{k}`, {expected}")
        self.values = dict(config)

    def _get(self, key: str, default: Any, check, kind: str) -> Any:
        value = self.values.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        try:
            return check(value)
        except (TypeError, ValueError) as e:
            why = str(e) or f"expected {kind}"
            raise ValueError(f"`{key}`: {why}") from None

    def raw(self, key: str, default: Any = None) -> Any:
        """The value as JSON decoded it."""
        return self.values.get(key, default)

    def string(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """A text value."""
        return self._get(key, default, lambda v: v if isinstance(v, str) else _fail("a string"), "a string")

    def strings(self, key: str, default: Optional[List[str]] = None) -> Optional[List[str]]:
        """A list of texts."""
        def check(v):
            if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
                _fail("a list of strings")
            return list(v)
        return self._get(key, default, check, "a list of strings")

    def integer(self, key: str, default: Optional[int] = None) -> Optional[int]:
        """A whole number."""
        return self._get(
            key, default,
            lambda v: v if isinstance(v, int) and not isinstance(v, bool) else _fail("a whole number"),
            "a whole number",
        )

    def number(self, key: str, default: Optional[float] = None) -> Optional[float]:
        """A number."""
        return self._get(
            key, default,
            lambda v: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else _fail("a number"),
            "a number",
        )

    def boolean(self, key: str, default: Optional[bool] = None) -> Optional[bool]:
        """``true`` or ``false``."""
        return self._get(key, default, lambda v: v if isinstance(v, bool) else _fail("true or false"), "a boolean")

    def choice(self, key: str, choices: List[str], default: str) -> str:
        """One of ``choices``."""
        def check(v):
            if v not in choices:
                listed = ", ".join(f"`{c}`" for c in choices)
                raise ValueError(f"unknown variant `{v}`, expected one of {listed}")
            return v
        return self._get(key, default, check, "one of " + ", ".join(choices))

    def duration_ms(self, key: str, default: Optional[int] = None) -> Optional[int]:
        """A duration in milliseconds (see :func:`parse_duration_ms`)."""
        return self._get(key, default, parse_duration_ms, "a duration")

    def bytes(self, key: str, default: Optional[int] = None) -> Optional[int]:
        """A size in bytes (see :func:`parse_bytes`)."""
        return self._get(key, default, parse_bytes, "a size")


def _fail(kind: str):
    raise ValueError(f"expected {kind}")
