#!/usr/bin/env node
// A small Disque client with no dependencies, standing in for "any Disque client in any
// language" in tests/server/test_cross_language.py. It speaks RESP over a plain TCP socket
// (node's `net`), as a third-party client would, and knows nothing of disquette.
//
// Usage (one line of JSON on stdout; a server error reply goes to stderr, exit status 1):
//
//   node disque_client.js PORT addjob QUEUE BODY...      -> ["D-...", ...]  (ADDJOB QUEUE BODY 0)
//   node disque_client.js PORT getjob QUEUE COUNT [--nohang] [--no-ack]
//        -> {"jobs": [[queue, id, body], ...], "acked": N}
//        GETJOB TIMEOUT 5000 (or NOHANG) COUNT n FROM QUEUE, then ACKJOB of every id
//        received (unless --no-ack); "jobs" is [] when nothing came.
//   node disque_client.js PORT ackjob ID...              -> N  (ACKJOB's integer reply)
//   node disque_client.js PORT call ARG...               -> any reply, as JSON
//
// Bulk strings print as strings when they are valid UTF-8, else as {"base64": "..."}, so a
// body is always reported exactly. Null replies ($-1, *-1) print as null.

"use strict";

const net = require("net");

class ReplyError extends Error {}

// Encode one command as a RESP array of bulk strings (binary safe: lengths in bytes).
function encode(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const data = Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg), "utf8");
    parts.push(Buffer.from(`$${data.length}\r\n`), data, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

// Parse one reply from buf at offset; return [value, nextOffset], or null if incomplete.
// Bulk strings are Buffers, errors are ReplyError instances (not thrown: an error can sit
// inside an array), null bulk strings and null arrays are null.
function parse(buf, offset) {
  const end = buf.indexOf("\r\n", offset);
  if (end < 0) return null;
  const type = String.fromCharCode(buf[offset]);
  const line = buf.toString("utf8", offset + 1, end);
  const next = end + 2;
  switch (type) {
    case "+":
      return [line, next];
    case "-":
      return [new ReplyError(line), next];
    case ":":
      return [Number(line), next];
    case "$": {
      const size = Number(line);
      if (size < 0) return [null, next];
      if (buf.length < next + size + 2) return null;
      return [buf.subarray(next, next + size), next + size + 2];
    }
    case "*": {
      const count = Number(line);
      if (count < 0) return [null, next];
      const items = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parse(buf, at);
        if (item === null) return null;
        items.push(item[0]);
        at = item[1];
      }
      return [items, at];
    }
    default:
      throw new Error(`protocol error: unexpected reply type ${JSON.stringify(type)}`);
  }
}

// One connection; call() sends a command and resolves with its reply, in order.
class Connection {
  constructor(port) {
    this.socket = net.createConnection({ host: "127.0.0.1", port });
    this.buffer = Buffer.alloc(0);
    this.waiting = [];
    this.socket.on("data", (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      for (;;) {
        const reply = parse(this.buffer, 0);
        if (reply === null) break;
        this.buffer = this.buffer.subarray(reply[1]);
        this.waiting.shift().resolve(reply[0]);
      }
    });
    const failAll = (error) => {
      for (const { reject } of this.waiting.splice(0)) reject(error);
    };
    this.socket.on("error", failAll);
    this.socket.on("close", () => failAll(new Error("connection closed")));
  }

  call(...args) {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.socket.write(encode(args));
    });
  }

  // Like call(), but an error reply is thrown.
  async command(...args) {
    const reply = await this.call(...args);
    if (reply instanceof ReplyError) throw reply;
    return reply;
  }

  close() {
    this.socket.end();
  }
}

function text(value) {
  const decoded = value.toString("utf8");
  // Valid UTF-8 round-trips exactly; anything else is reported as base64.
  return Buffer.from(decoded, "utf8").equals(value) ? decoded : { base64: value.toString("base64") };
}

function toJSON(value) {
  if (Buffer.isBuffer(value)) return text(value);
  if (value instanceof ReplyError) return { error: value.message };
  if (Array.isArray(value)) return value.map(toJSON);
  return value;
}

async function main(argv) {
  const [port, command, ...rest] = argv;
  if (!port || !command) throw new Error("usage: disque_client.js PORT COMMAND ARG...");
  const conn = new Connection(Number(port));
  try {
    switch (command) {
      case "addjob": {
        const [queue, ...bodies] = rest;
        const ids = [];
        for (const body of bodies) ids.push(await conn.command("ADDJOB", queue, body, "0"));
        return ids;
      }
      case "getjob": {
        const [queue, count, ...flags] = rest;
        const wait = flags.includes("--nohang") ? ["NOHANG"] : ["TIMEOUT", "5000"];
        const reply = await conn.command("GETJOB", ...wait, "COUNT", count, "FROM", queue);
        const jobs = reply === null ? [] : reply;
        let acked = 0;
        if (!flags.includes("--no-ack") && jobs.length > 0) {
          acked = await conn.command("ACKJOB", ...jobs.map((job) => job[1]));
        }
        return { jobs: toJSON(jobs), acked };
      }
      case "ackjob":
        return await conn.command("ACKJOB", ...rest);
      case "call":
        return toJSON(await conn.command(...rest));
      default:
        throw new Error(`unknown command ${command}`);
    }
  } finally {
    conn.close();
  }
}

main(process.argv.slice(2)).then(
  (result) => {
    process.stdout.write(JSON.stringify(result) + "\n");
  },
  (error) => {
    process.stderr.write((error instanceof ReplyError ? "-" : "") + error.message + "\n");
    process.exitCode = 1;
  },
);
