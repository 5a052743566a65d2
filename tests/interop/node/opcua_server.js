// A node-opcua server for tests/interop/test_opcua_*.py: a third-party OPC UA server that
// nobody on tierproof wrote.
//
//   node opcua_server.js '<json options>'
//
// options (all optional):
//   port            TCP port (default 4840)
//   resourcePath    endpoint path (default "/UA/interop")
//   pki             the server's PKI folder (own/, trusted/, rejected/; created if missing);
//                   required
//   policies        security policies offered, e.g. ["None", "Basic256Sha256",
//                   "Aes256_Sha256_RsaPss"] (default ["None"])
//   modes           security modes offered, e.g. ["None", "Sign", "SignAndEncrypt"]
//                   (default ["None"]); node-opcua offers every policy x mode pair
//   users           {user: password}; when given, a user must log in (no anonymous access)
//   certificateFile, privateKeyFile   the server's own certificate and key (PEM); without
//                   them node-opcua makes a self-signed one in pki/own
//   applicationUri  the server's application URI (must be the one in certificateFile)
//   tickMs          how often every variable changes (default 200)
//   sourceBase      SourceTimestamp of tick 0, ms since the epoch (default 2029-01-01)
//
// Address space: Objects/Machine (ns = urn:tierproof:interop) with one variable of every
// scalar type, node id "s=Machine.<Type>", plus Machine.Bad (status BadSensorFailure) and
// Machine.Uncertain (UncertainLastUsableValue). At tick k every variable takes value(k) with
// SourceTimestamp sourceBase + k s (node-opcua sends the same instant as ServerTimestamp).
// Machine.Counter (Double, = k) is getter-backed: node-opcua stamps it with its own clock as
// SourceTimestamp and sends ServerTimestamp 0, the null date 1601-01-01 (as it does for the
// standard Server_ServerStatus_CurrentTime, i=2258).
//
// Node 20: npm warns EBADENGINE at install (node-opcua declares >= 22.13) and node-opcua
// prints a warning about --security-revert=CVE-2023-46809 at start; that flag only matters for
// RSA PKCS#1 v1.5 *decryption* (Basic128Rsa15), which no policy offered here uses
// (Basic256Sha256 and Aes256_Sha256_RsaPss encrypt with RSA-OAEP), so it is not passed.
//
// Prints "READY {endpoint, namespace, namespaceIndex, pki, version, certificate}" once it
// serves (certificate: the server certificate's PEM file). Commands on stdin (one JSON a line):
//   {"cmd": "history"}   -> {"ok": {"<Type>": [[sourceMs, value], ...]}} every value set so far
//                           (Int64/UInt64 as numbers, DateTime as ISO text, LocalizedText text)
//   {"cmd": "rejected"}  -> {"ok": [file names in pki/rejected]}
"use strict";

const fs = require("fs");
const path = require("path");
const {
    OPCUAServer, OPCUACertificateManager, DataType, Variant, StatusCodes,
    SecurityPolicy, MessageSecurityMode, VariantArrayType, coerceInt64, coerceUInt64, LocalizedText,
} = require("node-opcua");

const opts = JSON.parse(process.argv[2] || "{}");
const NS_URI = "urn:tierproof:interop";
const tickMs = opts.tickMs || 200;
const sourceBase = opts.sourceBase || Date.UTC(2029, 0, 1);

// value at tick k, as the variant value and as the JSON the test compares with
const TYPES = {
    Boolean: [DataType.Boolean, (k) => k % 2 === 1],
    SByte: [DataType.SByte, (k) => -100 + (k % 200)],
    Byte: [DataType.Byte, (k) => (7 * k) % 256],
    Int16: [DataType.Int16, (k) => -30000 + k],
    UInt16: [DataType.UInt16, (k) => 60000 + (k % 5000)],
    Int32: [DataType.Int32, (k) => -2000000000 + k],
    UInt32: [DataType.UInt32, (k) => 4000000000 + k],
    Int64: [DataType.Int64, (k) => -(2 ** 40) - k],
    UInt64: [DataType.UInt64, (k) => 2 ** 40 + k],
    Float: [DataType.Float, (k) => 0.5 + k],
    Double: [DataType.Double, (k) => 1000.25 + k * 0.5],
    String: [DataType.String, (k) => "recipe-" + k],
    DateTime: [DataType.DateTime, (k) => new Date(Date.UTC(2030, 0, 1) + k * 1000)],
    LocalizedText: [DataType.LocalizedText, (k) => "state " + k],
};
const STATUS = {
    Bad: [DataType.Double, (k) => 1 + k, StatusCodes.BadSensorFailure],
    Uncertain: [DataType.Double, (k) => 2 + k, StatusCodes.UncertainLastUsableValue],
};

function variantValue(dataType, v) {
    // node-opcua keeps 64-bit integers as [high, low]; its string form takes negatives too
    if (dataType === DataType.Int64) return coerceInt64(String(v));
    if (dataType === DataType.UInt64) return coerceUInt64(String(v));
    if (dataType === DataType.LocalizedText) return new LocalizedText({ text: v, locale: "en" });
    return v;
}

function jsonValue(v) {
    return v instanceof Date ? v.toISOString() : v;
}

function answer(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

async function main() {
    if (!opts.pki) throw new Error("option pki (the server's PKI folder) is required");
    const pki = opts.pki;
    const serverCertificateManager = new OPCUACertificateManager({
        rootFolder: pki, automaticallyAcceptUnknownCertificate: false,
    });
    await serverCertificateManager.initialize();

    const serverOptions = {
        port: opts.port || 4840,
        resourcePath: opts.resourcePath || "/UA/interop",
        serverCertificateManager,
        securityPolicies: (opts.policies || ["None"]).map((p) => SecurityPolicy[p]),
        securityModes: (opts.modes || ["None"]).map((m) => MessageSecurityMode[m]),
        allowAnonymous: !opts.users,
        buildInfo: { productName: "tierproof interop peer (node-opcua)" },
    };
    if (opts.certificateFile) {
        serverOptions.certificateFile = opts.certificateFile;
        serverOptions.privateKeyFile = opts.privateKeyFile;
    }
    if (opts.applicationUri) {
        serverOptions.serverInfo = { applicationUri: opts.applicationUri };
    }
    if (opts.users) {
        serverOptions.userManager = {
            isValidUser: (user, password) => opts.users[user] !== undefined && opts.users[user] === password,
        };
    }
    const server = new OPCUAServer(serverOptions);
    await server.initialize();

    const addressSpace = server.engine.addressSpace;
    const namespace = addressSpace.registerNamespace(NS_URI);
    const machine = namespace.addObject({
        organizedBy: addressSpace.rootFolder.objects, browseName: "Machine", nodeId: "s=Machine",
    });
    const variables = {};
    const history = {};
    const all = Object.assign({}, TYPES, STATUS);
    for (const [name, [dataType, f, status]] of Object.entries(all)) {
        variables[name] = namespace.addVariable({
            componentOf: machine, browseName: name, nodeId: "s=Machine." + name, dataType,
            minimumSamplingInterval: 50,
        });
        history[name] = [];
        variables[name].__status = status || StatusCodes.Good;
        variables[name].__f = f;
        variables[name].__dataType = dataType;
    }

    let k = 0;
    // a variable whose value comes from a getter, as many real servers expose live data
    namespace.addVariable({
        componentOf: machine, browseName: "Counter", nodeId: "s=Machine.Counter", dataType: DataType.Double,
        minimumSamplingInterval: 100,
        value: { get: () => new Variant({ dataType: DataType.Double, value: k }) },
    });
    function tick() {
        const source = new Date(sourceBase + k * 1000);
        for (const [name, variable] of Object.entries(variables)) {
            const v = variable.__f(k);
            const variant = new Variant({
                dataType: variable.__dataType, arrayType: VariantArrayType.Scalar,
                value: variantValue(variable.__dataType, v),
            });
            variable.setValueFromSource(variant, variable.__status, source);
            history[name].push([source.getTime(), jsonValue(v)]);
        }
        k += 1;
    }
    tick();
    setInterval(tick, tickMs);

    await server.start();
    const endpoint = server.getEndpointUrl();
    const readline = require("readline");
    const rl = readline.createInterface({ input: process.stdin });
    rl.on("line", (line) => {
        let cmd;
        try {
            cmd = JSON.parse(line);
        } catch (err) {
            answer({ error: "not JSON: " + line });
            return;
        }
        try {
            if (cmd.cmd === "history") answer({ ok: history });
            else if (cmd.cmd === "rejected") {
                const dir = path.join(pki, "rejected");
                answer({ ok: fs.existsSync(dir) ? fs.readdirSync(dir) : [] });
            } else answer({ error: "unknown command " + cmd.cmd });
        } catch (err) {
            answer({ error: String(err) });
        }
    });
    const namespaceIndex = addressSpace.getNamespaceIndex(NS_URI);
    const version = require("node-opcua/package.json").version;
    process.stdout.write("READY " + JSON.stringify({
        endpoint, namespace: NS_URI, namespaceIndex, pki, version,
        certificate: opts.certificateFile || path.join(pki, "own", "certs", "certificate.pem"),
    }) + "\n");
    for (const sig of ["SIGTERM", "SIGINT"]) {
        process.on(sig, async () => {
            await server.shutdown(0);
            process.exit(0);
        });
    }
}

main().catch((err) => {
    console.log("FAILED " + (err && err.stack ? err.stack : err));
    process.exit(1);
});
