"""Secrets never in a log, an error, /metrics or a reload outcome (issue 12), whichever way
they were given: a Redis password in the URL's userinfo or query string, the ESL password,
the HTTP token. A malformed CCD_REDIS_URL is blamed on it, never echoed. unix:// Redis URLs
work for the daemon and the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from ccd.cli.main import main
from ccd.store.agent import AgentRepository
from ccd.store.redis_store import Store, connect_redis
from tests.support.daemon_fixtures import eventually
from tests.support.redis_fixtures import find_redis_server
from tests.test_daemon import _free_port, _ready, _run_ccd, ccd_process, http_get, terminate

REDIS_PW = "s3cr3t-redis-pw"
ESL_PW = "s3cr3t-esl-pw"
TOKEN = "s3cr3t-http-token-0123"
SECRETS = (REDIS_PW, ESL_PW, TOKEN)

pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.mark.parametrize("fakeswitch", [{"password": ESL_PW}], indirect=True)
@pytest.mark.parametrize("where", ["query", "userinfo"])
def test_no_secret_in_logs_errors_metrics_or_reload_outcomes(
    fakeswitch, make_redis_server, tmp_path: Path, where: str
):
    server = make_redis_server()
    server.client().config_set("requirepass", REDIS_PW)
    url = (
        f"redis://127.0.0.1:{server.port}/0?password={REDIS_PW}"
        if where == "query"
        else f"redis://default:{REDIS_PW}@127.0.0.1:{server.port}/0"
    )
    host, port = fakeswitch.address
    http_port = _free_port()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = tmp_path / "ccd.toml"
    text = f'[esl]\nhost = "{host}"\nport = {port}\n[http]\nport = {http_port}\n'
    config.write_text(text)
    env = {"CCD_ESL_PASSWORD": ESL_PW, "CCD_REDIS_URL": url, "CCD_HTTP_TOKEN": TOKEN,
           "CCD_RUN_DIR": str(run_dir)}  # fmt: skip
    with ccd_process(["run", "--config", str(config), "--log-format", "json"], env) as proc:
        eventually(lambda: _ready(http_port), timeout=30, what="daemon ready")
        metrics = http_get(http_port, "/metrics", headers={})[1].decode()
        refused = http_get(http_port, "/calls/abc", headers={"Authorization": "Bearer x"})
        # A reload whose file changes the secrets' settings and breaks another key.
        config.write_text(
            text + '[redis]\nurl = "redis://:other@h:1/0"\n[routing]\nring_time = 0\n'
        )
        proc.send_signal(signal.SIGHUP)
        eventually(lambda: (run_dir / "reload.json").exists(), what="reload outcome")
        outcome = (run_dir / "reload.json").read_text()
        server.stop()  # Redis goes away: its errors are logged too
        eventually(lambda: not _ready(http_port), timeout=20, what="not ready without Redis")
        out, err = terminate(proc)
    assert proc.returncode == 0, err.decode()
    logged = (out + err).decode()
    assert '"daemon.starting"' in logged and "config.reload_failed" in logged
    for secret in SECRETS:
        for name, shown in (("log", logged), ("metrics", metrics), ("reload", outcome),
                            ("401", refused[1].decode())):  # fmt: skip
            assert secret not in shown, f"{secret} in the {name}"
    start = next(
        json.loads(line) for line in out.decode().splitlines() if "daemon.starting" in line
    )
    assert "***" in start["config"]["redis"]["url"]
    assert start["config"]["esl"]["password"] == "***"
    assert start["config"]["http"]["token"] == "***"


def test_a_malformed_redis_url_in_the_environment_is_blamed_on_it_never_echoed(
    tmp_path, capsys, monkeypatch
):
    config = tmp_path / "ccd.toml"
    config.write_text("")
    for bad in (f"redis://u:{REDIS_PW}@db:port/0", f"http://db/0?password={REDIS_PW}",
                f"redis://u:{REDIS_PW}/x@db/0"):  # fmt: skip
        monkeypatch.setenv("CCD_REDIS_URL", bad)
        assert main(["agent", "list", "-c", str(config)]) == 2
        out, err = capsys.readouterr()
        assert "environment variable CCD_REDIS_URL (overrides redis.url)" in err
        assert REDIS_PW not in out + err and "Traceback" not in err
    proc = _run_ccd(["run", "--config", str(config)], env={"CCD_REDIS_URL": bad})
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 78 and REDIS_PW.encode() not in err
    assert b"CCD_REDIS_URL" in err


@pytest.fixture
def unix_redis(tmp_path: Path):
    binary = find_redis_server()
    if binary is None:
        pytest.skip("redis-server is not installed")
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        eventually(sock.exists, what="redis on its unix socket")
        yield f"unix://{sock}?db=0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_unix_socket_redis_url_works_for_the_cli(unix_redis, tmp_path, capsys):
    config = tmp_path / "ccd.toml"
    config.write_text(f'[redis]\nurl = "{unix_redis}"\n')
    assert main(["agent", "add", "carol", "--ext", "1003", "-c", str(config)]) == 0
    assert main(["agent", "list", "--json", "-c", str(config)]) == 0
    out, err = capsys.readouterr()
    assert '"carol"' in out and "Traceback" not in err
    client = connect_redis(unix_redis)
    assert AgentRepository(Store.create(client, "ccd:")).get("carol") is not None
    client.close()


def test_a_unix_socket_redis_url_works_for_the_daemon(unix_redis, fakeswitch, start_daemon):
    daemon = start_daemon(fakeswitch, redis={"url": unix_redis})
    assert daemon.readiness() == {"esl": True, "redis": True, "synced": True}
