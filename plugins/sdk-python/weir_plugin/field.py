"""Which part of an event a plugin reads: the whole value, a top-level field
of a JSON object, or a column of a CSV row; read as the Rust SDK reads them,
so a plugin gives the same answer in either language."""

import json
from decimal import Decimal
from typing import List, Optional, Sequence

from .batch import Event

# Unicode White_Space, which the Rust SDK trims (Python's own strip() also
# trims the ASCII separators 0x1c-0x1f).
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def trimmed_text(value: bytes) -> str:
    """The bytes as UTF-8 text without surrounding white space."""
    try:
        return value.decode("utf-8").strip(_WHITESPACE)
    except UnicodeDecodeError as e:
        raise ValueError(f"value is not UTF-8: {e}") from None


def split_csv(line: bytes) -> List[bytes]:
    """Splits one CSV row: commas between fields, ``"`` quotes, ``""`` a
    literal quote inside quotes, text after a closing quote kept."""
    if line.endswith(b"\r"):
        line = line[:-1]
    out: List[bytes] = []
    i, n = 0, len(line)
    while True:
        if i < n and line[i] == 0x22:
            j, field = i + 1, bytearray()
            while True:
                if j >= n:
                    raise ValueError("unterminated quoted field")
                c = line[j]
                if c == 0x22:
                    if j + 1 < n and line[j + 1] == 0x22:
                        field.append(0x22)
                        j += 2
                        continue
                    break
                field.append(c)
                j += 1
            i = j + 1
            end = line.find(b",", i)
            end = n if end < 0 else end
            field += line[i:end]
            out.append(bytes(field))
            i = end
        else:
            end = line.find(b",", i)
            end = n if end < 0 else end
            out.append(line[i:end])
            i = end
        if i >= n:
            return out
        i += 1
        if i == n:
            out.append(b"")
            return out


def _float_text(text: str) -> str:
    """A JSON number as the Rust SDK prints a float: shortest digits, never
    an exponent, no ``.0``."""
    f = float(text)
    if f in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    s = format(Decimal(repr(f)), "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _int_text(text: str) -> str:
    n = int(text)
    if n == 0 and text.startswith("-"):
        return "-0"  # serde_json reads -0 as the float -0.0
    return str(n) if -(2**63) <= n < 2**63 else _float_text(text)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


# Numbers kept as the Rust SDK prints them (one decoder: making one per
# call costs more than the parse).
_DECODER = json.JSONDecoder(parse_int=_int_text, parse_float=_float_text, parse_constant=_reject_constant)


def json_field(value: bytes, name: str):
    """Top-level field ``name`` of a JSON object: ``(found, text)`` where
    text is a string's content, a number or boolean as written by the Rust
    SDK, ``""`` for null, and ``None`` for an array or object."""
    try:
        doc = _DECODER.decode(value.decode("utf-8"))
    except ValueError as e:
        raise ValueError(f"invalid JSON: {e}") from None
    except RecursionError:
        raise ValueError("invalid JSON: recursion limit exceeded") from None
    if not isinstance(doc, dict):
        raise ValueError("invalid JSON: expected a JSON object")
    if name not in doc:
        return False, None
    v = doc[name]
    if v is None:
        return True, ""
    if v is True or v is False:
        return True, "true" if v else "false"
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("invalid JSON: lone surrogate in a string") from None
        return True, v
    return True, None


class Field:
    """Where a plugin finds what it reads: ``Field.WHOLE``, a JSON field
    (``Field.json("gender")``) or a CSV column (``Field.column(1)``)."""

    __slots__ = ("kind", "name", "index")

    def __init__(self, kind: str, name: Optional[str] = None, index: int = 0) -> None:
        self.kind, self.name, self.index = kind, name, index

    @classmethod
    def json(cls, name: str) -> "Field":
        """A top-level field of a JSON object."""
        return cls("json", name)

    @classmethod
    def column(cls, index: int) -> "Field":
        """A CSV column, 0-based."""
        return cls("column", index=index)

    @classmethod
    def keyed(cls, key: Optional[str], columns: Optional[Sequence[str]]) -> "Field":
        """The field a ``key`` setting names, ``columns`` being the CSV
        header when the input is CSV: no key is the whole value, a key with
        columns that column, a key alone that JSON field."""
        if key is None:
            return WHOLE
        if columns is None:
            return cls.json(key)
        if key not in columns:
            raise ValueError(f"key {json.dumps(key)} is not one of the columns {json.dumps(list(columns))}")
        return cls.column(list(columns).index(key))

    def __eq__(self, other) -> bool:
        return isinstance(other, Field) and (self.kind, self.name, self.index) == (other.kind, other.name, other.index)

    def __repr__(self) -> str:
        return f"Field({self.kind!r}, {self.name!r}, {self.index})"


WHOLE = Field("whole")
Field.WHOLE = WHOLE


class Record:
    """One event, read field by field (a CSV row is split once)."""

    __slots__ = ("event", "_columns")

    def __init__(self, event: Event) -> None:
        self.event = event
        self._columns: Optional[List[bytes]] = None

    def columns(self) -> List[bytes]:
        """The CSV columns of the value."""
        if self._columns is None:
            self._columns = split_csv(self.event.value)
        return self._columns

    def key(self, field: Field) -> str:
        """The field as a key to group by: a value or column as trimmed
        text, a JSON scalar as text. ``ValueError`` says why it cannot."""
        if field.kind == "whole":
            return trimmed_text(self.event.value)
        if field.kind == "json":
            found, text = json_field(self.event.value, field.name)
            if not found:
                raise ValueError(f"no field {json.dumps(field.name)}")
            if text is None:
                raise ValueError(f"field {json.dumps(field.name)} is not a string, number, boolean or null")
            return text
        columns = self.columns()
        if field.index >= len(columns):
            raise ValueError(f"row has {len(columns)} columns, the key is column {field.index + 1}")
        return trimmed_text(columns[field.index])
