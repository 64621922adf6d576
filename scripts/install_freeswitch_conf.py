#!/usr/bin/env python3
"""Install ccd's FreeSWITCH configuration (freeswitch_conf/) into a FreeSWITCH conf dir.

    scripts/install_freeswitch_conf.py --conf-dir /etc/freeswitch
    scripts/install_freeswitch_conf.py --conf-dir /etc/freeswitch --dry-run

What it does, in order (every step says what it did; run it again and nothing changes):

1. Copies every XML file of freeswitch_conf/ to the same path under the conf dir (SOUNDS.md
   stays in the checkout: it lists the sound files the configuration plays). A file that
   is already there with the same content is left alone; one with other content is first
   copied to <conf-dir>/ccd-backups/<UTC time>/<same path>, then replaced. Nothing else
   of the conf dir is touched, except:
2. vars.xml gets one line, <X-PRE-PROCESS cmd="include" data="ccd_vars.xml"/>, before its
   closing tag, unless it includes ccd_vars.xml already (backed up first as well).
3. autoload_configs/post_load_switch.conf.xml raises sessions-per-second. FreeSWITCH reads
   this file after switch.conf.xml at start-up, so its value wins there; when the conf
   dir's switch.conf.xml already asks for more, the installed copy keeps that higher value:
   the install never lowers a limit. switch.conf.xml itself is not changed.
4. Unless --no-reload: over the event socket, `reloadxml`; `load` for each module ccd
   needs that is not loaded; `fsctl sps` raised to the installed value when the running
   switch admits fewer; the ccd_trunk gateway (re)loaded (`sofia profile external
   killgw` + `rescan`) when its file changed. Event socket settings apply only when
   mod_event_socket is reloaded or FreeSWITCH restarts: the script says so when they changed.

Site settings (passwords, the trunk's address) belong in <conf-dir>/ccd_vars.d/*.xml
(X-PRE-PROCESS set lines, read after ccd_vars.xml): the install never touches that folder.

Exit codes: 0 done; 1 FreeSWITCH refused something (the message says what) or could not be
reached; 2 bad arguments. Standard library only: it runs with any python3.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import socket
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "freeswitch_conf"
INCLUDE_LINE = '  <X-PRE-PROCESS cmd="include" data="ccd_vars.xml"/>'
POST_LOAD = Path("autoload_configs/post_load_switch.conf.xml")
GATEWAY = Path("sip_profiles/external/ccd_trunk.xml")
EVENT_SOCKET = Path("autoload_configs/event_socket.conf.xml")
#: Modules the dialplan, the IVR and the daemon's commands use.
MODULES = (
    "mod_event_socket",
    "mod_sofia",
    "mod_commands",
    "mod_dptools",
    "mod_dialplan_xml",
    "mod_voicemail",
    "mod_local_stream",
    "mod_tone_stream",
    "mod_sndfile",
    "mod_say_en",
)
_SPS = re.compile(r'<param\s+name="sessions-per-second"\s+value="(\d+)"\s*/>')
_COMMENT = re.compile(r"<!--.*?-->", re.S)


class Failure(Exception):
    """FreeSWITCH refused a step or could not be reached."""


# -- files ------------------------------------------------------------------------------------
class Installer:
    def __init__(self, conf_dir: Path, source: Path, *, dry_run: bool) -> None:
        self.conf_dir = conf_dir
        self.source = source
        self.dry_run = dry_run
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")  # noqa: UP017
        self.backup_dir = conf_dir / "ccd-backups" / stamp
        n = 1
        while self.backup_dir.exists():  # two installs within one second
            n += 1
            self.backup_dir = conf_dir / "ccd-backups" / f"{stamp}-{n}"
        self.changed: set[Path] = set()

    def say(self, text: str) -> None:
        print(("would: " if self.dry_run else "") + text)

    def backup(self, rel: Path) -> Path:
        target = self.backup_dir / rel
        if not self.dry_run:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.conf_dir / rel, target)
        return target

    def write(self, rel: Path, data: bytes) -> None:
        """Write ``data`` at ``rel``: unchanged, new, or replaced after a backup."""
        target = self.conf_dir / rel
        if target.is_file() and target.read_bytes() == data:
            return
        if target.exists():
            saved = self.backup(rel)
            self.say(f"replace {rel} (previous copy: {saved})")
        else:
            self.say(f"install {rel}")
        self.changed.add(rel)
        if not self.dry_run:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".ccd-tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)

    def files(self) -> None:
        for path in sorted(p for p in self.source.rglob("*.xml") if p.is_file()):
            rel = path.relative_to(self.source)
            if rel == POST_LOAD:
                continue  # written by post_load_switch() with the value it settles on
            self.write(rel, path.read_bytes())

    def vars_include(self) -> None:
        rel = Path("vars.xml")
        path = self.conf_dir / rel
        if not path.is_file():
            raise Failure(f"{path} not found: is {self.conf_dir} FreeSWITCH's conf dir?")
        text = path.read_text(encoding="utf-8")
        if re.search(r'cmd="include"\s+data="ccd_vars\.xml"', _COMMENT.sub("", text)):
            return
        closing = text.rfind("</include>")
        if closing < 0:
            raise Failure(f"{path}: no closing </include> to put the ccd_vars.xml include before")
        self.write(rel, (text[:closing] + INCLUDE_LINE + "\n" + text[closing:]).encode("utf-8"))

    def sessions_per_second(self) -> int:
        """The sessions-per-second the installed post_load_switch.conf.xml sets."""
        shipped_text = (self.source / POST_LOAD).read_text(encoding="utf-8")
        shipped = _active_sps(shipped_text)
        if shipped is None:
            raise Failure(f"{self.source / POST_LOAD}: no sessions-per-second param")
        switch_conf = self.conf_dir / "autoload_configs" / "switch.conf.xml"
        current = (
            _active_sps(switch_conf.read_text(encoding="utf-8")) if switch_conf.is_file() else None
        )
        wanted = max(shipped, current or 0)
        text = shipped_text
        if wanted != shipped:
            self.say(f"keep sessions-per-second {wanted} from switch.conf.xml (never lowered)")
            text = _SPS.sub(f'<param name="sessions-per-second" value="{wanted}"/>', text, count=1)
        self.write(POST_LOAD, text.encode("utf-8"))
        return wanted


def _active_sps(text: str) -> int | None:
    found = _SPS.search(_COMMENT.sub("", text))
    return int(found.group(1)) if found else None


# -- the event socket ----------------------------------------------------------------------------
class Esl:
    """Just enough of the event socket for `api` commands (no events)."""

    def __init__(self, host: str, port: int, password: str, timeout: float = 10.0) -> None:
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise Failure(f"cannot reach the event socket at {host}:{port}: {exc}") from None
        self.buf = b""
        self.read()  # auth/request
        headers, _ = self.send(f"auth {password}")
        if not headers.get("Reply-Text", "").startswith("+OK"):
            raise Failure(f"the event socket at {host}:{port} refused the password")

    def read(self) -> tuple[dict[str, str], str]:
        while b"\n\n" not in self.buf:
            self.buf += self._recv()
        block, self.buf = self.buf.split(b"\n\n", 1)
        headers = {}
        for line in block.decode("utf-8", "replace").splitlines():
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        length = int(headers.get("Content-Length", "0") or 0)
        while len(self.buf) < length:
            self.buf += self._recv()
        body, self.buf = self.buf[:length], self.buf[length:]
        return headers, body.decode("utf-8", "replace")

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise Failure("the event socket closed the connection")
        return data

    def send(self, line: str) -> tuple[dict[str, str], str]:
        self.sock.sendall(line.encode("utf-8") + b"\n\n")
        while True:
            headers, body = self.read()
            if headers.get("Content-Type") in ("command/reply", "api/response"):
                return headers, body

    def api(self, command: str) -> str:
        return self.send(f"api {command}")[1].strip()

    def close(self) -> None:
        try:
            self.sock.sendall(b"exit\n\n")
            self.sock.close()
        except OSError:
            pass


def reload(esl: Esl, installer: Installer, sps: int) -> None:
    reply = esl.api("reloadxml")
    if not reply.startswith("+OK"):
        raise Failure(f"reloadxml: {reply}")
    print(f"reloadxml: {reply}")
    for module in MODULES:
        if esl.api(f"module_exists {module}") != "true":
            reply = esl.api(f"load {module}")
            if "+OK" not in reply:
                raise Failure(f"load {module}: {reply}")
            print(f"load {module}: {reply.splitlines()[-1]}")
    running = re.search(r"(\d+)", esl.api("fsctl sps"))
    if running and int(running.group(1)) < sps:
        print(f"fsctl sps {sps}: {esl.api(f'fsctl sps {sps}')}")
    if GATEWAY in installer.changed:
        gateway = esl.api("global_getvar ccd_gateway") or "ccd_trunk"
        if "Invalid" not in esl.api(f"sofia status gateway {gateway}"):
            esl.api(f"sofia profile external killgw {gateway}")
        esl.api("sofia profile external rescan")
        state = esl.api(f"sofia status gateway {gateway}")
        if "Invalid" in state:
            raise Failure(f"gateway {gateway} did not load: see FreeSWITCH's log")
        print(f"gateway {gateway}: (re)loaded into profile external")
    if EVENT_SOCKET in installer.changed:
        print(
            "note: event socket settings (autoload_configs/event_socket.conf.xml) apply once "
            "mod_event_socket is reloaded or FreeSWITCH restarts"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Install freeswitch_conf/ into a FreeSWITCH conf dir and reload it."
    )
    parser.add_argument(
        "--conf-dir",
        type=Path,
        default=Path(os.environ.get("FREESWITCH_CONF_DIR", "/etc/freeswitch")),
        help="FreeSWITCH's conf dir (default: $FREESWITCH_CONF_DIR or /etc/freeswitch)",
    )
    parser.add_argument("--source", type=Path, default=SOURCE, help=argparse.SUPPRESS)
    parser.add_argument("--esl", default="127.0.0.1:8021", help="event socket host:port")
    parser.add_argument(
        "--esl-password",
        default=os.environ.get("CCD_ESL_PASSWORD", "ClueCon"),
        help="event socket password (default: $CCD_ESL_PASSWORD or ClueCon)",
    )
    parser.add_argument("--no-reload", action="store_true", help="copy files only")
    parser.add_argument("--dry-run", action="store_true", help="say what would change")
    args = parser.parse_args(argv)
    host, _, port = args.esl.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--esl: expected host:port, got {args.esl!r}")
    if not args.conf_dir.is_dir():
        parser.error(f"--conf-dir: {args.conf_dir} is not a directory")
    installer = Installer(args.conf_dir, args.source, dry_run=args.dry_run)
    try:
        installer.files()
        installer.vars_include()
        sps = installer.sessions_per_second()
        if not installer.changed:
            print(f"{args.conf_dir}: already up to date")
        if args.no_reload or args.dry_run:
            return 0
        esl = Esl(host, int(port), args.esl_password)
        try:
            reload(esl, installer, sps)
        finally:
            esl.close()
    except Failure as exc:
        print(f"install_freeswitch_conf: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
