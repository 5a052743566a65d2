"""The Mosquitto fixture itself: each listener lets in what it should and refuses the rest,
and persistence keeps queued QoS 1 messages across a restart."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from tests.mosquitto import Mosquitto, Recorder, connect_outcome

pytestmark = pytest.mark.mqtt


def test_plain_listener_is_anonymous(mosquitto: Mosquitto) -> None:
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    assert connect_outcome(mosquitto.host, mosquitto.port) == "connected"


def test_password_listener(mosquitto: Mosquitto) -> None:
    m = mosquitto
    assert connect_outcome(m.host, m.auth_port, username=m.username, password=m.password) == "connected"
    assert connect_outcome(m.host, m.auth_port).startswith("refused: Not authorized")
    assert connect_outcome(m.host, m.auth_port, username=m.username, password="wrong").startswith(
        "refused: Not authorized"
    )
    assert connect_outcome(m.host, m.auth_port, username="intruder", password=m.password).startswith(
        "refused: Not authorized"
    )


def test_tls_listener_needs_a_client_certificate_from_its_ca(mosquitto: Mosquitto) -> None:
    m = mosquitto
    assert connect_outcome(m.host, m.tls_port, tls=(m.ca_file, m.client_cert, m.client_key)) == "connected"

    # no client certificate, or one from another CA: the broker ends the TLS session (with
    # TLS 1.3 the client learns it only after its side of the handshake, as a disconnect)
    assert connect_outcome(m.host, m.tls_port, tls=(m.ca_file, None, None)).startswith("disconnected")
    assert "peer did not return a certificate" in m.log_tail(5)
    bad_client = (m.ca_file, m.bad_client_cert, m.bad_client_key)
    assert connect_outcome(m.host, m.tls_port, tls=bad_client).startswith("disconnected")
    assert "certificate verify failed" in m.log_tail(5)

    # the client does not trust the server's certificate when given the other CA
    outcome = connect_outcome(m.host, m.tls_port, tls=(m.untrusted_ca_file, m.client_cert, m.client_key))
    assert outcome.startswith("error:") and "certificate verify failed" in outcome

    # plain MQTT on the TLS port is no session either
    assert connect_outcome(m.host, m.tls_port).startswith("disconnected")
    assert "wrong version number" in m.log_tail(5)


def test_queued_qos1_message_survives_restart(mosquitto: Mosquitto) -> None:
    m = mosquitto
    sub = Recorder(m.host, m.port, ["plant/#"], client_id="persistent-sub", clean_session=False).start()
    sub.stop()  # offline now: the broker queues QoS 1 messages for the session

    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub")
    pub.connect(m.host, m.port)
    pub.loop_start()
    info = pub.publish("plant/line1/count", b"42", qos=1)
    info.wait_for_publish(timeout=5)
    assert info.is_published()
    pub.disconnect()
    pub.loop_stop()

    m.restart()

    # resume the session without subscribing again: the message must come from the queue
    again = Recorder(m.host, m.port, [], client_id="persistent-sub", clean_session=False).start()
    assert again.session_present is True
    try:
        got = again.wait_for(lambda ms: len(ms) >= 1, 30, "the queued message after restart")
    finally:
        again.stop()
    assert [(r.topic, r.payload, r.qos) for r in got] == [("plant/line1/count", b"42", 1)]


def test_kill_loses_the_session_and_start_reuses_the_ports(mosquitto: Mosquitto) -> None:
    """SIGKILL is a crash: nothing is saved (autosave is off), so the persistent session is
    gone -- the counterpart of the test above: persistence comes from the clean stop."""
    m = mosquitto
    ports = (m.port, m.tls_port, m.auth_port)
    Recorder(m.host, m.port, ["plant/#"], client_id="crash-sub", clean_session=False).start().stop()
    m.kill()
    assert not m.running
    m.start()
    assert (m.port, m.tls_port, m.auth_port) == ports
    again = Recorder(m.host, m.port, [], client_id="crash-sub", clean_session=False).start()
    again.stop()
    assert again.session_present is False


def test_start_failure_is_loud() -> None:
    broker = Mosquitto()
    try:
        broker.conf_file.write_text(broker.conf_file.read_text() + "no_such_option 1\n")
        with pytest.raises(RuntimeError, match=r"mosquitto exited with .* on start; log:"):
            broker.start()
    finally:
        broker.close()
