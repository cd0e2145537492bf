"""The machine this worker runs on: CPU, load, memory, swap, disks, network, processes."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from monitoring.collectors.base import Collector, Scope, register
from monitoring.storage import Reading

#: Filesystems that hold no user data (kernel views, memory-backed, container plumbing).
PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs",
        "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "proc", "pstore", "ramfs", "rpc_pipefs",
        "securityfs", "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs", "nfsd", "fuse.lxcfs",
        "fuse.gvfsd-fuse", "fuse.portal", "overlay-ro", "iso9660",
    }
)  # fmt: skip
#: Mount points below these are kernel views even when their type looks real.
PSEUDO_MOUNT_PREFIXES = ("/proc", "/sys", "/dev", "/run/credentials", "/snap/")
#: Interfaces that come and go with containers; counting them would grow series without end.
SKIPPED_INTERFACE_PREFIXES = ("veth", "cali", "flannel", "cni", "docker_gwbridge")
#: Bounds on label values per collection (cardinality guard on odd machines).
MAX_MOUNTS = 50
MAX_INTERFACES = 32
#: When no previous CPU sample exists in this process, measure over this long.
CPU_FIRST_SAMPLE_SECONDS = 0.25


class _CpuMeter:
    """CPU busy share since the previous call in this process (any thread).

    ``psutil.cpu_percent(interval=None)`` keeps its previous sample per thread, so in a
    threads-pool worker a collection landing on another thread would read "since
    forever" or 0.0. Keeping the sample here makes every reading cover the time since
    the previous collection, whatever thread ran it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[float, float] | None = None

    @staticmethod
    def _sample() -> tuple[float, float]:
        """Return (total, busy) CPU seconds, counted the way psutil counts them."""
        times = psutil.cpu_times()
        # Linux already counts guest time inside user and nice time.
        total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
        return total, total - times.idle - getattr(times, "iowait", 0.0)

    def percent(self) -> float:
        with self._lock:
            previous = self._last
        if previous is None:
            previous = self._sample()
            time.sleep(CPU_FIRST_SAMPLE_SECONDS)
        current = self._sample()
        with self._lock:
            self._last = current
        total = current[0] - previous[0]
        if total <= 0:
            return 0.0
        return max(0.0, min(100.0, 100.0 * (current[1] - previous[1]) / total))


cpu_meter = _CpuMeter()


def real_mounts() -> list[str]:
    """Return the real mount points (no pseudo filesystems, no bind-mounted files), each once."""
    mounts: list[str] = []
    for part in psutil.disk_partitions(all=True):
        if part.fstype in PSEUDO_FILESYSTEMS or not part.fstype or part.mountpoint in mounts:
            continue
        if part.mountpoint.startswith(PSEUDO_MOUNT_PREFIXES):
            continue
        if not os.path.isdir(part.mountpoint):  # Docker's /etc/hosts and friends
            continue
        mounts.append(part.mountpoint)
        if len(mounts) >= MAX_MOUNTS:
            break
    return mounts


def _threads_and_processes() -> tuple[int, int]:
    """Return (threads, processes) on the machine.

    On Linux ``/proc/loadavg`` already counts every scheduling entity (threads), which
    costs one read instead of one ``/proc/<pid>/status`` per process.
    """
    processes = len(psutil.pids())
    try:
        field = Path("/proc/loadavg").read_text().split()[3]
        return int(field.split("/")[1]), processes
    except (OSError, IndexError, ValueError):
        threads = 0
        for proc in psutil.process_iter(["num_threads"]):
            threads += proc.info.get("num_threads") or 0
        return threads, processes


@register
class SystemCollector(Collector):
    name = "system"
    scope = Scope.HOST
    description = "CPU, load, memory, swap, disk usage and IO, network and process counts of this host"

    def collect(self, now: dt.datetime, **options: Any) -> list[Reading]:
        g, c = self.gauge, self.counter
        readings = [g("system_cpu_usage_percent", cpu_meter.percent()), g("system_cpu_count", psutil.cpu_count() or 1)]
        load1, load5, load15 = psutil.getloadavg()
        readings += [g("system_load1", load1), g("system_load5", load5), g("system_load15", load15)]

        mem = psutil.virtual_memory()
        readings += [
            g("system_memory_total_bytes", mem.total),
            g("system_memory_available_bytes", mem.available),
            g("system_memory_used_bytes", mem.used),
            g("system_memory_usage_percent", mem.percent),
        ]
        swap = psutil.swap_memory()
        readings += [
            g("system_swap_total_bytes", swap.total),
            g("system_swap_free_bytes", swap.free),
            g("system_swap_used_bytes", swap.used),
            g("system_swap_usage_percent", swap.percent),
        ]

        for mount in real_mounts():
            try:
                usage = psutil.disk_usage(mount)
            except OSError:
                continue
            if usage.total <= 0:
                continue
            readings.append(g("system_disk_usage_percent", usage.percent, mount=mount))
            readings.append(g("system_disk_free_bytes", usage.free, mount=mount))

        io = psutil.disk_io_counters(perdisk=False)
        if io is not None:
            readings += [
                c("system_disk_read_bytes_total", io.read_bytes),
                c("system_disk_written_bytes_total", io.write_bytes),
                c("system_disk_reads_total", io.read_count),
                c("system_disk_writes_total", io.write_count),
            ]

        interfaces = sorted(psutil.net_io_counters(pernic=True).items())
        kept = [(nic, n) for nic, n in interfaces if not nic.startswith(SKIPPED_INTERFACE_PREFIXES)]
        for nic, net in kept[:MAX_INTERFACES]:
            readings += [
                c("system_network_receive_bytes_total", net.bytes_recv, interface=nic),
                c("system_network_transmit_bytes_total", net.bytes_sent, interface=nic),
                c("system_network_receive_packets_total", net.packets_recv, interface=nic),
                c("system_network_transmit_packets_total", net.packets_sent, interface=nic),
                c("system_network_receive_errors_total", net.errin, interface=nic),
                c("system_network_transmit_errors_total", net.errout, interface=nic),
            ]

        threads, processes = _threads_and_processes()
        readings += [g("system_processes", processes), g("system_threads", threads)]
        return readings
