"""A packet delayer for kernels without ``tc netem``: packets that nftables sends to an
NFQUEUE are held for a fixed delay, then accepted, in order.

It speaks nfnetlink_queue over a raw netlink socket (no library): bind a queue, ask for
packet metadata only, and give each packet an ``NF_ACCEPT`` verdict once its delay has
passed. Run it inside the namespace whose nftables rules queue the packets::

    python -m tests.faults.delayer QUEUE DELAY_MS

Loss is nftables' own (``numgen random``); only delay needs this process.
"""

from __future__ import annotations

import collections
import socket
import struct
import sys
import threading
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQA_CFG_F_FAIL_OPEN = 1
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2


def _attribute(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _message(kind: int, queue: int, attributes: bytes, sequence: int) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attributes
    header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind,
                         NLM_F_REQUEST, sequence, 0)  # fmt: skip
    return header + body


def _packet_ids(data: bytes) -> list[int]:
    """The packet ids of the queued-packet messages in one netlink read."""
    ids = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            at = offset + 20  # netlink header, then nfgenmsg
            while at + 4 <= offset + length:
                attr_length, attr_kind = struct.unpack_from("=HH", data, at)
                if attr_length < 4:
                    break
                if attr_kind & 0x7FFF == NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from(">I", data, at + 4)[0])
                    break
                at += attr_length + (-attr_length % 4)
        offset += length + (-length % 4)
    return ids


def serve(queue: int, delay: float) -> None:
    """Hold every packet of ``queue`` for ``delay`` seconds, forever."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    config = (
        _attribute(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, 0))
        + _attribute(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META))
        + _attribute(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", 65536))
        + _attribute(NFQA_CFG_FLAGS, struct.pack(">I", NFQA_CFG_F_FAIL_OPEN))
        + _attribute(NFQA_CFG_MASK, struct.pack(">I", NFQA_CFG_F_FAIL_OPEN))
    )
    sock.send(_message(NFQNL_MSG_CONFIG, queue, config, 1))
    held: collections.deque[tuple[float, int]] = collections.deque()
    ready = threading.Condition()

    def release() -> None:
        while True:
            with ready:
                while not held:
                    ready.wait()
                due, packet = held[0]
                pause = due - time.monotonic()
                if pause > 0:
                    ready.wait(pause)
                    continue
                held.popleft()
            verdict = _attribute(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, packet))
            sock.send(_message(NFQNL_MSG_VERDICT, queue, verdict, 0))

    threading.Thread(target=release, daemon=True).start()
    print(f"delaying queue {queue} by {delay * 1000:g} ms", flush=True)
    while True:
        data = sock.recv(1 << 16)
        ids = _packet_ids(data)
        if ids:
            due = time.monotonic() + delay
            with ready:
                held.extend((due, packet) for packet in ids)
                ready.notify()


if __name__ == "__main__":
    serve(int(sys.argv[1]), float(sys.argv[2]) / 1000)
