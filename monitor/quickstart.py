"""``make run``: the service on embedded SQLite plus a demo trainer streaming into it.

Starts ``python -m monitor serve`` as a child process, waits until it is healthy, runs
``python -m trainer_client.demo`` against it, prints the dashboard address, and keeps the
service up afterwards so the dashboard can be explored (Ctrl-C stops everything).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

DATA_DIR = Path("monitor-data")


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """Block until /healthz answers, or fail if the service died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the service exited with code {process.returncode}; see {DATA_DIR / 'service.log'}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the service did not become healthy in {timeout:.0f}s")


def _token() -> str:
    """Reuse a token kept from an earlier run so bookmarks and cookies keep working."""
    path = DATA_DIR / "demo-token"
    if os.environ.get("MONITOR_API_TOKEN"):
        return os.environ["MONITOR_API_TOKEN"].split(",")[0]
    if path.exists():
        return path.read_text().strip()
    token = "demo-" + secrets.token_urlsafe(18)
    path.write_text(token)
    path.chmod(0o600)
    return token


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--collapse", action="store_true", help="induce the documented collapse")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--exit-after-demo", action="store_true", help="stop the service when the demo ends")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    DATA_DIR.mkdir(exist_ok=True)
    token = _token()
    url = f"http://127.0.0.1:{args.port}"
    env = {**os.environ, "MONITOR_API_TOKEN": token, "MONITOR_PUBLIC_URL": url}
    log = open(DATA_DIR / "service.log", "ab")
    service = subprocess.Popen(
        [sys.executable, "-m", "monitor", "serve", "--port", str(args.port),
         "--database-url", f"sqlite:///{DATA_DIR / 'monitor.db'}"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        _wait_healthy(url, service)
        run_id = time.strftime("demo-%Y%m%d-%H%M%S") + ("-collapse" if args.collapse else "")
        print(f"\n  service   {url}  (log: {DATA_DIR / 'service.log'}, database: {DATA_DIR / 'monitor.db'})")
        print(f"  dashboard {url}/runs/{run_id}   (sign in with token: {token})\n", flush=True)
        demo = [sys.executable, "-m", "trainer_client.demo", "--url", url, "--token", token,
                "--run-id", run_id, "--epochs", str(args.epochs)] + (["--collapse"] if args.collapse else [])
        code = subprocess.call(demo, env=env)
        print(f"\ndemo trainer finished with code {code}; dashboard: {url}/runs/{run_id}", flush=True)
        if args.exit_after_demo:
            return code
        print("the service keeps running for the dashboard; press Ctrl-C to stop", flush=True)
        service.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if service.poll() is None:
            service.send_signal(signal.SIGTERM)
            service.wait(30)


if __name__ == "__main__":
    raise SystemExit(main())
