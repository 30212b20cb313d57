"""The Erlang term codec against a real Erlang VM (API.md section 11, "Talking
to Erlang"; issue 13).

One ``erl`` per module (no ``-name``/``-sname``, so no EPMD) runs a loop on a
``{packet, 4}`` port over its stdin/stdout. A request is one letter and a
payload: ``r`` + ETF answers ``term_to_binary(binary_to_term(ETF))``; ``e`` +
an Erlang expression answers ``term_to_binary`` of its value; ``b`` + an
expression whose value is a binary answers that binary. A reply is ``0`` and
the answer, or ``1`` and the error Erlang raised.
"""

from __future__ import annotations

import math
import pickle
import struct
import subprocess
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from occasional.core.pid import Pid, Port, Ref, RemotePid
from occasional.dist.etf import MAX_DEPTH, Atom, Opaque, decode, encode

from conftest import naming

ERLANG_LOOP = r"""
P = open_port({fd, 0, 1}, [binary, {packet, 4}, eof]),
Eval = fun(Text) ->
    {ok, Tokens, _} = erl_scan:string(unicode:characters_to_list(Text)),
    {ok, Exprs} = erl_parse:parse_exprs(Tokens),
    {value, Value, _} = erl_eval:exprs(Exprs, []),
    Value
end,
Handle = fun(<<$r, B/binary>>) -> term_to_binary(binary_to_term(B));
            (<<$e, T/binary>>) -> term_to_binary(Eval(T));
            (<<$b, T/binary>>) -> Eval(T)
         end,
Loop = fun L() ->
    receive
        {P, {data, Request}} ->
            Reply = try <<0, (Handle(Request))/binary>>
                    catch C:R -> <<1, (iolist_to_binary(io_lib:format("~p:~p", [C, R])))/binary>>
                    end,
            port_command(P, Reply),
            L();
        {P, eof} ->
            halt(0)
    end
end,
Loop().
"""


class ErlangError(Exception):
    pass


class Erl:
    """The module's Erlang VM, asked one request at a time."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["erl", "-noshell", "-noinput", "-eval", ERLANG_LOOP], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def ask(self, request: bytes) -> bytes:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(struct.pack(">I", len(request)) + request)
        self.proc.stdin.flush()
        (size,) = struct.unpack(">I", self.proc.stdout.read(4))
        reply = self.proc.stdout.read(size)
        if reply[:1] != b"\x00":
            raise ErlangError(reply[1:].decode())
        return reply[1:]

    def roundtrip(self, etf: bytes) -> bytes:
        """``term_to_binary(binary_to_term(etf))``."""
        return self.ask(b"r" + etf)

    def term(self, text: str) -> bytes:
        """``term_to_binary`` of the Erlang expression ``text``."""
        return self.ask(b"e" + text.encode() + b".")

    def binary(self, text: str) -> bytes:
        """The binary that the Erlang expression ``text`` evaluates to."""
        return self.ask(b"b" + text.encode() + b".")

    def same(self, a: bytes, b: bytes) -> bool:
        """Whether Erlang reads the ETF ``a`` and ``b`` as terms that are ``=:=``."""
        return decode(self.term(f"binary_to_term({_literal(a)}) =:= binary_to_term({_literal(b)})")) is True

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        finally:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()


def _literal(etf: bytes) -> str:
    return "<<" + ",".join(map(str, etf)) + ">>"


@pytest.fixture(scope="module")
def erl() -> Iterator[Erl]:
    vm = Erl()
    try:
        yield vm
    finally:
        vm.close()


# --- the contract's mapping, as values Python sends and gets back --------------

atoms = st.text(max_size=20).map(Atom)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**2100), max_value=2**2100)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary()
    | atoms
)
keys = st.recursive(
    scalars, lambda inner: st.tuples(inner, inner) | st.lists(inner, max_size=3).map(tuple), max_leaves=6
)


def _values(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(inner, max_size=5) | st.lists(inner, max_size=5).map(tuple) | st.dictionaries(keys, inner, max_size=4)
    )


values = st.recursive(scalars, _values, max_leaves=25)


def expected(v: Any) -> Any:
    """What ``v`` is after a trip through Erlang (API.md section 11): str comes back as bytes, and so on."""
    if type(v) is Atom:
        return {"true": True, "false": False, "undefined": None}.get(v, v)
    if type(v) is str:
        return v.encode()
    if type(v) is tuple:
        return tuple(expected(x) for x in v)
    if type(v) is list:
        return [expected(x) for x in v]
    if type(v) is dict:
        return {expected(k): expected(x) for k, x in v.items()}
    return v


def tagged(v: Any) -> Any:
    """``v`` with every value's type in it, so that ``1 == True == 1.0`` and ``0.0 == -0.0`` are told apart."""
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(tagged(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple(sorted((repr(tagged(k)), tagged(x)) for k, x in v.items())))
    if type(v) is float:
        return ("float", v, math.copysign(1, v))
    return (type(v).__name__, v)


def _one_term_per_key(v: Any) -> bool:
    """Whether no dict in ``v`` has two keys that are one Erlang term (``"a"`` and ``b"a"``)."""
    if isinstance(v, (tuple, list)):
        return all(_one_term_per_key(x) for x in v)
    if isinstance(v, dict):
        return len({encode(k) for k in v}) == len(v) and all(_one_term_per_key(x) for x in v.values())
    return True


def _not_occ_pid(v: Any) -> bool:
    """Whether ``v`` holds no tuple that reads as an occasional pid (hypothesis could write one)."""
    return "$occ_pid" not in repr(v)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(values)
def test_any_mappable_value_goes_through_erlang_and_comes_back_as_the_contract_maps_it(erl: Erl, value: Any) -> None:
    assume(_one_term_per_key(value) and _not_occ_pid(value))
    back = decode(erl.roundtrip(encode(value)))
    assert tagged(back) == tagged(expected(value))


@settings(max_examples=300, deadline=None, database=None)
@given(values)
def test_decode_of_encode_is_the_mapped_value(value: Any) -> None:
    assume(_one_term_per_key(value) and _not_occ_pid(value))
    assert tagged(decode(encode(value))) == tagged(expected(value))


@pytest.mark.parametrize(
    ("n", "tag"),
    [(0, 97), (255, 97), (256, 98), (-1, 98), (2**31 - 1, 98), (-(2**31), 98), (2**31, 110), (-(2**2039), 110),
     (2**2040, 111), (-(2**5000), 111)],
    ids=lambda x: str(x)[:12],
)  # fmt: skip
def test_integers_take_the_smallest_erlang_encoding_and_erlang_reads_them(erl: Erl, n: int, tag: int) -> None:
    etf = encode(n)
    assert (etf[1], decode(erl.roundtrip(etf))) == (tag, n)


def test_a_map_with_many_kinds_of_keys_goes_through_erlang(erl: Erl) -> None:
    value = {None: 1, True: 2, 3: 3, 4.5: 4, "s": 5, b"b": 6, Atom("a"): 7, (1, "x"): 8}
    back = decode(erl.roundtrip(encode(value)))
    assert tagged(back) == tagged({None: 1, True: 2, 3: 3, 4.5: 4, b"s": 5, b"b": 6, Atom("a"): 7, (1, b"x"): 8})


def test_atoms_travel_as_utf8_atoms_that_erlang_reads(erl: Erl) -> None:
    sent = [Atom("ok"), Atom("héllo"), Atom("ατομο"), Atom(""), Atom("é" * 255)]
    assert erl.same(erl.term(f"['ok', 'héllo', 'ατομο', '', '{'é' * 255}']"), encode(sent))


def test_atoms_and_opaques_survive_pickling_between_occasional_processes(erl: Erl) -> None:
    sent = [Atom("ok"), decode(erl.term("make_ref()"))]
    back = pickle.loads(pickle.dumps(sent))
    assert (back, [type(x) for x in back]) == (sent, [Atom, Opaque])


def test_bytearray_memoryview_and_subclasses_go_as_their_base_type(erl: Erl) -> None:
    from collections import OrderedDict, namedtuple
    from enum import IntEnum

    class Color(IntEnum):
        RED = 1

    point = namedtuple("point", "x y")
    sent = [bytearray(b"ab"), memoryview(b"cd"), Color.RED, point(1, 2), OrderedDict(a=1)]
    assert erl.same(erl.term('[<<"ab">>, <<"cd">>, 1, {1, 2}, #{<<"a">> => 1}]'), encode(sent))


# --- Erlang terms, as Python receives them and sends them back -------------------

ERLANG_TERMS = [
    ("{ok, [1,2,3]}", (Atom("ok"), [1, 2, 3])),
    ('"abc"', [97, 98, 99]),
    ("[1000, 2000]", [1000, 2000]),
    ('#{a => <<"x">>}', {Atom("a"): b"x"}),
    ("-123456789012345678901234567890", -123456789012345678901234567890),
    ("{[], {}, <<>>, #{}}", ([], (), b"", {})),
    ("{undefined, true, false, 'hello world', 'ατομο'}", (None, True, False, Atom("hello world"), Atom("ατομο"))),
    ("{3.5, -0.0, 1.0e300}", (3.5, -0.0, 1.0e300)),
    ("<<1:8, 2:8>>", b"\x01\x02"),
    ("maps:from_list([{I, -I} || I <- lists:seq(1, 100)])", {i: -i for i in range(1, 101)}),
    ("list_to_tuple(lists:seq(1, 300))", tuple(range(1, 301))),
    ("lists:seq(1, 300)", list(range(1, 301))),
    ("{'$occ_pid', 'nonode@nohost', 5, 1234}", Pid._make(5, 1234)),
    ("[{'$occ_pid', 'other@host', 5, 1234}]", [RemotePid._make_remote("other@host", 5, 1234)]),
    ("{'$occ_pid', 'nonode@nohost', x, 1234}", (Atom("$occ_pid"), Atom("nonode@nohost"), Atom("x"), 1234)),
]


@pytest.mark.parametrize(("text", "value"), ERLANG_TERMS, ids=[text for text, _ in ERLANG_TERMS])
def test_an_erlang_term_decodes_as_the_contract_maps_it(erl: Erl, text: str, value: Any) -> None:
    assert tagged(decode(erl.term(text))) == tagged(value)


@pytest.mark.parametrize(("text", "value"), ERLANG_TERMS, ids=[text for text, _ in ERLANG_TERMS])
def test_an_erlang_term_decoded_and_encoded_again_is_the_same_term(erl: Erl, text: str, value: Any) -> None:
    original = erl.term(text)
    assert erl.same(original, encode(decode(original)))


OPAQUE_TERMS = [
    ("make_ref()", "reference"),
    ("[1|2]", "improper list"),
    ('[1000, 2000 | <<"tail">>]', "improper list"),
    ("fun() -> ok end", "fun"),
    ("fun(X) -> X + 1 end", "fun"),
    ("fun lists:map/2", "external fun"),
    ("<<1:3>>", "bitstring"),
    ("<<1, 2, 3:4>>", "bitstring"),
    ("hd(erlang:ports())", "port"),
]


@pytest.mark.parametrize(("text", "kind"), OPAQUE_TERMS, ids=[text for text, _ in OPAQUE_TERMS])
def test_an_erlang_term_with_no_python_value_decodes_to_an_opaque_that_encodes_back_byte_for_byte(
    erl: Erl, text: str, kind: str
) -> None:
    original = erl.term(text)
    value = decode(original)
    assert (type(value), value.kind, encode(value)) == (Opaque, kind, original)


def test_opaque_terms_inside_containers_come_back_as_they_went(erl: Erl) -> None:
    original = erl.term("{make_ref(), [self(), fun() -> ok end, #{[1] => <<1:1>>}], [a|b]}")
    assert encode(decode(original)) == original


def test_an_erlang_pid_decodes_to_a_remote_pid_carrying_its_bytes(erl: Erl) -> None:
    original = erl.term("self()")
    pid = decode(original)
    assert (type(pid), pid.node, pid.id, pid.etf, encode(pid)) == (
        RemotePid,
        "nonode@nohost",
        -1,
        original[1:],
        original,
    )


def test_an_old_style_erlang_pid_and_port_decode(erl: Erl) -> None:
    # PID_EXT and PORT_EXT (a one-byte creation): what Erlang before OTP 19 sent.
    pid = b"\x83gd\x00\x05a@b.c\x00\x00\x00\x07\x00\x00\x00\x00\x01"
    port = b"\x83fd\x00\x05a@b.c\x00\x00\x00\x07\x01"
    assert (decode(pid).etf, decode(port).kind) == (pid[1:], "port")


def test_map_keys_python_cannot_hash_become_opaque_and_go_back_to_erlang(erl: Erl) -> None:
    original = erl.term("#{[1, 2] => a, #{k => v} => b, {x, [y]} => c, 1 => d}")
    value = decode(original)
    assert (sorted(type(k).__name__ for k in value), erl.same(original, encode(value))) == (
        ["Opaque", "Opaque", "Opaque", "int"],
        True,
    )


def test_map_keys_python_takes_for_one_stay_two_keys(erl: Erl) -> None:
    original = erl.term("#{1 => a, 1.0 => b, 0 => c, false => d}")
    value = decode(original)
    assert (len(value), erl.same(original, encode(value))) == (4, True)


def test_a_compressed_term_decodes(erl: Erl) -> None:
    original = erl.binary('term_to_binary({lists:seq(1, 2000), lists:duplicate(500, <<"abc">>)}, [compressed])')
    assert (original[1], decode(original)) == (80, (list(range(1, 2001)), [b"abc"] * 500))


def test_old_float_and_latin1_atoms_decode(erl: Erl) -> None:
    original = erl.binary("term_to_binary({1.5, -2.25e-10, 'héllo'}, [{minor_version, 0}])")
    assert (original[2:4], decode(original)) == (b"\x03c", (1.5, -2.25e-10, Atom("héllo")))


def test_a_list_whose_tail_is_a_list_is_one_proper_list(erl: Erl) -> None:
    # LIST_EXT [1000 | STRING_EXT "ab"]: Erlang never writes it, but it is the proper list [1000, 97, 98].
    data = b"\x83l\x00\x00\x00\x01b\x00\x00\x03\xe8k\x00\x02ab"
    assert (decode(data), erl.same(data, encode([1000, 97, 98]))) == ([1000, 97, 98], True)


def test_small_latin1_and_long_utf8_atom_tags_decode() -> None:
    # SMALL_ATOM_EXT (115) and ATOM_UTF8_EXT (118), which Erlang accepts but rarely writes.
    assert decode(b"\x83h\x02s\x02ok" + b"v\x00\x02\xce\xb1") == (Atom("ok"), Atom("α"))


def test_a_term_nested_to_the_depth_limit_goes_both_ways(erl: Erl) -> None:
    deep: Any = []
    for _ in range(MAX_DEPTH):
        deep = [deep]
    # Compared as bytes: == on Python lists this deep would hit the interpreter's recursion limit.
    assert encode(decode(erl.roundtrip(encode(deep)))) == encode(deep)


# --- pids -------------------------------------------------------------------


def test_a_local_pid_encodes_as_the_occ_pid_tuple(erl: Erl) -> None:
    assert erl.same(erl.term("{'$occ_pid', 'nonode@nohost', 7, 4242}"), encode(Pid._make(7, 4242)))


def test_a_local_pid_decodes_back_to_an_equal_pid(erl: Erl) -> None:
    pid = Pid._make(7, 4242)
    back = decode(erl.roundtrip(encode(pid)))
    assert (type(back), back) == (Pid, pid)


def test_a_port_encodes_as_the_occ_pid_tuple() -> None:
    assert decode(encode(Port._make(8, 99))) == Pid._make(8, 99)


def test_a_remote_occasional_pid_encodes_as_the_occ_pid_tuple_with_its_node(erl: Erl) -> None:
    pid = RemotePid._make_remote("b@host", 3, 77)
    assert (erl.same(erl.term("{'$occ_pid', 'b@host', 3, 77}"), encode(pid)), decode(encode(pid))) == (True, pid)


# --- errors -----------------------------------------------------------------


class Thing:
    def __repr__(self) -> str:
        return "<a thing>"


@pytest.mark.parametrize(
    "bad",
    [{1, 2}, frozenset(), Thing(), ValueError("x"), Ref._make(1, 2), float("nan"), float("inf"), -float("inf"), 1j],
    ids=repr,
)
def test_encoding_a_value_with_no_erlang_term_raises_type_error_naming_it(bad: Any) -> None:
    with pytest.raises(TypeError, match=naming(bad) + r".*no Erlang term"):
        encode({"k": [1, (2, bad)]})


def test_the_type_error_says_which_types_map() -> None:
    with pytest.raises(
        TypeError,
        match=r"^<a thing> \(Thing\) has no Erlang term; an Erlang process can be sent only None, bool, int, float, "
        r"str, bytes, occasional.Atom, tuple, list, dict and Pid, nested \(API.md section 11\): convert the value",
    ):
        encode(Thing())


def test_a_dict_key_with_no_erlang_term_raises_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match=naming(frozenset({3}))):
        encode({frozenset({3}): 1})


def test_two_dict_keys_that_are_one_erlang_term_raise_type_error_naming_both() -> None:
    with pytest.raises(TypeError, match=r"^dict .* has the keys 'a' and b'a', which are the same Erlang term"):
        encode({"a": 1, b"a": 2})


def test_a_str_that_is_not_utf8_raises_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match=naming("\ud800")):
        encode("\ud800")


def test_an_atom_over_255_characters_raises_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"^Atom\('xxxx.*'\) has 256 characters; Erlang atoms have at most 255"):
        Atom("x" * 256)


def test_a_value_nested_too_deep_or_containing_itself_raises_value_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    deep: Any = ()
    for _ in range(100_000):
        deep = (deep,)
    for bad in (loop, deep):
        with pytest.raises(ValueError, match=r"^.* is nested more than 1000 levels deep, or contains itself"):
            encode(bad)


def test_atom_and_opaque_repr_say_what_they_are(erl: Erl) -> None:
    assert (repr(Atom("ok")), repr(decode(erl.term("make_ref()")))) == ("Atom('ok')", "<erlang reference (35 bytes)>")


MALFORMED = [
    (b"", r"^not an Erlang term"),
    (b"\x82a\x01", r"^not an Erlang term"),
    (b"\x83", r"^truncated Erlang term"),
    (b"\x83h\x02a\x01", r"^truncated Erlang term"),
    (b"\x83b\x00\x00", r"^truncated Erlang term"),
    (b"\x83a\x01\x00", r"^malformed Erlang term: 1 bytes left after the term"),
    (b"\x83m\xff\xff\xff\xffabc", r"^truncated Erlang term: 4294967295 bytes declared"),
    (b"\x83l\xff\xff\xff\xffj", r"^truncated Erlang term: 4294967296 bytes declared"),
    (b"\x83t\x7f\xff\xff\xffj", r"^truncated Erlang term"),
    (b"\x83i\xff\xff\xff\xff", r"^truncated Erlang term"),
    (b"\x83o\xff\xff\xff\xff\x00", r"^truncated Erlang term"),
    (b"\x83k\xff\xffab", r"^truncated Erlang term"),
    (b"\x83P\xff\xff\xff\xffx\x9c\x03\x00", r"^malformed Erlang term: 4 compressed bytes cannot hold"),
    (b"\x83P\x00\x00\x00\x02garbage", r"^malformed Erlang term: compressed data is not zlib"),
    (
        b"\x83P\x00\x00\x00\x0a" + zlib.compress(b"k\x03\xe8" + b"a" * 1000),
        r"^malformed Erlang term: compressed data does not inflate to the 10 bytes declared",
    ),
    (
        b"\x83P\x00\x00\x00\x04" + zlib.compress(b"a\x01"),
        r"^malformed Erlang term: compressed data does not inflate to the 4 bytes declared",
    ),
    (b"\x83F\x7f\xf8\x00\x00\x00\x00\x00\x00", r"^malformed Erlang term: float nan"),
    (b"\x83w\x02\xff\xfe", r"^malformed Erlang term: the atom at byte 3 is not UTF-8"),
    (b"\x83d\x01\x00" + b"x" * 256, r"^malformed Erlang term: the atom at byte 4 has 256 characters"),
    (b"\x83t\x00\x00\x00\x02a\x01a\x02a\x01a\x03", r"^malformed Erlang term: the map repeats the key 1"),
    (b"\x83M\x00\x00\x00\x01\x09\xff", r"^malformed Erlang term: a bitstring of 1 bytes with 9 bits"),
    (b"\x83N\x00\x01", r"^malformed Erlang term: unknown or unsupported tag 78"),
    (b"\x83Xa\x01" + b"\x00" * 12, r"^malformed Erlang term: an atom expected at byte 2"),
    (b"\x83" + b"h\x01" * 100_000 + b"j", r"^malformed Erlang term: nested more than 1000 levels deep"),
    (b"\x83" + b"l\x00\x00\x00\x01" * 100_000 + b"j", r"^malformed Erlang term: nested more than 1000 levels deep"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED, ids=lambda x: repr(x)[:40])
def test_malformed_input_raises_value_error(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode(data)


def test_malformed_input_that_decode_refuses_erlang_refuses_too(erl: Erl) -> None:
    # All but trailing bytes, which binary_to_term ignores; the contract refuses them (issue 13).
    refused = []
    for data, _ in MALFORMED[3:-2]:
        try:
            erl.roundtrip(data)
        except ErlangError:
            refused.append(data)
    assert refused == [data for data, message in MALFORMED[3:-2] if "left after the term" not in message]


def test_a_fun_whose_size_field_lies_raises_value_error(erl: Erl) -> None:
    fun = erl.term("fun(X) -> X end")
    (size,) = struct.unpack_from(">I", fun, 2)
    with pytest.raises(ValueError, match=r"^malformed Erlang term: the fun at byte 1 ends at byte"):
        decode(fun[:2] + struct.pack(">I", size - 1) + fun[6:])


@settings(max_examples=2000, deadline=None, database=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_value_error(data: bytes) -> None:
    for candidate in (data, b"\x83" + data):
        try:
            decode(candidate)
        except ValueError:
            pass


@settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.data())
def test_mutated_encodings_decode_or_raise_value_error(value: Any, data: st.DataObject) -> None:
    assume(_one_term_per_key(value))
    etf = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(etf)))
        how = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        byte = data.draw(st.integers(0, 255))
        if how == "flip" and at < len(etf):
            etf[at] = byte
        elif how == "cut":
            del etf[at:]
        elif how == "insert":
            etf.insert(at, byte)
        elif at < len(etf):
            del etf[at]
    try:
        decode(bytes(etf))
    except ValueError:
        pass


def test_mutated_erlang_terms_decode_or_raise_value_error(erl: Erl) -> None:
    original = erl.term("{make_ref(), self(), fun(X) -> X end, fun lists:map/2, <<1:3>>, [1|2], 1.5, #{a => [b]}}")
    for at in range(1, len(original)):
        for byte in (0, 1, 0x7F, 0xFF, original[at] ^ 0x20):
            try:
                decode(original[:at] + bytes([byte]) + original[at + 1 :])
            except ValueError:
                pass
        try:
            decode(original[:at])
        except ValueError:
            pass
