"""A camera on loopback that serves frames as MJPEG over HTTP (multipart/x-mixed-replace, as IP cameras do).

The stand-in camera for the tests and the benchmark: it shows the first frame until `play()`, then one frame
every 1/fps seconds, holding the last one when the frames run out; it notes when each frame index first went
out. `cut()` drops the stream and refuses connections, `restore()` serves again on the same port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO

import cv2
import numpy as np

from edge.brokers import free_port


def write_part(out: BinaryIO, jpeg: bytes) -> None:
    """One JPEG as a part of the multipart stream."""
    out.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode() + b"\r\n\r\n"
              + jpeg + b"\r\n")


def stream_server(port: int, serve: Callable[[BinaryIO], None]) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1:`port` (not yet serving) that answers every GET with a multipart MJPEG stream,
    its parts written by `serve(wfile)` until it returns or the client goes."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                serve(self.wfile)
            except (BrokenPipeError, ConnectionResetError):
                pass

    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


class MjpegCamera:
    """Serves `frames` at http://127.0.0.1:<port>/ (any path)."""

    def __init__(self, frames: list[np.ndarray], port: int | None = None, fps: float = 10.0,
                 playing: bool = True) -> None:
        self.port = port or free_port()
        self.period = 1.0 / fps
        self.sent: dict[int, float] = {}  # frame index -> monotonic time it first went out
        self.playing = threading.Event()
        self.live = threading.Event()
        self.server: ThreadingHTTPServer | None = None
        self.show(frames)
        if playing:
            self.playing.set()

    @property
    def url(self) -> str:
        """Where a client reads the stream."""
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def show(self, frames: list[np.ndarray]) -> None:
        """Serve these frames to the next connection (JPEG, default quality)."""
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]

    def play(self) -> None:
        """Start stepping through the frames (until then the first one repeats)."""
        self.playing.set()

    def restore(self) -> MjpegCamera:
        """Listen and serve."""
        owner = self

        def serve(out: BinaryIO) -> None:
            k, next_at = 0, time.monotonic()
            while owner.live.is_set():
                jpegs, playing = owner.jpegs, owner.playing.is_set()
                write_part(out, jpegs[min(k, len(jpegs) - 1)])  # the last frame holds when the frames run out
                if playing:
                    owner.sent.setdefault(k, time.monotonic())
                    k += 1
                next_at += owner.period
                time.sleep(max(0.0, next_at - time.monotonic()))

        self.server = stream_server(self.port, serve)
        self.live.set()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def cut(self) -> None:
        """Drop every connection and stop listening."""
        self.live.clear()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
