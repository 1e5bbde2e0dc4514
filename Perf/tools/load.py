#!/usr/bin/env python3
"""Loopback load for allocation counting: N short connections (connect, one echo round
trip, close) or one bulk transfer of M MiB each way, through a proxy port."""
import hashlib
import os
import socket
import sys
import threading


def short(port: int, count: int) -> None:
    payload = b"x" * 64
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.recv(64)  # the backend's greeting
        s.sendall(payload)
        got = 0
        while got < len(payload):
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("connection closed early")
            got += len(chunk)
        s.close()


def bulk(port: int, mib: int) -> None:
    s = socket.create_connection(("127.0.0.1", port))
    s.recv(64)
    block = os.urandom(1 << 20)
    received = [0]

    def reader() -> None:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                return
            received[0] += len(chunk)

    t = threading.Thread(target=reader)
    t.start()
    for _ in range(mib):
        s.sendall(block)
    s.shutdown(socket.SHUT_WR)
    t.join()
    if received[0] != mib << 20:
        raise SystemExit(f"bulk: sent {mib << 20} bytes, got {received[0]} back")


if __name__ == "__main__":
    mode, port, amount = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    (short if mode == "short" else bulk)(port, amount)
