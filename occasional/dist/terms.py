"""The Python values that Erlang terms add: :class:`Atom`, and :class:`Opaque`
for a term with no Python value (API.md section 11, "Talking to Erlang";
issue 13). The codec that reads and writes them is :mod:`occasional.dist.etf`.
"""

from __future__ import annotations

from typing import Any

MAX_ATOM = 255  # characters, Erlang's limit on an atom


class Atom(str):
    """An Erlang atom: ``Atom("ok")`` is ``ok``. A ``str``, equal to its name
    (``Atom("ok") == "ok"``), so it matches and prints as text."""

    __slots__ = ()
    __module__ = "occasional"

    def __new__(cls, name: str) -> Atom:
        if not isinstance(name, str):
            raise TypeError(f"Atom({name!r}): an atom's name is a str")
        if len(name) > MAX_ATOM:
            raise ValueError(f"Atom({name!r}) has {len(name)} characters; Erlang atoms have at most {MAX_ATOM}")
        try:
            name.encode()
        except UnicodeEncodeError as e:
            raise ValueError(f"Atom({name!r}) is not UTF-8 text ({e.reason}), as Erlang atoms are") from None
        return str.__new__(cls, name)

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Through a function of this module: pickling must not depend on where Atom is re-exported.
        return (_atom, (str(self),))


def _atom(name: str) -> Atom:
    return Atom(name)


# What an Opaque is, from its first byte, when the decoder does not say.
_KINDS = {
    88: "pid", 103: "pid", 90: "reference", 114: "reference", 101: "reference", 89: "port", 102: "port",
    120: "port", 112: "fun", 113: "external fun", 77: "bitstring", 108: "list", 107: "list", 104: "tuple",
    105: "tuple", 116: "map",
}  # fmt: skip


class Opaque:
    """An Erlang term with no Python value (reference, fun, port, improper
    list, bitstring), or a map key Python cannot hash: it keeps the term's
    bytes (``etf``, without the version byte 131), is sent back to Erlang as
    exactly them, and equals another Opaque with the same bytes."""

    __slots__ = ("etf", "kind")
    etf: bytes
    kind: str

    def __init__(self, etf: bytes, kind: str | None = None) -> None:
        if type(etf) is not bytes or not etf:
            raise TypeError(f"Opaque({etf!r}): give the term's ETF bytes, without the version byte 131")
        object.__setattr__(self, "etf", etf)
        object.__setattr__(self, "kind", kind or _KINDS.get(etf[0], "term"))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Opaque is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is Opaque and other.etf == self.etf

    def __hash__(self) -> int:
        return hash(("occ-opaque", self.etf))

    def __repr__(self) -> str:
        return f"<erlang {self.kind} ({len(self.etf)} bytes)>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Opaque, (self.etf, self.kind))
