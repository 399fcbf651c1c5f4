"""The harness's real moving parts: wrk + replay.lua against a recording server, the process group
that must leave no orphans, and measuring a child's memory."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from bench.common import distinct_rows, feature_records
from bench.loadgen import SPLIT_FORMAT, marked_bodies, run_wrk, write_bodies
from bench.processes import ProcessGroup
from bench.resources import measure_command
from valuation.synthetic import generate_frame


class _Recorder(BaseHTTPRequestHandler):
    received: list[bytes] = []
    keys: list[str | None] = []

    def do_POST(self):  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(body)
        type(self).keys.append(self.headers.get("X-API-Key"))
        self.send_response(200 if json.loads(body) else 400)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_wrk_replays_distinct_bodies_across_passes_with_the_key(tmp_path):
    records = feature_records(distinct_rows(generate_frame(40, seed=5)))
    bodies = write_bodies(marked_bodies(records, SPLIT_FORMAT), tmp_path / "bodies.txt")
    _Recorder.received, _Recorder.keys = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run_wrk(f"http://127.0.0.1:{server.server_port}/invocations", bodies, connections=2,
                         duration_s=1, api_key="k-123")
    finally:
        server.shutdown()
        server.server_close()
    received = _Recorder.received
    assert result.requests > len(records)  # the 40 bodies were sent more than once over...
    assert result.max_cycle >= 1
    assert len(set(received)) == len(received)  # ...yet no two requests carried the same bytes
    assert result.bodies == len(records)
    assert result.errors == 0 and result.p50_ms > 0
    assert set(_Recorder.keys) == {"k-123"}
    assert abs(len(received) - result.requests) <= 2  # wrk counts what completed in its window


_SPAWNER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_process_group_stops_descendants_in_other_sessions(tmp_path):
    with ProcessGroup(tmp_path, grace_s=1.0) as group:
        parent = group.start("spawner", [sys.executable, "-c", _SPAWNER])
        deadline = time.monotonic() + 20
        while not group.log_path("spawner").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchild = int(group.log_path("spawner").read_text().split()[0])
        assert psutil.pid_exists(grandchild)
    assert parent.poll() is not None
    gone = not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    assert gone


def test_measure_command_sees_a_childs_peak_memory(tmp_path):
    # bytearray() zero-fills, so all 150 MB are touched and resident.
    allocate = "import time; b = bytearray(150 * 1024 * 1024); time.sleep(0.5)"
    usage = measure_command([sys.executable, "-c", allocate], log_path=tmp_path / "log", interval_s=0.05)
    assert usage.returncode == 0
    assert usage.max_rss_mb > 150
    assert usage.peak_tree_rss_mb >= usage.max_rss_mb * 0.9
    failing = measure_command([sys.executable, "-c", "raise SystemExit(3)"], log_path=tmp_path / "log2")
    assert failing.returncode == 3
