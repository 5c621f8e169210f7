"""Versioned plugin state: ``{"version":N,...}`` as JSON, so a build that
changes its layout refuses old snapshots with a reason instead of misreading
them (the layout the Rust SDK writes)."""

import json
from typing import Any, Dict


def save_state(version: int, state: Dict[str, Any]) -> bytes:
    """Saves ``state`` (a dict of JSON values) with its layout version."""
    return json.dumps({"version": version, **state}, separators=(",", ":")).encode()


def load_state(version: int, data: bytes) -> Dict[str, Any]:
    """Reads state saved by :func:`save_state` with the same version;
    raises ``ValueError`` with the reason otherwise."""
    try:
        saved = json.loads(bytes(data).decode("utf-8"))
    except ValueError as e:
        raise ValueError(f"unreadable state: {e}") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("version"), int):
        raise ValueError("unreadable state: no version")
    if saved["version"] != version:
        raise ValueError(
            f"state version {saved['version']} is not supported (this build reads version {version})"
        )
    return saved
