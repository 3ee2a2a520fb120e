#!/usr/bin/env python3
"""Developer script: keep a namespace lab up for manual experiments (root only).

    python tools/lab.py up [tap|veth]   # prints the names and the commands to try
    python tools/lab.py down NETNS

The lab is the same one the system tests and the demo build
(``trio_netstack.testing.lab``): the kernel at 192.0.2.1/24, the stack's device
ready for 192.0.2.2/24. Everything lives inside the namespace.
"""

from __future__ import annotations

import subprocess
import sys

from trio_netstack.testing.lab import create_lab


def up(kind: str) -> None:
    lab = create_lab(kind)
    # Detach: the namespace outlives this process until `down`.
    print(
        f"netns {lab.netns}: kernel {lab.kernel_ip}/24 on {lab.kernel_device}, "
        f"stack device {lab.stack_device}"
    )
    print("try:")
    attach = f"--{'tap' if kind == 'tap' else 'iface'} {lab.stack_device} --netns {lab.netns}"
    print(f"  python -m trio_netstack.tools.serve {attach} --ip 192.0.2.2/24 --udp-echo 8888")
    print(f"  ip netns exec {lab.netns} ping -c 3 192.0.2.2")
    print(f"  ip netns exec {lab.netns} tcpdump -ni {lab.kernel_device}")
    print(f"  python tools/lab.py down {lab.netns}")


def down(netns: str) -> None:
    if not netns.startswith("tns-"):
        sys.exit(f"refusing to delete {netns!r}: not a lab namespace (tns-...)")
    subprocess.run(["ip", "netns", "del", netns], check=True)


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "up":
        up(sys.argv[2] if len(sys.argv) > 2 else "tap")
    elif len(sys.argv) == 3 and sys.argv[1] == "down":
        down(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
