// A Modbus server made with npm modbus-serial (not pymodbus), for the interop tests:
//
//   node modbus_server.js tcp <port>             ServerTCP (Modbus TCP) on 127.0.0.1:<port>
//   node modbus_server.js serial <path> [baud]   ServerSerial (Modbus RTU) on a serial port,
//                                                e.g. one end of a socat pty pair, 8N1
//
// modbus-serial 8.0.25 has no RTU-over-TCP server (ServerTCP speaks MBAP only).
//
// modbus-serial keeps no register tables of its own: it parses requests and calls the
// "vector" functions below for every register / bit, and turns an error they report into an
// exception response (err.modbusErrorCode, or 4 "slave device failure" for any other error).
// The tables here are per unit id. Prints `READY {"port": N}` when listening, then reads
// commands, one JSON object a line, and answers each with {"ok": ...}:
//
//   {"cmd": "set", "unit": 1, "table": "holding"|"input", "address": 0, "words": [1, 2]}
//   {"cmd": "bits", "unit": 1, "table": "coil"|"discrete", "address": 0, "bits": [true]}
//   {"cmd": "exception", "unit": 1, "table": "holding", "address": 7, "code": 2}  (0 clears)
//   {"cmd": "silent", "unit": 3, "on": true}  -- never call back: the request gets no answer
//   {"cmd": "mangle_fc", "fc": 4}  -- rewrite the function code of every answer (null: stop)
//   {"cmd": "calls"}  -- {"ok": {"<unit>/<fc>": vector calls}} (bit reads: one call a bit)
//
// A unit id without tables gets exception 11 (gateway target device failed to respond): the
// script's choice, as a gateway answers for a device missing behind it.
"use strict";

const readline = require("readline");
const ModbusRTU = require("modbus-serial");

const mode = process.argv[2];
const where = process.argv[3];
if (!["tcp", "serial"].includes(mode) || !where) {
    console.log("usage: node modbus_server.js tcp <port> | serial <path> [baud]");
    process.exit(2);
}

const SIZE = 65536;
const units = new Map(); // unit id -> {holding, input, coil, discrete, exc: {table: Map}}
const silent = new Set();
const requests = {};
let mangleFc = null;

function unit(id) {
    let u = units.get(id);
    if (!u) {
        u = {
            holding: new Uint16Array(SIZE), input: new Uint16Array(SIZE),
            coil: new Uint8Array(SIZE), discrete: new Uint8Array(SIZE),
            exc: { holding: new Map(), input: new Map(), coil: new Map(), discrete: new Map() },
        };
        units.set(id, u);
    }
    return u;
}

function count(unitID, fc) {
    const key = `${unitID}/${fc}`;
    requests[key] = (requests[key] || 0) + 1;
}

// the error to answer for [addr, addr + n) of a table, or null
function refusal(unitID, table, addr, n) {
    const u = units.get(unitID);
    if (!u) return { modbusErrorCode: 0x0B, msg: "no such unit" };
    for (let a = addr; a < addr + n; a++) {
        const code = u.exc[table].get(a);
        if (code) return { modbusErrorCode: code, msg: `exception ${code} at ${a}` };
    }
    return null;
}

// callback-style vector functions (modbus-serial tells the styles apart by arity)
function single(table, fc) {
    return function (addr, unitID, cb) {
        count(unitID, fc);
        if (silent.has(unitID)) return; // never answer
        const err = refusal(unitID, table, addr, 1);
        if (err) return cb(err);
        const v = units.get(unitID)[table][addr];
        cb(null, table === "coil" || table === "discrete" ? Boolean(v) : v);
    };
}

function multiple(table, fc) {
    return function (addr, length, unitID, cb) {
        count(unitID, fc);
        if (silent.has(unitID)) return;
        const err = refusal(unitID, table, addr, length);
        // modbus-serial 8.0.25 reads values[i] of a failed getMultipleInputRegisters before
        // reporting its error: without an array the TypeError becomes exception 4, whatever
        // modbusErrorCode says. (The holding-register path does not have this problem.)
        if (err) return cb(err, []);
        cb(null, Array.from(units.get(unitID)[table].subarray(addr, addr + length)));
    };
}

const vector = {
    getHoldingRegister: single("holding", 3),
    getMultipleHoldingRegisters: multiple("holding", 3),
    getInputRegister: single("input", 4),
    getMultipleInputRegisters: multiple("input", 4),
    getCoil: single("coil", 1),
    getDiscreteInput: single("discrete", 2),
    setRegister: function (addr, value, unitID, cb) {
        unit(unitID).holding[addr] = value;
        cb(null);
    },
    setCoil: function (addr, value, unitID, cb) {
        unit(unitID).coil[addr] = value ? 1 : 0;
        cb(null);
    },
};

let server;
let ready;
if (mode === "tcp") {
    const port = parseInt(where, 10);
    // unitID 255: answer every unit id (the vector decides)
    server = new ModbusRTU.ServerTCP(vector, { host: "127.0.0.1", port: port, unitID: 255 });
    ready = { port: port };
    server._server.on("connection", function (sock) {
        // ServerTCP writes whole MBAP frames; byte 7 is the function code. modbus-serial has
        // no way to send another function code than the request's: this rewrites it.
        const write = sock.write.bind(sock);
        sock.write = function (buf, ...rest) {
            if (mangleFc !== null && Buffer.isBuffer(buf) && buf.length > 7) {
                buf = Buffer.from(buf);
                buf[7] = mangleFc | (buf[7] & 0x80);
            }
            return write(buf, ...rest);
        };
    });
} else {
    const baud = parseInt(process.argv[4] || "19200", 10);
    server = new ModbusRTU.ServerSerial(vector, { path: where, baudRate: baud, parity: "none", unitID: 255 });
    ready = { path: where, baud: baud };
}
server.on("socketError", function (err) {
    console.log(`socket error: ${err && err.message}`);
});
server.on("serverError", function (err) {
    console.log(`server error: ${err && err.message}`);
    process.exit(1);
});
server.on("initialized", function () {
    console.log(`READY ${JSON.stringify(ready)}`);
});

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", function (line) {
    let cmd;
    try {
        cmd = JSON.parse(line);
    } catch (err) {
        console.log(JSON.stringify({ error: `not JSON: ${line}` }));
        return;
    }
    try {
        switch (cmd.cmd) {
            case "set":
                unit(cmd.unit)[cmd.table].set(cmd.words, cmd.address);
                break;
            case "bits":
                unit(cmd.unit)[cmd.table].set(cmd.bits.map((b) => (b ? 1 : 0)), cmd.address);
                break;
            case "exception":
                if (cmd.code) unit(cmd.unit).exc[cmd.table].set(cmd.address, cmd.code);
                else unit(cmd.unit).exc[cmd.table].delete(cmd.address);
                break;
            case "silent":
                if (cmd.on) silent.add(cmd.unit);
                else silent.delete(cmd.unit);
                break;
            case "mangle_fc":
                mangleFc = cmd.fc;
                break;
            case "calls":
                console.log(JSON.stringify({ ok: requests }));
                return;
            default:
                throw new Error(`unknown command ${cmd.cmd}`);
        }
        console.log(JSON.stringify({ ok: true }));
    } catch (err) {
        console.log(JSON.stringify({ error: String(err && err.message) }));
    }
});
rl.on("close", function () {
    server.close(() => process.exit(0));
});
