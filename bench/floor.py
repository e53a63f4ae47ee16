"""The floor for a server's protocol CPU: what a plain loopback TCP exchange of the same bytes
costs the receiving side on this machine. A writer process sends REQUEST bytes (a 1x3x224x224
FP32 tensor, 602,112 bytes) and waits for REPLY bytes (squeezenet's 1000 FP32 scores); the
reader receives each request into one preallocated buffer in one call (MSG_WAITALL: the
kernel's one copy into user memory, nothing else) and sends the reply. The reader's CPU time
(user + system) per exchange is the floor: a server cannot receive the request and send the
answer for less.

Other sizes (bench/extensions.py's small-tensor model: 16,384 bytes in, 2,048 out) give the
floor of a call whose bytes cost little: what the kernel needs to wake a reader and move a
request and its reply at all.

usage: bench/floor.py [EXCHANGES] [CONNECTIONS] [REQUEST_BYTES] [REPLY_BYTES]
  (defaults 3000, 1, 602112, 4000)
"""

import os
import resource
import socket
import sys
import threading
import time

REQUEST = 3 * 224 * 224 * 4
REPLY = 1000 * 4


def reader(listener, exchanges, out, request_bytes, reply_bytes):
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = bytearray(request_bytes)
    reply = bytes(reply_bytes)
    view = memoryview(buffer)
    start = resource.getrusage(resource.RUSAGE_THREAD)
    for _ in range(exchanges):
        got = conn.recv_into(view, request_bytes, socket.MSG_WAITALL)
        assert got == request_bytes, got
        conn.sendall(reply)
    end = resource.getrusage(resource.RUSAGE_THREAD)
    out.append((end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime))
    conn.close()


def writer(port, exchanges, request_bytes, reply_bytes):
    """Runs in its own process, so its CPU is not the reader's."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = os.urandom(request_bytes)
    buffer = bytearray(reply_bytes)
    for _ in range(exchanges):
        s.sendall(request)
        got = s.recv_into(buffer, reply_bytes, socket.MSG_WAITALL)
        assert got == reply_bytes, got
    s.close()


def floor_ms(exchanges=3000, connections=1, request_bytes=REQUEST, reply_bytes=REPLY):
    """The reader's CPU milliseconds per exchange (median over the connections' readers)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(connections)
    port = listener.getsockname()[1]
    per = exchanges // connections
    out = []
    readers = [threading.Thread(target=reader, args=(listener, per, out, request_bytes, reply_bytes)) for _ in range(connections)]
    for t in readers:
        t.start()
    writers = []
    for _ in range(connections):
        pid = os.fork()
        if pid == 0:
            try:
                writer(port, per, request_bytes, reply_bytes)
            finally:
                os._exit(0)
        writers.append(pid)
    for t in readers:
        t.join()
    for pid in writers:
        os.waitpid(pid, 0)
    listener.close()
    each = sorted(seconds * 1000 / per for seconds in out)
    return each[len(each) // 2]


if __name__ == "__main__":
    exchanges = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    connections = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    request_bytes = int(sys.argv[3]) if len(sys.argv) > 3 else REQUEST
    reply_bytes = int(sys.argv[4]) if len(sys.argv) > 4 else REPLY
    started = time.time()
    ms = floor_ms(exchanges, connections, request_bytes, reply_bytes)
    print(f"loopback floor: {ms * 1000:.0f} us of the reader's CPU per {request_bytes}-byte request and "
          f"{reply_bytes}-byte reply "
          f"({exchanges} exchanges over {connections} connection(s), {time.time() - started:.1f} s)")
