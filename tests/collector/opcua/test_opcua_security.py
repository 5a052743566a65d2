"""The OPC UA collector over every security policy and mode the simulator offers, with a
client certificate, a trust list and a user: real secure channels over real sockets."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from collector.opcua import OpcUaCollector
from config.errors import ConnectError
from simulators import Plant, datetime_ns
from simulators.opcua import serve_opcua
from tests.collector.opcua_helpers import Collected, make_cert, odevice, otag
from tests.helpers import wait_until

NOW = datetime(2026, 11, 20, 10, 17, 3, tzinfo=UTC)
ASSET = "demo/machining/line2/press-01"
USERS = {"operator": "s3cret"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The simulator's certificate directory and a client certificate and key."""
    d = tmp_path_factory.mktemp("pki")
    cert, key = asyncio.run(make_cert(d, "gw", "urn:tierproof:test:gateway", server=False))
    return {"server_dir": d / "server", "cert": cert, "key": key}


@pytest.mark.parametrize(("policy", "mode"), [
    ("None", "None"),
    ("Basic256Sha256", "Sign"),
    ("Basic256Sha256", "SignAndEncrypt"),
    ("Aes256_Sha256_RsaPss", "Sign"),
    ("Aes256_Sha256_RsaPss", "SignAndEncrypt"),
])
async def test_every_policy_and_mode(plant: Plant, pki: dict[str, Path], policy: str, mode: str) -> None:
    t = datetime_ns(NOW)
    # served on (and connected through) the host name its certificate names: a trusted server
    # certificate issued for another host is refused
    async with serve_opcua(plant, [ASSET], clock=lambda: t, users=USERS, anonymous=False,
                           cert_dir=pki["server_dir"], host=socket.gethostname()) as sim:
        assert sim.server_certificate_path is not None
        secure = {} if policy == "None" else {
            "certificate": str(pki["cert"]), "private_key": str(pki["key"]),
            "trusted_certificates": [str(sim.server_certificate_path)],
        }
        dev = odevice(sim.endpoint, [otag("good", sim.node_ids[f"{ASSET}/GoodCount"])],
                      security_policy=policy, security_mode=mode, username="operator",
                      password=USERS["operator"], **secure)
        ids = {dev.tags[0].path: 1}
        async with OpcUaCollector(dev, ids) as c:
            # the channel really uses the policy and mode asked for (no silent fallback)
            assert c._client is not None
            assert c._client.security_policy.URI.rsplit("#", 1)[-1] == policy
            assert c._client.security_policy.Mode.name.rstrip("_") == mode
            run = Collected(c, dev, ids).start()
            try:
                await wait_until(lambda: "good" in run.latest, what=f"a sample over {policy}/{mode}")
            finally:
                await run.stop()
        assert run.latest["good"][0] == plant.values_at(t)[ASSET].good
        assert run.latest["good"][1] == 0  # Quality.GOOD

        # the same user with a wrong password is refused on this channel too, with a clear reason
        wrong = dev.model_copy(update={"password": SecretStr("nope")})
        with pytest.raises(ConnectError, match=r"rejected user 'operator'.*check username and password"):
            async with OpcUaCollector(wrong, ids):
                pass
