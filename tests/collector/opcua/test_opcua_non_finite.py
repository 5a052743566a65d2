"""Issue 13 item 8 for OPC UA: a Good Double that is NaN or infinity is stored with bad
quality (the supervisor's rule for every protocol), the value as the server sent it."""

from __future__ import annotations

import math

from asyncua import ua

from collector import Supervisor
from config.signals import Quality
from store.sqlite import SqliteStore
from store.writer import Writer
from tests.collector.opcua_helpers import odevice, opcua_server, otag
from tests.helpers import FAST, health, register, wait_until


async def test_a_good_nan_or_infinite_double_is_stored_bad(sqlite_store: SqliteStore) -> None:
    async with opcua_server() as srv:
        await srv.vars["num"].write_value(ua.Variant(math.nan, ua.VariantType.Double))
        tags = [otag("num", f"ns={srv.ns};i=5"), otag("temp", f"ns={srv.ns};s=temp"),
                otag("text", f"ns={srv.ns};s=recipe")]
        dev = odevice(f"opc.tcp://127.0.0.1:{srv.port}/tp/", tags, backoff=FAST)
        ids = register(sqlite_store, dev)
        async with Supervisor([dev], sqlite_store, Writer(sqlite_store), ids) as sup:
            await wait_until(lambda: health(sup).samples_delivered >= 3, what="the first values")
            await srv.vars["temp"].write_value(ua.Variant(math.inf, ua.VariantType.Double))
            await wait_until(lambda: health(sup).non_finite >= 2, what="the infinite change")
            await srv.vars["temp"].write_value(ua.Variant(20.0, ua.VariantType.Double))
            await wait_until(lambda: health(sup).samples_delivered >= 5, what="the finite change")
            h = health(sup)
    assert h.non_finite == 2 and h.bad_samples == 2
    temps = sqlite_store.read(ids[tags[1].path], 0, 2**62, prior=False)
    assert temps.quality.tolist() == [Quality.GOOD, Quality.BAD, Quality.GOOD]
    assert temps.value[1] == math.inf  # the value as sent, beside its bad quality
    latest = sqlite_store.latest(list(ids.values()))
    num, temp, text = (latest[ids[t.path]] for t in tags)
    assert num.quality == Quality.BAD and math.isnan(num.value)
    assert (temp.value, temp.quality) == (20.0, Quality.GOOD)
    assert (text.text, text.quality) == ("A1", Quality.GOOD)  # a text's NaN value is no number
