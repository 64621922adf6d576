"""The real-switch tier's laboratory: a real FreeSWITCH, the daemon as ``ccd run``, callers.

Theory of operation
-------------------
:func:`find_switch` decides whether a real FreeSWITCH is at hand, in this order:

* ``CCD_REAL_FS=off``: no (the tier is skipped);
* ``CCD_REAL_FS_CONF`` set: the user's own FreeSWITCH, described by environment variables
  (:data:`ENVIRONMENT`): its conf dir, event socket, SIP address and log file;
* the kit beside the checkout, ``<repo>/../shared/freeswitch/fslab``: FreeSWITCH 1.10.12
  under /opt/fslab, which :meth:`RealSwitch.ensure_up` starts when it is down.

:meth:`RealSwitch.install` writes the tier's site settings into ``ccd_vars.d/`` (the ESL
password, the desk phones' SIP password, the trunk pointed at the tier's customer phone)
and runs ``scripts/install_freeswitch_conf.py`` against the conf dir, as an operator
would: the same script, the same reloadxml.

A :class:`Center` is one call centre under test: a private redis-server
(``tests/support/redis_fixtures.RedisServer``) and the daemon as a real ``ccd run``
subprocess with a generated TOML configuration (JSON logs to a file the tests read).
:func:`place_call` puts a caller into FreeSWITCH's dialplan through a loopback channel:
``originate loopback/<extension>/<context> &park()``; the loopback's B leg runs the
dialplan (it is the call the daemon sees), the A leg stays parked under the test's
control (``uuid_kill`` it to hang up, ``uuid_send_dtmf`` on it to press keys).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid as uuidlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccd.core import presence
from ccd.core.commands import quote_var_value
from ccd.store.agent import AgentRepository
from ccd.store.callback import CallbackStore
from ccd.store.redis_store import Store
from tests.real.esl import EslClient, Seen
from tests.support.daemon_fixtures import eventually
from tests.support.redis_fixtures import RedisServer, free_port

REPO = Path(__file__).resolve().parents[2]
KIT = REPO.parent / "shared" / "freeswitch" / "fslab"
INSTALLER = REPO / "scripts" / "install_freeswitch_conf.py"

#: The environment variables that name a FreeSWITCH of one's own (all but the first optional).
ENVIRONMENT = {
    "CCD_REAL_FS_CONF": "its conf dir; the tier installs freeswitch_conf/ there (required)",
    "CCD_REAL_FS_ESL": "event socket host:port (default 127.0.0.1:8021)",
    "CCD_REAL_FS_PASSWORD": "event socket password (default ClueCon)",
    "CCD_REAL_FS_SIP": "host:port of its internal SIP profile (default 127.0.0.1:5060)",
    "CCD_REAL_FS_LOG": "its log file, checked for errors after the install (default: none)",
    "CCD_REAL_FS": "'off' skips the tier even when a FreeSWITCH is at hand",
}

#: The loopback port of the customer phone the ccd_trunk gateway points at in the tier.
CUSTOMER_PORT = 5290
#: SIP password the tier gives the desk phones 1001-1006 (ccd_phone_password).
PHONE_PASSWORD = "1234"
#: directory/default/ccd_real_tests.xml: 1099 is an agent who must confirm each call with a
#: key (FreeSWITCH's group_confirm) and whose phone never presses it (defect 1's test).
TEST_USERS = """<include>
  <!-- Written by ccd's real-switch tier (tests/real/lab.py). -->
  <user id="1099">
    <params><param name="password" value="{password}"/></params>
    <variables>
      <variable name="user_context" value="default"/>
      <variable name="group_confirm_key" value="1"/>
      <variable name="group_confirm_file" value="tone_stream://%(500,500,440);loops=20"/>
      <variable name="group_confirm_timeout" value="4"/>
    </variables>
  </user>
</include>
"""

#: The bearer token the tier's daemons want on endpoints with customer data.
HTTP_TOKEN = "real-tier-token-0123456789"


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    return (host, int(port)) if sep and port.isdigit() else (text, default_port)


@dataclass
class RealSwitch:
    conf_dir: Path
    esl: tuple[str, int] = ("127.0.0.1", 8021)
    password: str = "ClueCon"
    sip: tuple[str, int] = ("127.0.0.1", 5060)
    log_path: Path | None = None
    kit: Path | None = None

    @property
    def description(self) -> str:
        where = f"the kit {self.kit}" if self.kit else "CCD_REAL_FS_CONF"
        return f"FreeSWITCH at {self.esl[0]}:{self.esl[1]} ({where}, conf {self.conf_dir})"

    def client(self) -> EslClient:
        return EslClient(*self.esl, self.password)

    def answers(self) -> bool:
        try:
            client = self.client()
        except Exception:
            return False
        try:
            return client.api("status").startswith("UP")
        finally:
            client.close()

    @contextlib.contextmanager
    def held(self, wait: float = 1800.0) -> Iterator[None]:
        """This process alone drives the switch while inside (other runs wait their turn).

        Two test runs on one switch ring the same desk phones and hang up each other's
        calls; the lock file is named after the event socket, so runs on other switches
        go on side by side.
        """
        host, port = self.esl
        path = Path(tempfile.gettempdir()) / f"ccd-real-switch-{host}-{port}.lock"
        with open(path, "a+") as f:
            deadline = time.monotonic() + wait
            announced = False
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{self.description} stayed busy {wait:.0f} s") from None
                    if not announced:
                        print(
                            f"waiting for another run on {self.description} ({path})",
                            file=sys.stderr,
                        )
                        announced = True
                    time.sleep(0.5)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def ensure_up(self) -> None:
        if self.kit is not None and shutil.which("sipp") is None:
            # The kit installs its runtime (sipp among it) when it starts; it may be up
            # already on a machine where sipp went missing.
            subprocess.run([str(self.kit), "install"], capture_output=True, timeout=600)
        if self.answers():
            return
        if self.kit is None:
            raise RuntimeError(f"{self.description} does not answer on its event socket")
        done = subprocess.run([str(self.kit), "start"], capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not self.answers():
            raise RuntimeError(f"fslab start failed:\n{done.stdout}\n{done.stderr}")

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size if self.log_path else 0
        except FileNotFoundError:
            return 0

    def log_settled(self, offset: int, quiet: float = 0.3) -> bool:
        """True once the log grew past ``offset`` and then stayed the same for ``quiet`` s."""
        size = self.log_size()
        if size <= offset:
            return False
        time.sleep(quiet)
        return self.log_size() == size

    def log_since(self, offset: int) -> str:
        if self.log_path is None:
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def install(self) -> str:
        """Site settings for the tier, then the project's install script. Its output."""
        site = self.conf_dir / "ccd_vars.d"
        site.mkdir(exist_ok=True)
        (site / "ccd_real_tests.xml").write_text(
            "<include>\n"
            "  <!-- Written by ccd's real-switch tier (tests/real/lab.py). -->\n"
            f'  <X-PRE-PROCESS cmd="set" data="ccd_esl_password={self.password}"/>\n'
            f'  <X-PRE-PROCESS cmd="set" data="ccd_phone_password={PHONE_PASSWORD}"/>\n'
            f'  <X-PRE-PROCESS cmd="set" data="ccd_trunk_proxy=127.0.0.1:{CUSTOMER_PORT}"/>\n'
            "</include>\n",
            encoding="utf-8",
        )
        done = subprocess.run(
            [
                sys.executable, str(INSTALLER), "--conf-dir", str(self.conf_dir),
                "--esl", f"{self.esl[0]}:{self.esl[1]}", "--esl-password", self.password,
            ],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"install_freeswitch_conf.py failed:\n{done.stdout}{done.stderr}")
        self._test_users()
        return done.stdout

    def _test_users(self) -> None:
        """Desk phones only the tier uses, beside the shipped ones (kept between runs)."""
        path = self.conf_dir / "directory" / "default" / "ccd_real_tests.xml"
        text = TEST_USERS.format(password=PHONE_PASSWORD)
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return
        path.write_text(text, encoding="utf-8")
        client = self.client()
        try:
            reply = client.api("reloadxml")
        finally:
            client.close()
        if not reply.startswith("+OK"):
            raise RuntimeError(f"reloadxml after {path}: {reply}")


def find_switch(env: Mapping[str, str] = os.environ) -> RealSwitch | str:
    """The FreeSWITCH at hand, or why there is none (one line)."""
    if env.get("CCD_REAL_FS", "").lower() in ("off", "0", "no"):
        return "CCD_REAL_FS=off"
    if env.get("CCD_REAL_FS_CONF"):
        conf = Path(env["CCD_REAL_FS_CONF"])
        if not conf.is_dir():
            return f"CCD_REAL_FS_CONF={conf} is not a directory"
        if shutil.which("sipp") is None:
            return "sipp is not installed (Debian: apt-get install sip-tester)"
        return RealSwitch(
            conf_dir=conf,
            esl=_host_port(env.get("CCD_REAL_FS_ESL", "127.0.0.1:8021"), 8021),
            password=env.get("CCD_REAL_FS_PASSWORD", "ClueCon"),
            sip=_host_port(env.get("CCD_REAL_FS_SIP", "127.0.0.1:5060"), 5060),
            log_path=Path(env["CCD_REAL_FS_LOG"]) if env.get("CCD_REAL_FS_LOG") else None,
        )
    if KIT.is_file() and os.access(KIT, os.X_OK):
        root = Path("/opt/fslab/freeswitch")
        return RealSwitch(
            conf_dir=root / "etc" / "freeswitch",
            log_path=root / "var" / "log" / "freeswitch" / "freeswitch.log",
            kit=KIT,
        )
    return f"no FreeSWITCH at hand: neither {KIT} nor CCD_REAL_FS_CONF"


# -- configuration files ------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(f"no TOML for {type(value).__name__}")


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """A nested mapping as TOML: mappings of mappings become [tables]."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in scalars.items()]
    out = ""
    if prefix and (lines or not tables):
        out += f"[{prefix}]\n"
    out += "".join(line + "\n" for line in lines)
    for name, table in tables.items():
        key = f"{prefix}.{json.dumps(name)}" if prefix else json.dumps(name)
        out += "\n" + to_toml(table, key)
    return out


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, tables merged key by key (``queues``/``agents`` replaced)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key not in (
            "queues", "agents",
        ):  # fmt: skip
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


# -- the call centre -----------------------------------------------------------------------------
def ccd_binary() -> str:
    local = Path(sys.executable).with_name("ccd")
    return str(local) if local.exists() else (shutil.which("ccd") or "ccd")


class Center:
    """A private redis-server and ``ccd run`` against the real switch."""

    def __init__(self, switch: RealSwitch, workdir: Path, config: Mapping[str, Any]) -> None:
        self.switch = switch
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(self.workdir / "redis")
        self.http_port = free_port()
        self.extra = config
        self.config_path = self.workdir / "ccd.toml"
        self.log_path = self.workdir / "ccd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self.restarts = 0

    def config(self) -> dict[str, Any]:
        host, port = self.switch.esl
        base = {
            "esl": {
                "host": host, "port": port, "password": self.switch.password,
                "backoff_min": 0.2, "backoff_max": 1.0,
            },
            "redis": {"url": self.redis.url},
            "http": {"host": "127.0.0.1", "port": self.http_port, "token": HTTP_TOKEN},
            "log": {"format": "json", "level": "info"},
            "voicemail": {"boxes": ["sales", "support", "payments", "general"]},
            "callback": {"business_hours": []},
        }  # fmt: skip
        return merge(base, self.extra)

    def start(self, *, wait: bool = True) -> Center:
        if not self.redis.running:
            self.redis.start()
        self.config_path.write_text(to_toml(self.config()), encoding="utf-8")
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 (kept open while it runs)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCD_")}
        # This checkout's ccd, whichever checkout's venv the ``ccd`` script belongs to (a
        # worktree sharing another's venv would otherwise run the other's code).
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
        self.process = subprocess.Popen(
            [ccd_binary(), "run", "--config", str(self.config_path), "--log-format", "json"],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
        if wait:
            self.wait_ready()
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}/readyz", timeout=1
            ) as reply:
                return reply.status == 200
        except OSError:
            return False

    def metric(self, name: str) -> float:
        """A sample of the daemon's /metrics (open, no token), 0 when absent."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=2) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"ccd run exited {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"ccd run not ready after {timeout} s:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """SIGKILL: a crash, as systemd would see one."""
        self.stop(signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        self.redis.stop()

    # -- what the daemon said --------------------------------------------------------------
    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def log(self) -> list[dict[str, Any]]:
        out = []
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    out.append(record)
        return out

    def logged(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [
            r
            for r in self.log()
            if r.get("event") == event and all(r.get(k) == v for k, v in match.items())
        ]

    def wait_logged(self, event: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
        return wait_for(
            lambda: (self.logged(event, **match) or [None])[0],
            timeout,
            f"the daemon to log {event} {match or ''}",
        )

    # -- operator's tools -------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCD_")}
        done = subprocess.run(
            [ccd_binary(), *args, "--config", str(self.config_path)],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"ccd {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
        return done

    def agent(self, agent_id: str) -> dict[str, Any]:
        return json.loads(self.cli("agent", "show", agent_id, "--json").stdout)

    def agents(self) -> AgentRepository:
        """The agents in this centre's Redis, as the CLI sees them."""
        return AgentRepository(Store.create(self.redis.client(), "ccd:"))

    def callbacks(self) -> CallbackStore:
        """The callback requests in this centre's Redis, as the CLI sees them."""
        return CallbackStore(Store.create(self.redis.client(), "ccd:"))

    def set_login(self, action: str, *agent_ids: str) -> None:
        """What ``ccd agent login|logout|break|ready`` does, without a process per agent."""
        repo = self.agents()
        for agent_id in agent_ids:
            agent, _ = repo.transition(
                agent_id, lambda state: presence.set_login(state, action, time.time())
            )
            if agent.state.login is presence.Login.READY:
                repo.hand_out(agent_id)  # as the CLI does: a waiting caller gets them at once


#: Poll a predicate until it is truthy, with a deadline (the fast suite's helper).
wait_for = eventually


def stamp(seen: Seen) -> float:
    """When FreeSWITCH fired the event (its Event-Date-Timestamp, epoch seconds)."""
    return int(seen.get("Event-Date-Timestamp")) / 1e6


def utc(text: str) -> float:
    """The daemon's ISO time stamp as epoch seconds."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- callers ------------------------------------------------------------------------------------
@dataclass
class Caller:
    """A caller on a loopback channel: ``a`` is ours (parked), ``b`` runs the dialplan."""

    a: str
    b: str
    number: str
    esl: EslClient = field(repr=False)

    def press(self, digits: str) -> None:
        reply = self.esl.api(f"uuid_send_dtmf {self.a} {digits}")
        if not reply.startswith("+OK"):
            raise AssertionError(f"uuid_send_dtmf: {reply}")

    def hang_up(self) -> None:
        self.esl.api(f"uuid_kill {self.a}")

    def alive(self) -> bool:
        return self.esl.api(f"uuid_exists {self.b}").strip() == "true"

    def var(self, name: str) -> str:
        reply = self.esl.api(f"uuid_getvar {self.b} {name}").strip()
        return "" if reply in ("_undef_", "") or reply.startswith("-ERR") else reply


def place_call(
    esl: EslClient,
    extension: str,
    *,
    number: str,
    name: str = "",
    context: str = "ccd",
    variables: Mapping[str, str] | None = None,
    timeout: float = 15.0,
) -> Caller:
    """A caller dialling ``extension`` in ``context`` with caller id ``number``/``name``."""
    a = str(uuidlib.uuid4())
    pairs = {
        "origination_uuid": a,
        "origination_caller_id_number": number,
        **({"origination_caller_id_name": name} if name else {}),
        **(variables or {}),
    }
    inner = ",".join(f"{k}={quote_var_value(v)}" for k, v in pairs.items())
    job = esl.bgapi(f"originate '{{{inner}}}loopback/{extension}/{context}' &park()")
    result = esl.wait_job(job, timeout)
    if not (result.event.body or "").startswith("+OK"):
        raise AssertionError(f"caller to {extension} not placed: {result.event.body}")
    b = esl.api(f"uuid_getvar {a} other_loopback_leg_uuid").strip()
    return Caller(a, b, number, esl)


def channel_events(events: Iterable[Seen], uuid: str, *names: str) -> list[Seen]:
    return [s for s in events if s.uuid == uuid and (not names or s.name in names)]


def is_execute(seen: Seen, uuid: str, app: str | None = None) -> bool:
    """FreeSWITCH reports channel ``uuid`` running a dialplan application (``app`` if given)."""
    return (
        seen.uuid == uuid
        and seen.name == "CHANNEL_EXECUTE"
        and (app is None or seen.get("Application") == app)
    )


def executes(fs: EslClient, uuid: str, mark: int, app: str | None = None) -> list[Seen]:
    """What FreeSWITCH reported channel ``uuid`` running since ``mark`` (``app`` only, if
    given), in the order it ran it."""
    return [s for s in fs.snapshot()[mark:] if is_execute(s, uuid, app)]


def queued(fs: EslClient, caller: Caller, mark: int, what: str = "the caller queued") -> Seen:
    """FreeSWITCH parked the caller in a queue (the daemon takes the call from there)."""
    return fs.wait_event(
        lambda s: s.uuid == caller.b and s.name == "CHANNEL_PARK" and bool(s.var("ccd_queue")),
        since=mark, what=what,
    )  # fmt: skip


def bridged_pair(events: Iterable[Seen], uuid: str) -> str | None:
    """The other leg of the first CHANNEL_BRIDGE FreeSWITCH reported for ``uuid``."""
    for s in events:
        if s.name != "CHANNEL_BRIDGE":
            continue
        a, b = s.get("Bridge-A-Unique-ID"), s.get("Bridge-B-Unique-ID")
        if uuid in (a, b):
            return b if uuid == a else a
    return None
