// An Eclipse Tahu Sparkplug B edge node (npm sparkplug-client, Tahu's JavaScript client) for
// tests/interop: it connects to the broker given on the command line, publishes its NBIRTH and
// a DBIRTH for each device whenever Tahu asks for births (every connect) or tierproof sends the
// NCMD "Node Control/Rebirth", and takes commands on stdin, one JSON object a line:
//
//   {"cmd": "ndata", "metrics": [...], "timestamp": ms}            Tahu's publishNodeData
//   {"cmd": "ddata", "device": "M1", "metrics": [...], "timestamp": ms}   publishDeviceData
//   {"cmd": "births", "extra": [...]}                               NBIRTH + DBIRTHs again, each
//        DBIRTH with the extra metrics (Tahu's JSON form) after the standard ones
//   {"cmd": "ddeath", "device": "M1"}                               publishDeviceDeath
//   {"cmd": "raw", "device": null|"M1", "metrics": [...]}           a DATA payload built with
//        the protobuf classes Tahu ships (fields as in sparkplug_b.proto, camelCase), with the
//        node's next seq: for metrics Tahu's own encoder would never write
//   {"cmd": "publish", "topic": "...", "payload": "...", "qos": 1}  any message, through the
//        mqtt.js client under Tahu's (for the plain/JSON tests); answered once sent (QoS 1:
//        once the broker acknowledged it)
//   {"cmd": "status"}                                               counters
//   {"cmd": "stop"}                                                 Tahu's stop(): NDEATH (with
//        publishDeath) and a clean MQTT DISCONNECT, then exit 0
//
// A metric is Tahu's JSON form {"name"|"alias", "type", "value", "timestamp"}; a 64-bit value
// may be a decimal string (JavaScript numbers stop being exact at 2^53).
// Answers: {"ok": ...} or {"error": "..."} lines. An unclean death is SIGKILL from the test.
//
// With "primaryHostId" the node waits for that Sparkplug 3.0 primary host as Eclipse Tahu's
// Java edge node does (org.eclipse.tahu.edge.EdgeClient; Tahu's JavaScript client has no
// primary host support): on every connect it subscribes to spBv1.0/STATE/<id> at QoS 1 and
// publishes no birth; a STATE {"online": true, "timestamp": ms} not older than the last one
// seen -> births (seq from 0), then DATA; online false -> a DDEATH per device and an NDEATH,
// then no DATA until the host is online again (EdgeClient also ends its MQTT session and
// reconnects; this node stays connected). A STATE with a timestamp older than the last one
// seen is ignored (EdgeClient: "a stale STATE message"). DATA asked for while the host is
// not online is not published (EdgeClient drops it too): answered {"ok": true, "held": true}.
// Every STATE received is in the status: online, timestamp, its keys, MQTT retain and QoS.
// Tahu's client decodes every message that arrives on its connection as a Sparkplug protobuf
// before looking at the topic, so a STATE (JSON) would throw out of mqtt.js's message event
// and end the process (RangeError: index out of range); STATE is routed around that listener.
//
// usage: node tahu_edge.js '{"serverUrl": "mqtt://127.0.0.1:1883", "groupId": "g",
//                            "edgeNode": "n", "devices": ["M1"], "publishDeath": true}'
"use strict";

const readline = require("readline");
const Long = require("long");
const sparkplug = require("sparkplug-client");
const proto = require("sparkplug-payload/lib/sparkplugPayloadProto");

const Payload = proto.org.eclipse.tahu.protobuf.Payload;
const opts = JSON.parse(process.argv[2] || "{}");
const devices = opts.devices || ["M1"];
const now = () => Date.now();

// every datatype Tahu's encoder knows a scalar value for, with a value at an edge of its range
// (negative where the type is signed) and an alias; the test reads this table back
const TYPES = [
  ["Int8", -128], ["Int16", -32768], ["Int32", -2147483648], ["Int64", "-9223372036854775808"],
  ["UInt8", 255], ["UInt16", 65535], ["UInt32", 4294967295], ["UInt64", "18446744073709551615"],
  ["Float", 1.5], ["Double", 2.718281828459045], ["Boolean", true], ["String", "Presse 3 ✓"],
  ["DateTime", 1700000000000], ["Text", "a text"], ["UUID", "6c1b4e8e-6f1a-4a55-9b7e-0d1c2b3a4f5e"],
];
const ALIAS_BASE = { node: 100, device: 200 };

function value(type, v) {
  if (typeof v === "string" && /^(Int64|UInt64|DateTime)$/.test(type)) {
    return Long.fromString(v, type !== "Int64");
  }
  return v;
}

function metric(m) {
  const out = { ...m };
  if ("value" in m && m.value !== null) out.value = value(m.type, m.value);
  return out;
}

function birthMetrics(prefix, aliasBase, ts) {
  return TYPES.map(([type, v], i) => ({
    name: `${prefix}${type}`, alias: aliasBase + i, type, value: value(type, v), timestamp: ts,
  }));
}

const client = sparkplug.newClient({
  serverUrl: opts.serverUrl,
  username: opts.username || "tahu",
  password: opts.password || "",
  groupId: opts.groupId,
  edgeNode: opts.edgeNode,
  clientId: opts.clientId || `tahu-${opts.edgeNode}`,
  publishDeath: opts.publishDeath !== false,
  version: "spBv1.0",
});

const counters = { births: 0, rebirths: 0, ncmd: 0, connects: 0 };
let ready = false;

// the primary host, as EdgeClient tracks it (see the header)
const hostId = opts.primaryHostId || null;
const stateTopic = hostId ? `spBv1.0/STATE/${hostId}` : null;
const primary = { online: false, last: null, states: [], stale: 0, held: 0, deaths: 0, granted: null };

if (hostId) {
  const mq = client.client;
  const [tahuOnMessage] = mq.listeners("message");
  mq.removeListener("message", tahuOnMessage);
  mq.on("message", (topic, message, packet) => {
    if (topic === stateTopic) onState(message, packet);
    else tahuOnMessage(topic, message, packet);
  });
}

function onState(message, packet) {
  let s;
  try {
    s = JSON.parse(message.toString("utf8"));
  } catch (err) {
    primary.states.push({ error: String(err), retain: packet.retain, qos: packet.qos });
    return;
  }
  primary.states.push({ online: s.online, timestamp: s.timestamp, keys: Object.keys(s),
                        retain: packet.retain, qos: packet.qos });
  // EdgeClient.handleStateMessage
  if (primary.last !== null && s.timestamp < primary.last) {
    primary.stale += 1;
    return;
  }
  primary.last = s.timestamp;
  if (s.online === true && !primary.online) {
    births();
    primary.online = true;  // after the births: no DATA before them
  } else if (s.online !== true && primary.online) {
    primary.online = false;
    for (const d of devices) client.publishDeviceDeath(d, { timestamp: now(), metrics: [] });
    client.publishNDeath(client.client);
    primary.deaths += 1;
  }
}

function announce() {
  if (ready) return;
  ready = true;
  const types = TYPES.map(([type, v], i) => ({ type, value: v, alias: i }));
  console.log("READY " + JSON.stringify({ clientId: client.mqttOptions.clientId, types,
                                         aliasBase: ALIAS_BASE }));
}

function births(extra) {
  const ts = now();
  // Tahu appends bdSeq (UInt64) to the NBIRTH itself and resets seq to 0
  client.publishNodeBirth({
    timestamp: ts,
    metrics: [
      { name: "Node Control/Rebirth", type: "Boolean", value: false },
      ...birthMetrics("node/", ALIAS_BASE.node, ts),
    ],
  });
  for (const d of devices) {
    client.publishDeviceBirth(d, {
      timestamp: ts,
      metrics: [...birthMetrics("", ALIAS_BASE.device, ts), ...(extra || []).map(metric)],
    });
  }
  counters.births += 1;
}

client.on("birth", () => {
  counters.connects += 1;
  if (!hostId) {
    births();
    announce();
    return;
  }
  primary.online = false;  // EdgeClient: wait for the host's STATE on every connect
  client.client.subscribe(stateTopic, { qos: 1 }, (err, granted) => {
    primary.granted = err ? String(err) : granted.map((g) => g.qos);
    announce();
  });
});

client.on("ncmd", (payload) => {
  counters.ncmd += 1;
  for (const m of payload.metrics || []) {
    if (m.name === "Node Control/Rebirth" && m.value === true) {
      counters.rebirths += 1;
      births();
    }
  }
});

client.on("error", (err) => console.log("tahu error: " + (err && err.message)));
client.on("offline", () => console.log("tahu offline"));
client.on("reconnect", () => console.log("tahu reconnecting"));

function raw(device, metrics, timestamp) {
  const topic = `spBv1.0/${opts.groupId}/${device ? "DDATA" : "NDATA"}/${opts.edgeNode}` +
    (device ? `/${device}` : "");
  const payload = Payload.fromObject({ timestamp, seq: client.incrementSeqNum(), metrics });
  client.client.publish(topic, Buffer.from(Payload.encode(payload).finish()));
}

function run(cmd) {
  switch (cmd.cmd) {
    case "ndata":
    case "ddata": {
      if (hostId && !primary.online) {
        primary.held += 1;
        return { ok: true, held: true };
      }
      const payload = { metrics: (cmd.metrics || []).map(metric) };
      if (cmd.timestamp !== undefined) payload.timestamp = cmd.timestamp;
      if (cmd.cmd === "ndata") client.publishNodeData(payload);
      else client.publishDeviceData(cmd.device, payload);
      return { ok: true, seq: client.seq - 1 };
    }
    case "births":
      births(cmd.extra);
      return { ok: true };
    case "ddeath":
      client.publishDeviceDeath(cmd.device, { timestamp: now(), metrics: [] });
      return { ok: true };
    case "raw":
      raw(cmd.device, cmd.metrics || [], cmd.timestamp === undefined ? now() : cmd.timestamp);
      return { ok: true };
    case "publish":
      client.client.publish(cmd.topic, cmd.payload, { qos: cmd.qos || 0 }, (err) => {
        console.log(JSON.stringify(err ? { error: String(err) } : { ok: true }));
      });
      return null;
    case "status":
      return { ok: true, ...counters, ...(hostId ? { primary } : {}) };
    case "stop":
      client.client.once("end", () => {
        console.log(JSON.stringify({ ok: true, stopped: true }));
        process.exit(0);
      });
      client.stop();
      return null;
    default:
      return { error: `unknown command ${JSON.stringify(cmd.cmd)}` };
  }
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (!line.trim()) return;
  let answer;
  try {
    answer = run(JSON.parse(line));
  } catch (err) {
    answer = { error: String((err && err.stack) || err) };
  }
  if (answer !== null) console.log(JSON.stringify(answer));
});
