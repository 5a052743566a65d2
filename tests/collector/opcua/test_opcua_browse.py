"""Browse-path discovery of OPC UA tags against real asyncua servers (the plant simulator and
the small test server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from pydantic import ValidationError

from collector import Supervisor
from collector.opcua import OpcUaCollector, discover, discover_tags
from config import Settings
from config.errors import ConfigError, ConnectError
from config.opcua import BrowseRule
from config.settings import cross_check
from config.signals import Quality, Role
from simulators import Plant
from simulators.opcua import NAMESPACE_URI, OpcUaPlantServer, serve_opcua
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.collector.opcua_helpers import ASSET, URI, Collected, ids_for, odevice, opcua_server, otag
from tests.helpers import free_port, wait_until

NOW = datetime(2026, 11, 20, 10, 17, 3, tzinfo=UTC)
MACHINES = f"nsu={NAMESPACE_URI};s=Machines"
ASSET1 = "demo/machining/line1/lathe-01"


@pytest.fixture
async def sim(plant: Plant) -> AsyncIterator[OpcUaPlantServer]:
    async with serve_opcua(plant, clock=lambda: 0, interval_s=0.05,
                           security=[ua.SecurityPolicyType.NoSecurity]) as s:
        yield s


def endpoint(s: OpcUaPlantServer) -> str:
    return f"opc.tcp://127.0.0.1:{s.port}/"


def rule(**kw: Any) -> dict[str, Any]:
    kw.setdefault("root", MACHINES)
    kw.setdefault("asset", ASSET1)
    return kw


def short(plant: Plant) -> dict[str, str]:
    """browse name of each machine -> asset path"""
    return {v.name: a for a, v in plant.values_at(0).items()}


async def test_name_filter_finds_every_machine_counter(sim: OpcUaPlantServer, plant: Plant) -> None:
    dev = odevice(endpoint(sim), [], browse=[rule(name_filter="*Count", role="analog")])
    tags = await discover_tags(dev)
    expected = {
        f"{name}.{signal}": f"nsu={NAMESPACE_URI};s={asset}/{signal}"
        for name, asset in short(plant).items()
        for signal in ("TotalCount", "GoodCount", "RejectCount")
    }
    assert {t.name: t.node_id for t in tags} == expected
    assert {t.asset for t in tags} == {ASSET1}
    assert {t.role for t in tags} == {Role.ANALOG}


async def test_discovered_tags_collect(sim: OpcUaPlantServer) -> None:
    """What discover_tags returns, pasted into tags, reads GOOD values."""
    dev = odevice(endpoint(sim), [], browse=[
        rule(root=f"nsu={NAMESPACE_URI};s={ASSET1}", name_filter="*Count", name_prefix="ua_")])
    tags = await discover_tags(dev)
    assert sorted(t.name for t in tags) == ["ua_GoodCount", "ua_RejectCount", "ua_TotalCount"]
    dev2 = odevice(endpoint(sim), tags, mode="poll")
    ids = ids_for(dev2)
    async with OpcUaCollector(dev2, ids) as c:
        run = Collected(c, dev2, ids).start()
        try:
            await wait_until(lambda: len(run.latest) == 3, what="a sample of every tag")
            assert {s[1] for s in run.latest.values()} == {int(Quality.GOOD)}
        finally:
            await run.stop()


async def test_supervisor_collects_discovered_tags_live(sim: OpcUaPlantServer, tmp_path: Path) -> None:
    """Browse rules alone (no tags): the supervisor registers what the collector finds and
    the samples reach the store; after a restart the same tags keep the same ids."""
    dev = odevice(endpoint(sim), [], browse=[
        rule(root=f"nsu={NAMESPACE_URI};s={ASSET1}", name_filter="*Count", name_prefix="ua_")])
    paths = {f"{ASSET1}/ua_{n}" for n in ("TotalCount", "GoodCount", "RejectCount")}
    ids_seen: list[dict[str, int]] = []
    for _ in range(2):  # the second run is a gateway restart on the same store file
        with SqliteStore(tmp_path / "gw.db") as store:
            writer = Writer(store)
            async with Supervisor([dev], store, writer, {}) as sup:
                def stored() -> bool:
                    ids = {t.path: t.tag_id for t in store.tags()}
                    return (sup.status()[0].samples_delivered >= 3 and paths <= set(ids)
                            and all(len(store.read(ids[p], 0, 2**62, prior=False)) for p in paths))
                await wait_until(stored, what="samples of every discovered tag in the store")
                assert sup.status()[0].state == "connected", sup.status()[0]
                assert sup.status()[0].tag_errors == {}
            await writer.close()
            recs = {t.path: t for t in store.tags()}
            assert {(recs[p].device, recs[p].protocol) for p in paths} == {("ua1", "opcua")}
            ids_seen.append({p: recs[p].tag_id for p in paths})
            latest = store.latest([recs[p].tag_id for p in paths])
            assert {v.quality for v in latest.values()} == {int(Quality.GOOD)}
    assert ids_seen[0] == ids_seen[1]


async def test_max_depth(sim: OpcUaPlantServer) -> None:
    root = f"nsu={NAMESPACE_URI};s={ASSET1}"
    async def names(depth: int) -> set[str]:
        dev = odevice(endpoint(sim), [], browse=[rule(root=root, max_depth=depth)])
        return {t.name for t in await discover_tags(dev)}

    d1 = await names(1)
    assert "TotalCount" in d1 and "ChannelMode" in d1
    assert not any("." in n for n in d1)  # only direct children
    d2 = await names(2)
    assert {"MachineryItemState.CurrentState", "Identification.AssetId"} <= d2
    assert d1 < d2
    # from Machines, depth 1 holds only the machine objects: no variables
    dev = odevice(endpoint(sim), [], browse=[rule(max_depth=1)])
    assert await discover_tags(dev) == []


async def test_node_cap(sim: OpcUaPlantServer) -> None:
    dev = odevice(endpoint(sim), [], browse=[rule(max_depth=10)])
    async with Client(endpoint(sim)) as client:
        everything = await discover(client, dev)
        capped = await discover(client, dev, max_nodes=20)
    assert 0 < len(capped) < 20 < len(everything)


@pytest.mark.parametrize("root", ["SIM;s=NoSuchNode", "nsu=urn:nobody;s=Machines", "i=999999"])
async def test_bad_root_names_the_rule(sim: OpcUaPlantServer, root: str) -> None:
    root = root.replace("SIM", f"ns={sim.namespace_index}")
    dev = odevice(endpoint(sim), [], browse=[rule(name_filter="*Count"), rule(root=root)])
    with pytest.raises(ConfigError) as info:
        await discover_tags(dev)
    assert [loc for loc, _ in info.value.problems] == ["devices[ua1].browse[1].root"]
    assert "browse rule 1" in str(info.value)


async def test_collector_browses_at_connect(sim: OpcUaPlantServer) -> None:
    """At connect the collector lists what the rules find; a bad rule does not stop it."""
    dev = odevice(endpoint(sim), [], browse=[
        rule(root=f"ns={sim.namespace_index};s=NoSuchNode"),
        rule(root=f"nsu={NAMESPACE_URI};s={ASSET1}", name_filter="Total*"),
    ])
    async with OpcUaCollector(dev, {}) as c:
        assert [t.name for t in c.discovered] == ["TotalCount"]
        assert list(c.browse_errors) == ["browse[0]"]
        assert "devices[ua1].browse[0].root" in c.browse_errors["browse[0]"]


async def test_bad_browse_rule_shows_in_collector_status(sim: OpcUaPlantServer, tmp_path: Path) -> None:
    dev = odevice(endpoint(sim), [], browse=[
        rule(root=f"ns={sim.namespace_index};s=NoSuchNode"),
        rule(root=f"nsu={NAMESPACE_URI};s={ASSET1}", name_filter="Total*"),
    ])
    with SqliteStore(tmp_path / "gw.db") as store:
        writer = Writer(store)
        async with Supervisor([dev], store, writer, {}) as sup:
            await wait_until(lambda: sup.status()[0].samples_delivered > 0, what="the good rule's tag")
            errors = sup.status()[0].tag_errors
            assert list(errors) == ["browse[0]"] and "devices[ua1].browse[0].root" in errors["browse[0]"]
        await writer.close()


async def test_names_are_sanitised_and_configured_paths_skipped() -> None:
    async with opcua_server() as srv:
        m1 = srv.server.get_node(ua.NodeId("m1", srv.ns))
        await m1.add_variable(ua.NodeId("sp", srv.ns), ua.QualifiedName("Set Point (°C)", srv.ns), 1.0)
        dev = odevice(srv.endpoint, [otag("m1.temp", f"ns={srv.ns};s=temp")], browse=[
            rule(root="i=85", name_filter="*", max_depth=2, asset=ASSET)])
        tags = await discover_tags(dev)
    by_name = {t.name: t.node_id for t in tags}
    assert by_name["m1.Set_Point___C_"] == f"nsu={URI};s=sp"
    assert by_name["m1.num"] == f"nsu={URI};i=5"
    assert "m1.temp" not in by_name  # already configured


async def test_unreachable_server_is_a_connect_error() -> None:
    dev = odevice(f"opc.tcp://127.0.0.1:{free_port()}/", [], browse=[rule()], timeout_s=0.5)
    with pytest.raises(ConnectError):
        await discover_tags(dev)


# ------------------------------------------------------------------ config validation


@pytest.mark.parametrize(("field", "value"), [
    ("root", "Machines"),
    ("asset", "lathe-01"),
    ("name_prefix", "a b"),
    ("max_depth", 0),
    ("name_filter", ""),
    ("role", "state"),
    ("depth", 3),
])
def test_rule_fields_are_checked(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        odevice("opc.tcp://h:4840", [], browse=[rule(**{field: value})])
    locs = [tuple(e["loc"]) for e in info.value.errors()]
    assert any(loc[:3] == ("browse", 0, field) for loc in locs), locs


def test_rule_defaults() -> None:
    r = BrowseRule(root=MACHINES, asset=ASSET1)
    assert (r.name_filter, r.max_depth, r.role, r.name_prefix) == ("*", 5, Role.ANALOG, "")


def test_rule_asset_must_be_declared(settings: Settings) -> None:
    dev = odevice("opc.tcp://h:4840", [], name="browser",
                  browse=[rule(), rule(asset="x/y/z/nowhere")])
    s = settings.model_copy(update={"devices": [*settings.devices, dev]})
    n = len(settings.devices)
    assert [p for p in cross_check(s) if "browse" in p[0]] == [
        (f"devices[{n}].browse[1].asset", "no asset 'x/y/z/nowhere' is declared in assets")]
