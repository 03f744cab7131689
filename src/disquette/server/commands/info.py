"""INFO and its sections."""

from __future__ import annotations

import os
import platform
import resource
import sys
import sysconfig
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from .. import protocol
from ..protocol import SYNTAX_ERROR
from ..server import Server

if TYPE_CHECKING:
    from ..session import Session


async def cmd_info(session: Session, args: list[bytes]) -> bytes:
    """INFO [section]: ``key:value`` lines in ``# Section`` groups."""
    server = session.server
    if len(args) > 2:
        return SYNTAX_ERROR
    wanted = args[1].decode(errors="replace").lower() if len(args) > 1 else "default"
    sections: list[tuple[str, Callable[[], Awaitable[list[str]]]]] = [
        ("server", server_info(server)),
        ("clients", clients_info(server)),
        ("memory", memory_info()),
        ("jobs", jobs_info(server)),
        ("queues", queues_info(server)),
        ("persistence", persistence_info(server)),
        ("stats", stats_info(server)),
        ("cpu", cpu_info()),
    ]
    parts = []
    for name, lines in sections:
        if wanted in ("default", "all", "everything", name):
            parts.append(
                f"# {name.capitalize() if name != 'cpu' else 'CPU'}\r\n"
                + "".join(line + "\r\n" for line in await lines())
            )
    return protocol.bulk("\r\n".join(parts))


def server_info(server: Server) -> Callable[[], Awaitable[list[str]]]:
    """The Server section."""

    async def lines() -> list[str]:
        uptime = int(time.time() - server.started)
        return [
            "disque_version:1.0-rc1",
            "disque_git_sha1:00000000",
            "disque_git_dirty:0",
            "disque_build_id:0",
            "disquette_store:" + server.store.url.partition(":")[0],
            f"os:{platform.system()} {platform.release()} {platform.machine()}",
            "arch_bits:64",
            f"multiplexing_api:{server.multiplexing_api}",
            "gcc_version:0.0.0",
            f"process_id:{os.getpid()}",
            f"run_id:{server.run_id}",
            f"tcp_port:{server.node.port}",
            f"uptime_in_seconds:{uptime}",
            f"uptime_in_days:{uptime // 86400}",
            "hz:10",
            f"executable:{sys.executable}",
            "config_file:",
        ]

    return lines


def clients_info(server: Server) -> Callable[[], Awaitable[list[str]]]:
    """The Clients section."""

    async def lines() -> list[str]:
        return [
            f"connected_clients:{server.connected}",
            "client_longest_output_list:0",
            "client_biggest_input_buf:0",
            f"blocked_clients:{server.blocked}",
        ]

    return lines


def memory_info() -> Callable[[], Awaitable[list[str]]]:
    """The Memory section: this process' resident size (the store may be elsewhere).

    Disque reports what its allocator handed out (``used_memory``) beside the resident
    size; Python's allocators keep no such total, so both are the resident size and
    ``mem_fragmentation_ratio`` is 1.00. The peak is the kernel's (``ru_maxrss``)."""

    async def lines() -> list[str]:
        peak = peak_rss()
        used = resident_size() or peak
        peak = max(peak, used)
        return [
            f"used_memory:{used}",
            f"used_memory_human:{human_bytes(used)}",
            f"used_memory_rss:{used}",
            f"used_memory_peak:{peak}",
            f"used_memory_peak_human:{human_bytes(peak)}",
            "mem_fragmentation_ratio:1.00",
            f"mem_allocator:{MEM_ALLOCATOR}",
            "maxmemory:1073741824",
        ]

    return lines


#: Python's small-object allocator, over the C library's malloc.
MEM_ALLOCATOR: Final = "pymalloc" if sysconfig.get_config_var("WITH_PYMALLOC") else "libc"


def resident_size() -> int:
    """This process' resident set size in bytes now (0 where /proc does not tell)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return 0


def peak_rss() -> int:
    """This process' largest resident set size so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB


def human_bytes(size: int) -> str:
    """Sizes as Disque's INFO writes them: ``512B``, ``1.50K``, ``36.20M``, ``2.00G``."""
    if size < 1024:
        return f"{size}B"
    value, unit = size / 1024, "K"
    for bigger in "MGT":
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.2f}{unit}"


def jobs_info(server: Server) -> Callable[[], Awaitable[list[str]]]:
    """The Jobs section: jobs not yet acked, in the whole store."""

    async def lines() -> list[str]:
        rows = (await server.store.stats()).rows
        count = sum(r.scheduled + r.queued + r.active + r.failed for r in rows)
        return [f"registered_jobs:{count}"]

    return lines


def queues_info(server: Server) -> Callable[[], Awaitable[list[str]]]:
    """The Queues section."""

    async def lines() -> list[str]:
        known = {info.name for info in await server.store.queues()}
        return [f"registered_queues:{len(known | server.recent_queues())}"]

    return lines


def persistence_info(server: Server) -> Callable[[], Awaitable[list[str]]]:
    """The Persistence section: the store is the persistence, so no AOF exists (off, never
    rewritten: BGREWRITEAOF does nothing). ``aof_last_write_status`` tells whether the
    store took the last batch of ADDJOBs (``err`` while it is unreachable)."""

    async def lines() -> list[str]:
        return [
            "loading:0",
            "aof_enabled:0",
            "aof_state:off",
            "aof_rewrite_in_progress:0",
            "aof_rewrite_scheduled:0",
            "aof_last_rewrite_time_sec:-1",
            "aof_current_rewrite_time_sec:-1",
            "aof_last_bgrewrite_status:ok",
            f"aof_last_write_status:{'ok' if server.last_write_ok else 'err'}",
        ]

    return lines


def stats_info(server: Server) -> Callable[[], Awaitable[list[str]]]:
    """The Stats section."""

    async def lines() -> list[str]:
        ops, read, written = server.rates.per_second()
        return [
            f"total_connections_received:{server.total_connections}",
            f"total_commands_processed:{server.commands_processed}",
            f"instantaneous_ops_per_sec:{round(ops)}",
            f"total_net_input_bytes:{server.net_input_bytes}",
            f"total_net_output_bytes:{server.net_output_bytes}",
            f"instantaneous_input_kbps:{read / 1024:.2f}",
            f"instantaneous_output_kbps:{written / 1024:.2f}",
            f"rejected_connections:{server.rejected_connections}",
            "latest_fork_usec:0",  # the server never forks
        ]

    return lines


def cpu_info() -> Callable[[], Awaitable[list[str]]]:
    """The CPU section."""

    async def lines() -> list[str]:
        times = os.times()
        return [
            f"used_cpu_sys:{times.system:.2f}",
            f"used_cpu_user:{times.user:.2f}",
            f"used_cpu_sys_children:{times.children_system:.2f}",
            f"used_cpu_user_children:{times.children_user:.2f}",
        ]

    return lines
