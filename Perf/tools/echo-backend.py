#!/usr/bin/env python3
"""An echo backend for benchmarks: greets each connection with 'ok\\n', then echoes until
EOF. One thread per connection; prints 'listening PORT' once ready."""
import socket
import sys
import threading


def handle(conn: socket.socket) -> None:
    try:
        conn.sendall(b"ok\n")
        while True:
            data = conn.recv(1 << 20)
            if not data:
                break
            conn.sendall(data)
    except OSError:
        pass
    finally:
        conn.close()


def main() -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    server.listen(1024)
    print(f"listening {server.getsockname()[1]}", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
