"""Reaching a container that has no network: this process joins the container's network namespace.

``podman run --network none`` gives the container a namespace with only its loopback, so nothing it tries to
fetch can succeed, and the only way in is from inside. ``enter_network_of(pid)`` moves the calling thread
there (setns(2); root, i.e. CAP_SYS_ADMIN); threads and processes it starts afterwards are there too, so the
test's requests, and the local service it compares with, use the container's 127.0.0.1.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNET = 0x40000000  # <sched.h>; os.setns and os.CLONE_NEWNET arrive only in Python 3.12


def enter_network_of(pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise PermissionError(error, f"cannot enter the network namespace of process {pid} "
                                         f"({os.strerror(error)}): that needs root; without it, run the test with "
                                         "--network host")
    finally:
        os.close(fd)
