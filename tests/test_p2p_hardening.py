"""A real `ringrift-p2p` node on 127.0.0.1 under hostile requests: index sets the size of the
whole index space, bodies nested 1000 deep, numbers beyond 64 bits, the wrong content type.
Every one gets a 4xx with a message, and the event loop never stalls: /health is timed from
a second thread while the requests run, and the node's own loop monitor must stay under 100 ms.
"""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("aiohttp")

from ringrift.pipeline.ranges import MAX_RANGES  # noqa: E402
from test_p2p_cluster import http, nodes  # noqa: E402,F401  (nodes: the fixture)

STALL_MS = 100.0


class HealthProbe:
    """Times GET /health every 20 ms from its own thread; `worst` is the slowest answer (s)."""

    def __init__(self, url: str):
        self.url = url
        self.worst = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            t = time.perf_counter()
            s, _, _ = http("GET", f"{self.url}/health", token=None, timeout=60)
            assert s == 200
            self.worst = max(self.worst, time.perf_counter() - t)
            self.count += 1
            self._stop.wait(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=70)


def _deep(depth: int) -> bytes:
    return b'{"a": ' * depth + b"1" + b"}" * depth


def _start(a, body: dict, **kw):
    """POST /pipeline/start, waiting out the node's first heartbeats (409 retry)."""
    deadline = time.monotonic() + 15
    while True:
        s, out, raw = http("POST", f"{a.url}/pipeline/start", body, **kw)
        if not (s == 409 and out.get("retry")) or time.monotonic() > deadline:
            return s, out, raw
        time.sleep(0.1)


def test_hostile_requests_get_4xx_and_never_stall_the_loop(nodes):
    a = nodes("A", discovery_ports=None, priority=1, max_jobs=0).start()
    base = {"phase": "canonical_selfplay", "board": "square8"}
    s, out, _ = _start(a, dict(base, num_games=0))
    assert s == 201, out
    stalls: dict[str, float] = {}

    def post(name: str, path: str, body=None, **kw):
        """One request, and the longest the node's loop waited meanwhile (ms)."""
        assert http("POST", f"{a.url}/debug/loop/reset", {})[0] == 200
        res = http("POST", f"{a.url}{path}", body, **kw)
        time.sleep(0.06)  # the loop monitor wakes every 25 ms
        lag = http("GET", f"{a.url}/health", token=None)[1]["loop_lag_ms"]["max_since_reset"]
        stalls[name] = max(stalls.get(name, 0.0), lag)
        return res

    with HealthProbe(a.url) as probe:
        # every index of a 30M-game run already at the pipeline: one index run, not 30M
        s, out, _ = post("start, skip 0-30000000", "/pipeline/start",
                         dict(base, num_games=30_000_000, games_per_worker=3000, skip="0-30000000"))
        assert s == 201 and out["run"]["status"] == "done", out
        # the most ranges a run may have, nothing skipped
        s, out, _ = post(f"start, {MAX_RANGES} ranges", "/pipeline/start",
                         dict(base, num_games=10**7, games_per_worker=1000, seed=1))
        assert s == 201 and out["run"]["num_ranges"] == MAX_RANGES, out
        run_id = out["run"]["run_id"]
        # its resume with a fragmented skip (every other game of the first 10k: 5000 runs)
        s, out, _ = post("resume, 5000-run skip", "/pipeline/start",
                         dict(base, num_games=10**7, games_per_worker=1000, seed=1,
                              skip=",".join(str(i) for i in range(0, 10_000, 2))))
        assert s == 200 and out["created"] is False, out
        assert post("stop", "/pipeline/stop", {"run_id": run_id})[0] == 200
        # one more range than allowed, a job of 20M indices, indices beyond 64 bits
        s, out, _ = post("start, too many ranges", "/pipeline/start",
                         dict(base, num_games=10**7 + 1, games_per_worker=1000))
        assert s == 400 and f"more than {MAX_RANGES} ranges" in out["error"], out
        s, out, _ = post("selfplay_worker, indices 0-20000000", "/pipeline/selfplay_worker",
                         {"board": "square8", "indices": "0-20000000"})
        assert s == 400 and "at most 10000000 games per job" in out["error"], out
        for body, text in [({"board": "square8", "start": 10**29, "count": 5}, "'start'"),
                           ({"board": "square8", "start": 2**63 - 2, "count": 5}, "64-bit"),
                           ({"board": "square8", "indices": f"0-{10**29}"}, "beyond the largest game index"),
                           ({"board": "square8", "indices": "1-5", "range": [0, 10**29]}, "'range'"),
                           ({"board": "square8", "start": 0, "count": 5, "seed": -1}, "'seed'"),
                           ({"board": "square8", "start": 0, "count": 5, "seed": 2**64}, "'seed'")]:
            s, out, raw = post("selfplay_worker, out of range", "/pipeline/selfplay_worker", body)
            assert s == 400 and text in out["error"], (body, s, raw)
        s, out, _ = post("start, seed 10**29", "/pipeline/start", dict(base, num_games=5, seed=10**29))
        assert s == 400 and "'seed'" in out["error"], out
        s, out, _ = post("start, skip beyond 64 bits", "/pipeline/start", dict(base, num_games=5, skip=f"0-{10**29}"))
        assert s == 400 and "'skip'" in out["error"], out
        # bodies nested 1000 deep (2 KB) on every JSON endpoint: 400, never a 500 RecursionError
        for path in ("/pipeline/start", "/pipeline/selfplay_worker", "/pipeline/stop", "/pipeline/ack"):
            for raw in (_deep(1000), b"[" * 5000 + b"]" * 5000, _deep(6)):
                s, out, payload = post("nested bodies", path, raw=raw)
                assert s == 400 and "nest" in out["error"], (path, s, payload[:200])
            # text/plain where JSON is expected: 415
            s, out, payload = post("text/plain", path, raw=b'{"run_id": "x"}', content_type="text/plain")
            assert s == 415 and "application/json" in out["error"], (path, s, payload)
        # a job's /collected checks the job first (404), then the body the same way
        s, out, _ = post("nested bodies", "/jobs/x/collected", raw=_deep(1000))
        assert s == 404 and "no job" in out["error"], out
    print("\nnode loop stall per request (ms): " + "; ".join(f"{k}: {v:.1f}" for k, v in stalls.items())
          + f"\nslowest of {probe.count} concurrent /health: {probe.worst * 1000:.0f} ms")
    assert probe.count > 0
    assert max(stalls.values()) < STALL_MS, {k: v for k, v in stalls.items() if v >= STALL_MS}
    assert probe.worst < 1.0, probe.worst  # HTTP round trips on a loaded box; the loop itself is the bound
