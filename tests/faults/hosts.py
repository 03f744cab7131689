"""Test hosts on one machine: network namespaces joined by veth pairs to a bridge.

Each :class:`Host` is a namespace of its own with one interface (``eth0``, an address in a
private /24 that exists only inside the namespaces made here) plugged into a bridge that
lives in a hub namespace, so nothing is added to the machine's own network stack. Links can
be cut (the hub side of a host's veth goes down: its packets go nowhere, silently, as on a
pulled cable) and every link slowed and made lossy (:meth:`Network.shape`).

Everything made here (namespaces, interfaces, processes started in them) is removed by
:meth:`Network.close`, which the fixtures call in ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Final, NoReturn

import pytest

#: The worktree: where ``python -m tests.faults.agent`` runs from.
ROOT: Final = Path(__file__).resolve().parents[2]


def agent_env() -> dict[str, str]:
    """The environment of processes started in hosts: this checkout's code first."""
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}


def agent(*args: str) -> list[str]:
    """The command line of an agent role (see :mod:`tests.faults.agent`)."""
    return [sys.executable, "-m", "tests.faults.agent", *args]


def unavailable(reason: str) -> NoReturn:
    """Skip loudly or, under ``CI=true``, fail: a CI run must run the fault suite."""
    message = f"fault tests cannot run: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def check_namespaces() -> None:
    """Skip (or fail under CI) unless this process can make namespaces and shape links."""
    if os.geteuid() != 0:
        unavailable("network namespaces need root (run the suite as root, as CI does)")
    if shutil.which("ip") is None:
        unavailable("'ip' is not on PATH (apt-get install iproute2)")
    probe = f"dqprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        unavailable(f"'ip netns add' failed: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, check=False)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Host:
    """One namespace on the test network: run processes in it, cut or slow its link."""

    def __init__(self, network: Network, name: str, index: int) -> None:
        self.network = network
        self.name = name
        self.namespace = f"{network.tag}{name}"
        #: The hub-side end of this host's link.
        self.peer = f"v{index}"
        self.address = f"{network.prefix}.{index}"
        self.processes: list[subprocess.Popen[Any]] = []

    def command(self, args: Sequence[str], user: str | None = None) -> list[str]:
        """``args`` as run inside this host (as ``user`` when given)."""
        prefix = ["ip", "netns", "exec", self.namespace]
        if user is not None:
            prefix += ["runuser", "-u", user, "--"]
        return [*prefix, *args]

    def run(
        self, args: Sequence[str], *, user: str | None = None, check: bool = True, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in this host to completion."""
        kw.setdefault("timeout", 120)
        kw.setdefault("cwd", ROOT)
        kw.setdefault("env", agent_env())
        return subprocess.run(
            self.command(args, user), check=check, capture_output=True, text=True, **kw
        )

    def popen(
        self, args: Sequence[str], *, log: Path, user: str | None = None, **kw: Any
    ) -> subprocess.Popen[Any]:
        """Start a process in this host, its output going to ``log``; it is stopped by
        :meth:`Network.close` if the test has not stopped it."""
        out: IO[Any] = log.open("ab")
        kw.setdefault("cwd", ROOT)
        kw.setdefault("env", agent_env())
        try:
            process = subprocess.Popen(
                self.command(args, user),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kw,
            )
        finally:
            out.close()
        self.processes.append(process)
        return process

    def cut(self) -> None:
        """Unplug this host: its link goes down on the hub side, packets are dropped."""
        _ip("-n", self.network.hub, "link", "set", self.peer, "down")

    def heal(self) -> None:
        """Plug this host back in."""
        _ip("-n", self.network.hub, "link", "set", self.peer, "up")


class Network:
    """A bridge in a hub namespace and the hosts plugged into it."""

    def __init__(self) -> None:
        #: Namespace names start with this (unique per network, short: names show in ``ip``).
        self.tag = f"dq{uuid.uuid4().hex[:5]}"
        self.hub = f"{self.tag}hub"
        self.prefix = f"10.{random.randint(64, 127)}.{random.randint(0, 255)}"
        self.hosts: dict[str, Host] = {}
        self.namespaces: list[str] = []
        self.delayer: subprocess.Popen[bytes] | None = None

    def open(self) -> Network:
        """Make the hub and its bridge."""
        self._namespace(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        return self

    def _namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def host(self, name: str) -> Host:
        """A new host plugged into the bridge, with the next address."""
        host = Host(self, name, len(self.hosts) + 1)
        self._namespace(host.namespace)
        _ip("link", "add", "eth0", "netns", host.namespace, "type", "veth",
            "peer", "name", host.peer, "netns", self.hub)  # fmt: skip
        _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.namespace, "link", "set", "eth0", "up")
        _ip("-n", self.hub, "link", "set", host.peer, "master", "br0")
        _ip("-n", self.hub, "link", "set", host.peer, "up")
        self.hosts[name] = host
        return host

    def shape(self, delay_ms: float, loss_percent: float) -> None:
        """Delay every packet between hosts by ``delay_ms`` and drop ``loss_percent`` of
        them, as ``tc netem`` on the egress of every host's link would.

        This kernel may have no ``netem`` (``sch_netem``): the bridge hands IPv4 packets to
        iptables (``br_netfilter``), which drops at random (``statistic``) and queues the
        rest to :mod:`tests.faults.delayer` (``NFQUEUE``), which holds each for the delay.
        """
        if shutil.which("iptables") is None:
            unavailable("iptables is not on PATH (apt-get install iptables)")
        hub = ["ip", "netns", "exec", self.hub]
        bridged = [*hub, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]
        if subprocess.run(bridged, capture_output=True, timeout=30).returncode != 0:
            # Where br_netfilter is a module not loaded yet (distribution kernels).
            with contextlib.suppress(OSError):
                subprocess.run(["modprobe", "br_netfilter"], capture_output=True, timeout=30)
            done = subprocess.run(bridged, capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                unavailable(f"bridged packets cannot reach iptables: {done.stderr.strip()}")
        if self.delayer is None:
            self.delayer = subprocess.Popen(
                [*hub, sys.executable, "-m", "tests.faults.delayer", "0", f"{delay_ms:g}"],
                cwd=ROOT, env=agent_env(), start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        for rule in (
            ["-m", "statistic", "--mode", "random", "--probability", f"{loss_percent / 100:g}",
             "-j", "DROP"],
            ["-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"],
        ):  # fmt: skip
            subprocess.run([*hub, "iptables", "-A", "FORWARD", *rule],
                           check=True, capture_output=True, timeout=30)  # fmt: skip

    def shaped(self) -> tuple[int, int]:
        """(packets dropped, packets delayed) by :meth:`shape` so far."""
        listing = subprocess.run(
            ["ip", "netns", "exec", self.hub, "iptables", "-L", "FORWARD", "-v", "-x", "-n"],
            check=True, capture_output=True, text=True, timeout=30,
        ).stdout  # fmt: skip
        counts = {
            line.split()[2]: int(line.split()[0])
            for line in listing.splitlines()
            if line.split()[2:3] in (["DROP"], ["NFQUEUE"])
        }
        return counts.get("DROP", 0), counts.get("NFQUEUE", 0)

    def close(self) -> None:
        """Stop every process started in the hosts, then delete every namespace."""
        for host in self.hosts.values():
            for process in host.processes:
                stop(process)
        if self.delayer is not None:
            stop(self.delayer)
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
        self.namespaces.clear()


def stop(process: subprocess.Popen[Any], sig: int = signal.SIGKILL, wait: float = 10) -> None:
    """Send ``sig`` to a process we started (and its session), then reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(wait)


def wait_for(
    predicate: Any, timeout: float, what: str, pause: float = 0.1, explain: Any = None
) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` (and what ``explain()``
    says) after ``timeout`` seconds (a deadline against hangs, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            detail = f": {explain()}" if explain is not None else ""
            pytest.fail(f"gave up waiting for {what} after {timeout:g} s{detail}")
        time.sleep(pause)
