#!/usr/bin/env node
// A Disque client for a pool of nodes, with no dependencies, standing in for "a Disque client
// in another language" in tests/faults/test_server_pool.py. It knows nothing of disquette:
// it speaks RESP over TCP, learns the pool's nodes with HELLO, and when the node it talks to
// stops answering (an error, or no reply within 2 s) it moves to another node HELLO listed
// (or another of the nodes it was given).
//
// Usage: node pool_client.js COUNT QUEUE SEED_HOST:PORT[,HOST:PORT...]
//
// It adds COUNT jobs one at a time (ADDJOB QUEUE BODY 0 RETRY 2), taking and acking one job
// after each add (GETJOB NOHANG, ACKJOB), then takes and acks until every job it added
// was acked. One JSON line per event on stdout, flushed as it goes:
//   {"node": "host:port", "t": seconds}      now talking to this node
//   {"added": id} / {"acked": id} / {"got": id}
//   {"error": text, "node": "host:port", "t": seconds}
//   {"done": true}

"use strict";

const net = require("net");

const REPLY_TIMEOUT_MS = 2000;

class ReplyError extends Error {}

function encode(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const data = Buffer.from(String(arg), "utf8");
    parts.push(Buffer.from(`$${data.length}\r\n`), data, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

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
      return [buf.toString("utf8", next, next + size), next + size + 2];
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
      throw new Error(`protocol error: reply type ${JSON.stringify(type)}`);
  }
}

class Connection {
  constructor(address) {
    const at = address.lastIndexOf(":");
    this.address = address;
    this.socket = net.createConnection({ host: address.slice(0, at), port: Number(address.slice(at + 1)) });
    this.buffer = Buffer.alloc(0);
    this.waiting = [];
    this.socket.on("data", (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      for (;;) {
        const reply = parse(this.buffer, 0);
        if (reply === null) break;
        this.buffer = this.buffer.subarray(reply[1]);
        const waiter = this.waiting.shift();
        if (waiter) waiter.resolve(reply[0]);
      }
    });
    const failAll = (error) => {
      for (const { reject } of this.waiting.splice(0)) reject(error);
    };
    this.socket.on("error", failAll);
    this.socket.on("close", () => failAll(new Error("connection closed")));
  }

  command(...args) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no reply in time")), REPLY_TIMEOUT_MS);
      this.waiting.push({
        resolve: (reply) => {
          clearTimeout(timer);
          if (reply instanceof ReplyError) reject(reply);
          else resolve(reply);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.socket.write(encode(args));
    });
  }

  close() {
    this.socket.destroy();
  }
}

const started = Date.now();
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const seconds = () => (Date.now() - started) / 1000;

class Pool {
  constructor(seeds) {
    this.seeds = seeds;
    this.nodes = seeds;
    this.index = 0;
    this.conn = null;
  }

  // The reply to a command, moving to the next node HELLO listed after any failure.
  async call(...args) {
    for (;;) {
      try {
        if (this.conn === null) await this.connect();
        return await this.conn.command(...args);
      } catch (error) {
        if (error instanceof ReplyError && !/^-?(LOADING|TRYAGAIN|ERR.*unavailable)/i.test(error.message)) throw error;
        say({ error: error.message, node: this.nodes[this.index], t: seconds() });
        if (this.conn !== null) this.conn.close();
        this.conn = null;
        this.index = (this.index + 1) % this.nodes.length;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  async connect() {
    const conn = new Connection(this.nodes[this.index]);
    const hello = await conn.command("HELLO");
    // HELLO: version, this node's id, then [id, ip, port, priority] per node.
    const listed = hello.slice(2).map((node) => `${node[1]}:${node[2]}`);
    const current = this.nodes[this.index];
    // The seeds stay candidates: a node that just started may not be in HELLO yet.
    const known = new Set([current, ...listed, ...this.seeds]);
    known.delete(current);
    this.nodes = [current, ...known];
    this.index = 0;
    this.conn = conn;
    say({ node: current, t: seconds() });
  }
}

async function main(argv) {
  const [count, queue, seeds] = argv;
  const pool = new Pool(seeds.split(","));
  const added = new Set();
  const acked = new Set();
  const take = async () => {
    const jobs = await pool.call("GETJOB", "NOHANG", "COUNT", "1", "FROM", queue);
    for (const job of jobs || []) {
      say({ got: job[1] });
      await pool.call("ACKJOB", job[1]);
      acked.add(job[1]);
      say({ acked: job[1] });
    }
    return (jobs || []).length;
  };
  for (let i = 0; i < Number(count); i++) {
    const id = await pool.call("ADDJOB", queue, `job ${i}`, "0", "RETRY", "2");
    added.add(id);
    say({ added: id });
    await take();
  }
  while ([...added].some((id) => !acked.has(id))) {
    if ((await take()) === 0) await new Promise((resolve) => setTimeout(resolve, 200));
  }
  say({ done: true });
  if (pool.conn !== null) pool.conn.close();
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (error) => {
    say({ fatal: error.message });
    process.exit(1);
  },
);
