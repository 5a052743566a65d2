// A node-opcua server that raises events and alarms on a machine node, for
// tests/interop/test_opcua_events_nodeopcua.py: a third-party event source nobody on
// tierproof wrote.
//
//   node opcua_events_server.js '<json options>'
//
// options: port (default 4840), pki (required: the server's PKI folder).
//
// Address space (ns = urn:tierproof:interop:events): Objects/Press1 (node id s=Press1), an
// event notifier and an event source of the Server object, with
//   - Press1.State   Int32, OPC 40001-1 MachineryItemState code (3 Executing, 1 OutOfService)
//   - Press1.Overload  an AlarmConditionType instance whose condition source is Press1
// and a custom event type JamEventType (s=JamEventType, a BaseEventType subtype).
//
// Prints "READY {endpoint, namespace, namespaceIndex, version}" once it serves. Commands on
// stdin (one JSON a line), each answered {"ok": {"time": <ms since the epoch it used>}}:
//   {"cmd": "state", "value": 1}                      Press1.State := value (source time: now)
//   {"cmd": "event", "type": "JamEventType"|"BaseEventType", "message": "...", "severity": 500}
//                                                      Press1 raises that event (Time: now)
//   {"cmd": "alarm", "message": "...", "severity": 800}
//                                                      Press1.Overload becomes active with a
//                                                      new condition event (Time: now)
//   {"cmd": "clear"}                                   Press1.Overload becomes inactive
"use strict";

const path = require("path");
const readline = require("readline");
const {
    OPCUAServer, OPCUACertificateManager, DataType, Variant, StatusCodes, LocalizedText,
} = require("node-opcua");

const opts = JSON.parse(process.argv[2] || "{}");
const NS_URI = "urn:tierproof:interop:events";

async function main() {
    const serverCertificateManager = new OPCUACertificateManager({
        rootFolder: opts.pki, automaticallyAcceptUnknownCertificate: true,
    });
    await serverCertificateManager.initialize();
    const server = new OPCUAServer({
        port: opts.port || 4840,
        resourcePath: "/UA/events",
        serverCertificateManager,
        buildInfo: { productName: "tierproof interop events" },
    });
    await server.initialize();
    const addressSpace = server.engine.addressSpace;
    const ns = addressSpace.registerNamespace(NS_URI);

    const jamType = ns.addEventType({ browseName: "JamEventType", nodeId: "s=JamEventType",
                                      subtypeOf: "BaseEventType" });
    const machine = ns.addObject({
        browseName: "Press1", nodeId: "s=Press1", organizedBy: addressSpace.rootFolder.objects,
        eventSourceOf: addressSpace.rootFolder.objects.server, eventNotifier: 1,
    });
    const state = ns.addVariable({
        componentOf: machine, browseName: "State", nodeId: "s=Press1.State", dataType: "Int32",
    });
    state.setValueFromSource(new Variant({ dataType: DataType.Int32, value: 3 }), StatusCodes.Good,
                             new Date());
    const alarm = ns.instantiateAlarmCondition("AlarmConditionType", {
        browseName: "Overload", nodeId: "s=Press1.Overload", componentOf: machine,
        conditionSource: machine, conditionName: "Overload", inputNode: state,
    });
    alarm.setEnabledState(true);

    await server.start();
    const endpoint = server.getEndpointUrl();
    process.stdout.write("READY " + JSON.stringify({
        endpoint, namespace: NS_URI, namespaceIndex: ns.index,
        version: require("node-opcua/package.json").version,
    }) + "\n");

    const commands = {
        state(c) {
            const now = new Date();
            state.setValueFromSource(new Variant({ dataType: DataType.Int32, value: c.value }),
                                     StatusCodes.Good, now);
            return now;
        },
        event(c) {
            const now = new Date();
            const type = c.type === "JamEventType" ? jamType : "BaseEventType";
            machine.raiseEvent(type, {
                message: { dataType: DataType.LocalizedText, value: new LocalizedText({ text: c.message }) },
                severity: { dataType: DataType.UInt16, value: c.severity || 500 },
                time: { dataType: DataType.DateTime, value: now },
            });
            return now;
        },
        alarm(c) {
            const now = new Date();
            alarm.activeState.setValue(true);
            alarm.raiseNewCondition({ message: c.message, severity: c.severity || 800,
                                      quality: StatusCodes.Good, retain: true });
            return now;
        },
        clear() {
            const now = new Date();
            alarm.activeState.setValue(false);
            alarm.raiseNewCondition({ message: "cleared", severity: 100,
                                      quality: StatusCodes.Good, retain: false });
            return now;
        },
    };

    const rl = readline.createInterface({ input: process.stdin });
    rl.on("line", (line) => {
        try {
            const c = JSON.parse(line);
            const at = commands[c.cmd](c);
            process.stdout.write(JSON.stringify({ ok: { time: at.getTime() } }) + "\n");
        } catch (err) {
            process.stdout.write(JSON.stringify({ error: String(err && err.stack || err) }) + "\n");
        }
    });
    const stop = async () => { await server.shutdown(0); process.exit(0); };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}

main().catch((err) => { console.error(err); process.exit(1); });
