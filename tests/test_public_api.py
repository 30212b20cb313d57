"""The package exports exactly the contract (API.md), each from its public home."""

import pytest

import occasional as occ

CONTRACT = {
    # section 1
    "run", "start", "stop", "runtime",
    # section 2
    "spawn", "spawn_link", "spawn_monitor", "slf", "Pid",
    # section 3
    "send", "receive", "ANY", "Ref", "Port",
    # section 4
    "monitor", "demonitor", "link", "unlink", "trap_exits", "kill", "format_reason", "ProcessExit",
    # section 5
    "register", "unregister", "whereis", "registered", "processes", "process_info", "NoProcess", "NameTaken",
    # section 6 (TooManyRestarts: the supervisor's give-up reason, CHANGELOG.md)
    "Server", "call", "cast", "reply", "noreply", "Supervisor", "TooManyRestarts",
    # section 11
    "node", "nodes", "connect", "monitor_node", "register_global", "whereis_global", "unregister_global", "Atom",
}  # fmt: skip


def test_all_lists_exactly_the_contract_of_sections_1_to_6_and_11():
    assert set(occ.__all__) == CONTRACT


def test_every_name_in_all_exists():
    assert [name for name in occ.__all__ if not hasattr(occ, name)] == []


@pytest.mark.parametrize(
    "name",
    ["ProcessExit", "NoProcess", "NameTaken", "Pid", "Ref", "Port", "Server", "Supervisor", "TooManyRestarts", "Atom"],
)
def test_a_public_class_shows_its_public_home(name):
    assert getattr(occ, name).__module__ == "occasional"


@pytest.mark.parametrize("cls", [occ.Pid, occ.Ref, occ.Port])
def test_values_only_the_runtime_makes_have_no_public_constructor(cls):
    with pytest.raises(TypeError, match=rf"^occasional\.{cls.__name__} has no public constructor; get "):
        cls(12)


def test_the_package_ships_type_information():
    from importlib.resources import files

    assert files("occasional").joinpath("py.typed").is_file()
