"""A throw-away network namespace with the Linux kernel on one side of a wire.

System tests, the demo and the benchmarks need a real kernel to talk to without
touching the machine's own interfaces, addresses or routes. A lab is one fresh
network namespace holding everything:

* ``kind="tap"``: a persistent TAP device ``tnstap0``. The kernel's address
  (192.0.2.1/24) is on the TAP; the stack attaches to the TAP's file side.
* ``kind="veth"``: a veth pair ``tnsveth-k`` (kernel, with 192.0.2.1/24) and
  ``tnsveth-s`` (stack side, no address); the stack owns ``tnsveth-s`` through
  an AF_PACKET socket. TSO/GSO are switched off on ``tnsveth-k`` (unless
  ``gso=True``): a packet socket sees a veth's GSO super-frames unsegmented,
  up to 64 KiB, which no real wire carries. Checksum offload stays on, so frames
  from the kernel arrive with RX_CSUM_TRUSTED and an unfilled TCP/UDP checksum.

IPv6 is switched off in the namespace so the kernel sends no router
solicitations or MLD reports: tests then see only the traffic they caused.
Deleting the namespace deletes its devices, so :meth:`Lab.close` is all the
cleanup there is. Needs root.

Example::

    with create_lab("veth") as lab:
        async with await lab.open_stack_link(stack_mac=b"\\x02\\0\\0\\0\\0\\x02") as link:
            lab.run("ping", "-c", "1", lab.stack_ip)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import shutil
import subprocess
import time
from typing import Any

import trio

from trio_netstack.link import _netdev
from trio_netstack.link.base import Link
from trio_netstack.link.netns import in_netns, netns_exists
from trio_netstack.link.packet import open_packet
from trio_netstack.link.tap import open_tap

__all__ = ["Lab", "LabCommandError", "LabError", "create_lab"]

TAP_DEVICE = "tnstap0"
VETH_KERNEL = "tnsveth-k"
VETH_STACK = "tnsveth-s"

_counter = itertools.count()  # only to make namespace names unique within a process


class LabError(RuntimeError):
    """The lab could not be set up; the message says which step failed and why."""


class LabCommandError(subprocess.CalledProcessError):
    """A command run in the lab failed; unlike its base class it shows stderr."""

    def __str__(self) -> str:
        text = super().__str__()
        err = self.stderr
        if isinstance(err, bytes):
            err = err.decode(errors="replace")
        if err:
            text += f"\nstderr: {err.strip()}"
        return text


class Lab:
    """One network namespace with the kernel on one side of a TAP or veth wire."""

    def __init__(
        self,
        netns: str,
        kind: str,
        *,
        kernel_ip: str = "192.0.2.1",
        stack_ip: str = "192.0.2.2",
        prefix_len: int = 24,
        mtu: int = 1500,
        gso: bool = False,
    ) -> None:
        if kind not in ("tap", "veth"):
            raise ValueError(f"lab kind must be 'tap' or 'veth', not {kind!r}")
        self.netns = netns
        self.kind = kind
        self.stack_device = TAP_DEVICE if kind == "tap" else VETH_STACK
        self.kernel_device = TAP_DEVICE if kind == "tap" else VETH_KERNEL
        self.kernel_ip = kernel_ip
        self.stack_ip = stack_ip
        self.prefix_len = prefix_len
        self.mtu = mtu
        self.gso = gso
        self._procs: list[subprocess.Popen[bytes]] = []
        self._created = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<Lab {self.kind} netns={self.netns!r} stack on {self.stack_device!r}>"

    # -- running things inside -------------------------------------------------

    def _argv(self, argv: tuple[str, ...]) -> list[str]:
        if not argv:
            raise ValueError("no command given")
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 30,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a command inside the namespace and wait for it; output is captured.

        Raises LabCommandError (a CalledProcessError that shows stderr) when
        ``check`` and the command fails, subprocess.TimeoutExpired after ``timeout``.
        """
        self._check_open()
        proc = subprocess.run(
            self._argv(argv),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise LabCommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def popen(self, *argv: str, **kw: Any) -> subprocess.Popen[bytes]:
        """Start a command inside the namespace in the background.

        Keyword arguments go to subprocess.Popen; stdin defaults to /dev/null and
        stdout/stderr to pipes (read them, or pass DEVNULL for chatty programs). The
        process is killed by :meth:`close` if it is still running then.
        """
        self._check_open()
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        # `ip netns exec` execs the command itself, so this PID is the tool's.
        proc: subprocess.Popen[bytes] = subprocess.Popen(self._argv(argv), **kw)
        self._procs.append(proc)
        return proc

    async def open_stack_link(self, **kw: Any) -> Link:
        """Open the stack's side of the wire: the TAP, or AF_PACKET on ``tnsveth-s``.

        Keyword arguments go to open_tap / open_packet (``max_batch``, and for veth
        ``stack_mac``). The caller closes the link (``async with``) before the lab.
        """
        self._check_open()
        await trio.lowlevel.checkpoint()
        if self.kind == "tap":
            kw.pop("stack_mac", None)  # a TAP takes frames for any MAC
            return open_tap(self.stack_device, netns=self.netns, create=False, **kw)
        return open_packet(self.stack_device, netns=self.netns, **kw)

    # -- life cycle ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("lab is closed")

    def _ip(self, *args: str) -> None:
        self._run_setup(["ip", *args])

    def _run_setup(self, argv: list[str]) -> None:
        try:
            proc = subprocess.run(
                argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LabError(f"`{shlex.join(argv)}` failed: {exc}") from exc
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise LabError(f"`{shlex.join(argv)}` failed: {err or f'exit {proc.returncode}'}")

    def _setup(self) -> None:
        ns = self.netns
        cidr = f"{self.kernel_ip}/{self.prefix_len}"
        mtu = str(self.mtu)
        self._ip("netns", "add", ns)
        self._created = True
        self._ip("-n", ns, "link", "set", "lo", "up")
        self._disable_ipv6()
        if self.kind == "tap":
            self._ip("-n", ns, "tuntap", "add", "dev", TAP_DEVICE, "mode", "tap")
            self._ip("-n", ns, "link", "set", TAP_DEVICE, "mtu", mtu)
            self._ip("-n", ns, "addr", "add", cidr, "dev", TAP_DEVICE)
            self._ip("-n", ns, "link", "set", TAP_DEVICE, "up")
        else:
            self._ip(
                "-n", ns, "link", "add", VETH_KERNEL, "mtu", mtu, "type", "veth",
                "peer", "name", VETH_STACK, "mtu", mtu,
            )  # fmt: skip
            if not self.gso:
                if shutil.which("ethtool") is None:
                    raise LabError("a veth lab needs the 'ethtool' command (or pass gso=True)")
                # With TSO/GSO on, the kernel hands the veth 64 KiB TCP super-frames
                # and a packet socket on the peer sees them unsegmented. Off, frames
                # are wire-sized; checksum offload stays on (frames then carry
                # TP_STATUS_CSUMNOTREADY, which the stack must handle anyway).
                self._run_setup(
                    [
                        "ip",
                        "netns",
                        "exec",
                        ns,
                        "ethtool",
                        "-K",
                        VETH_KERNEL,
                        "tso",
                        "off",
                        "gso",
                        "off",
                    ]
                )
            self._ip("-n", ns, "addr", "add", cidr, "dev", VETH_KERNEL)
            self._ip("-n", ns, "link", "set", VETH_KERNEL, "up")
            self._ip("-n", ns, "link", "set", VETH_STACK, "up")
            # The kernel transmits on a fresh veth only once linkwatch has run
            # (see link/_netdev.wait_running); be ready before anyone uses it.
            with in_netns(ns), _netdev.control_socket() as ctl:
                for dev in (VETH_KERNEL, VETH_STACK):
                    if not _netdev.wait_running(ctl, dev, timeout=5.0):
                        raise LabError(f"{dev} in {ns!r} did not come up within 5 s")

    def _disable_ipv6(self) -> None:
        # /proc/sys/net answers for the namespace of the thread that opens the
        # file, so stepping in is enough (no sysctl binary, no extra process).
        # "default" covers the devices made next, "all" the loopback made already.
        if not os.path.isdir("/proc/sys/net/ipv6"):
            return  # IPv6 compiled out: nothing to silence
        try:
            with in_netns(self.netns):
                for scope in ("all", "default"):
                    with open(f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6", "w") as f:
                        f.write("1")
        except OSError as exc:
            raise LabError(f"cannot disable IPv6 in {self.netns!r}: {exc}") from exc

    def wait_listening(self, port: int, *, udp: bool = False, timeout: float = 10.0) -> None:
        """Block until a kernel socket in the lab listens on ``port`` (bounded poll).

        Used before pointing the stack at a kernel server started with ``popen``: the
        server's socket exists only once ``ss`` shows it.
        """
        deadline = time.monotonic() + timeout
        flags = "-Hnul" if udp else "-Hntl"
        while True:
            if self.run("ss", flags, f"sport = :{port}", check=False).stdout.strip():
                return
            if time.monotonic() >= deadline:
                raise LabError(
                    f"nothing listens on {'UDP' if udp else 'TCP'} port {port} "
                    f"in {self.netns!r} after {timeout} s"
                )
            time.sleep(0.02)

    def close(self) -> None:
        """Kill the processes this lab started and delete the namespace. Idempotent."""
        if self._closed:
            return
        self._closed = True
        procs, self._procs = self._procs, []
        for proc in procs:
            if proc.poll() is None:
                proc.kill()  # by PID: only what this lab started
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        if self._created and netns_exists(self.netns):
            # Deleting the namespace takes its devices (TAP, veth pair) with it,
            # once the last file descriptor into it is closed.
            self._ip("netns", "del", self.netns)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_lab(
    kind: str = "tap",
    *,
    kernel_ip: str = "192.0.2.1",
    stack_ip: str = "192.0.2.2",
    prefix_len: int = 24,
    mtu: int = 1500,
    gso: bool = False,
) -> Lab:
    """Make a fresh namespace lab (see the module docstring). Needs root.

    On failure everything made so far is removed and LabError says which step
    failed. ``gso=True`` leaves TSO/GSO on for the kernel's veth end, so the
    stack receives TCP frames of up to 64 KiB (see the ``kind="veth"`` notes).
    """
    if os.geteuid() != 0:
        raise LabError("a namespace lab needs root (network namespaces, TAP devices)")
    for _ in range(1000):
        name = f"tns-{os.getpid()}-{next(_counter)}"
        if not netns_exists(name):  # else a leftover of a crashed run with a recycled PID
            break
    else:
        raise LabError(f"no free namespace name tns-{os.getpid()}-N (clean up `ip netns list`)")
    lab = Lab(
        name,
        kind,
        kernel_ip=kernel_ip,
        stack_ip=stack_ip,
        prefix_len=prefix_len,
        mtu=mtu,
        gso=gso,
    )
    try:
        lab._setup()
    except BaseException as exc:
        try:
            lab.close()
        except LabError as cleanup_exc:
            exc.add_note(f"cleanup failed too: {cleanup_exc}")
        if isinstance(exc, LabError):
            raise
        if isinstance(exc, Exception):
            raise LabError(f"setting up {kind} lab {name!r} failed: {exc}") from exc
        raise
    return lab
