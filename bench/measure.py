"""Wall time, memory and CPU of the processes a contender starts, read from ``/proc``.

Every contender is a set of external programs (the ``rdsmigrate`` CLI, ``pg_dump``, ``psql``,
``pgcopydb``), so "the tool's memory" is the memory of the process tree the benchmark starts for
one run. The servers are not part of it: ``pg_ctl`` detaches the postmaster, so no server process
descends from the benchmark. A sampler thread walks that tree every ~50 ms and keeps:

- ``peak_rss_mib``: the largest sum of VmRSS over the tree in one sample. Shared pages (libraries,
  the Python interpreter) count once per process, so this is an upper bound on what the tree
  really holds; it is what ``ps`` users would add up.
- ``peak_pss_mib``: the largest sum of proportional set sizes (``smaps_rollup``), where a shared
  page is split between the processes sharing it: the tree's real share of the machine's memory.
- ``peak_process_rss_mib``: the largest single process, which is what ``ru_maxrss`` would report.

CPU comes from ``getrusage(RUSAGE_CHILDREN)`` where every process of the tree is waited for by
its parent: the difference before and after a run is then the tree's whole CPU, exact, even for
processes shorter than a sample. Not every tree is: multiprocessing's fork server and the copy
workers it forks outlive the ``rdsmigrate`` command for a moment and are reaped by init, so their
CPU (the workers' row relay, two thirds of the tool's) never reaches ``RUSAGE_CHILDREN``; it was
counted as load from outside the benchmark instead. So the tool's CPU is the larger of that
figure and the sampler's sum over every process it saw (last value seen per pid: a process
living less than 50 ms may be missed there); the sampler also gives a per-program split. The
servers' CPU is the postmaster's own and reaped children's time plus its live children's,
before and after. What the machine's
cores did beyond the tool and the servers (``other_cpu_seconds``, from ``/proc/stat``) is load
from outside the benchmark (plus a little kernel work: interrupts, writeback): on a shared
machine it says which runs were disturbed.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_SECONDS = 0.05
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class RunFailed(Exception):
    """A contender's program failed or timed out; the message says which and why."""


def _stat(pid: int) -> tuple[str, list[str]]:
    """A process's command name and the fields of ``/proc/PID/stat`` after it (field 3 on)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name in parentheses may itself hold spaces or parentheses.
    return stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()


def _children_map() -> dict[int, list[int]]:
    """parent pid -> child pids, for every process on the machine."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            _, fields = _stat(int(entry.name))
        except (OSError, ValueError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (not ``root`` itself)."""
    tree = _children_map()
    found: list[int] = []
    stack = list(tree.get(root, []))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(tree.get(pid, []))
    return found


def _kib(path: str, key: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _cpu_and_name(pid: int) -> tuple[str, float]:
    name, fields = _stat(pid)
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return name, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _program(pid: int, comm: str) -> str:
    """A readable program name: Python processes by their script or module, others by comm."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return comm
    words = [a.decode(errors="replace") for a in argv if a]
    if comm.startswith("python") or (words and "python" in Path(words[0]).name):
        if "-c" in words and any("multiprocessing" in w for w in words):
            return "python (worker)" if "spawn_main" in " ".join(words) else "python (mp helper)"
        script = next((Path(w).name for w in words[1:] if not w.startswith("-")), "python")
        return f"python ({script})"
    return comm


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    with open("/proc/stat") as f:
        # user nice system idle iowait irq softirq steal; guest time is already in user.
        values = [int(v) for v in f.readline().split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def server_cpu(postmasters: Sequence[int]) -> float:
    """CPU seconds the servers have used so far: each postmaster's own, its reaped children's
    (stat fields 14-17) and its live children's."""
    total = 0.0
    tree = _children_map()
    for pid in postmasters:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += sum(int(v) for v in _stat(pid)[1][11:15]) / CLOCK_TICKS
        for child in tree.get(pid, []):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += _cpu_and_name(child)[1]
    return total


@dataclass
class Usage:
    """What one run's process tree used."""

    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    peak_pss_mib: float = 0.0
    peak_process_rss_mib: float = 0.0
    cpu_seconds: float = 0.0
    cpu_by_program: dict[str, float] = field(default_factory=dict)
    server_cpu_seconds: float = 0.0
    other_cpu_seconds: float = 0.0
    """CPU used on the machine by neither the tool, nor the servers, nor the benchmark."""
    machine_busy: float = 0.0
    """Share of all cores busy during the run (servers and others included), 0..1."""


class TreeSampler:
    """Samples the memory of every descendant of this process in a background thread."""

    def __init__(self) -> None:
        self.usage = Usage()
        self._cpu: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._me = os.getpid()
        self._my_cmdline = Path("/proc/self/cmdline").read_bytes()
        self._names: dict[int, tuple[str, str]] = {}

    def _sample(self) -> None:
        rss = pss = biggest = 0
        for pid in descendants(self._me):
            try:
                # Between fork and exec a child is a copy of this process: not the tool yet.
                if Path(f"/proc/{pid}/cmdline").read_bytes() == self._my_cmdline:
                    continue
                comm, cpu = _cpu_and_name(pid)
                # Named again when comm changes: a child is seen as its Python parent between
                # fork and exec.
                if self._names.get(pid, ("", ""))[0] != comm:
                    self._names[pid] = (comm, _program(pid, comm))
                self._cpu[pid] = (self._names[pid][1], cpu)
                one = _kib(f"/proc/{pid}/status", "VmRSS:")
                with contextlib.suppress(OSError):
                    pss += _kib(f"/proc/{pid}/smaps_rollup", "Pss:")
            except (OSError, ValueError, IndexError):
                continue  # the process ended between listing and reading
            rss += one
            biggest = max(biggest, one)
        u = self.usage
        u.peak_rss_mib = max(u.peak_rss_mib, rss / 1024)
        u.peak_pss_mib = max(u.peak_pss_mib, pss / 1024)
        u.peak_process_rss_mib = max(u.peak_process_rss_mib, biggest / 1024)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def sampled_cpu(self) -> float:
        """CPU seconds of every process seen, reaped by the tree or not."""
        return sum(cpu for _, cpu in self._cpu.values())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        by_program: dict[str, float] = {}
        for name, cpu in self._cpu.values():
            by_program[name] = round(by_program.get(name, 0.0) + cpu, 2)
        self.usage.cpu_by_program = dict(sorted(by_program.items(), key=lambda kv: -kv[1]))


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def measured(postmasters: Sequence[int]) -> Iterator[Usage]:
    """Time the block and measure every process it starts; fills the yielded Usage on exit."""
    children0, self0, servers0 = (_cpu(resource.RUSAGE_CHILDREN), _cpu(resource.RUSAGE_SELF),
                                  server_cpu(postmasters))
    busy0, total0 = _machine_jiffies()
    t0 = time.monotonic()
    sampler = TreeSampler()
    with sampler:
        yield sampler.usage
    usage = sampler.usage
    usage.seconds = time.monotonic() - t0
    busy1, total1 = _machine_jiffies()
    # Both are lower bounds: the first misses orphaned processes, the second the last 50 ms of
    # each process and processes shorter than a sample.
    usage.cpu_seconds = max(_cpu(resource.RUSAGE_CHILDREN) - children0, sampler.sampled_cpu())
    usage.server_cpu_seconds = server_cpu(postmasters) - servers0
    bench_cpu = _cpu(resource.RUSAGE_SELF) - self0
    usage.other_cpu_seconds = max(0.0, (busy1 - busy0) / CLOCK_TICKS - usage.cpu_seconds
                                  - usage.server_cpu_seconds - bench_cpu)
    usage.machine_busy = (busy1 - busy0) / max(1, total1 - total0)


class Processes:
    """The programs of one run: each in its own session, so a timeout or Ctrl-C ends its tree."""

    def __init__(self, env: dict[str, str], deadline: float) -> None:
        self.env, self.deadline = env, deadline
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(list(argv), env=self.env, start_new_session=True,  # type: ignore[call-overload]
                                **{"stderr": subprocess.PIPE, **kwargs})
        self._procs.append(proc)
        return proc  # type: ignore[no-any-return]

    def wait(self, proc: subprocess.Popen[bytes], what: str) -> bytes:
        """Wait for ``proc`` within the run's deadline; its stdout when piped."""
        try:
            out, err = proc.communicate(timeout=max(0.1, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise RunFailed(f"{what}: timed out") from None
        if proc.returncode != 0:
            text = (err or b"").decode(errors="replace").strip().splitlines()
            tail = " | ".join(text[-3:]) if text else ""
            raise RunFailed(f"{what}: exit {proc.returncode}: {tail}")
        return out or b""

    def run(self, argv: Sequence[str], what: str, **kwargs: object) -> bytes:
        return self.wait(self.start(argv, stdout=subprocess.PIPE, **kwargs), what)

    def kill_all(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
