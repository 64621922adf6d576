"""SIP desk phones and customers played by sipp, for the real-switch tier.

Theory of operation
-------------------
A :class:`Phone` is one sipp process in UAS mode on its own loopback port, answering every
INVITE the way its behaviour says (answer after N ms, 486 busy, 603 reject, ring until
cancelled). It is registered as a directory user by a separate, short sipp UAC run whose
REGISTER names the UAS port in its Contact, so FreeSWITCH sends the INVITEs there (the
registration's network port is the UAC's, the contact is the phone's: both on 127.0.0.1,
so FreeSWITCH takes the contact). sipp writes every message it sends and receives to a
trace file (``-trace_msg``) with a wall-clock time stamp; :meth:`Phone.invites` parses it
into :class:`Invite` records: when the INVITE arrived, its From header and display name,
and when it was answered, refused or cancelled. That is the phone's side of the wire.

:func:`dial` is a desk phone calling out (feature codes, outside calls): a sipp UAC run that
authenticates as the user, waits for the answer and for FreeSWITCH's BYE.

Scenarios are generated text (sipp's keyword substitution does not reach every attribute),
written into the phone's directory beside its trace.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Invite", "Phone", "dial", "quoted_display", "register", "sipp_binary"]

_UAS_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="{name}">
  <recv request="INVITE" crlf="true" rrs="true"/>
"""

_RINGING = """  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]ph[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:{user}@[local_ip]:[local_port]>
Content-Length: 0

]]></send>
"""

_FINAL = """  <send><![CDATA[
SIP/2.0 {code} {reason}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]ph[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <recv request="ACK" optional="false" timeout="32000" ontimeout="end"/>
  <label id="end"/>
</scenario>
"""

# Ringing until FreeSWITCH cancels (or, with a delay, until the delay runs out: answer).
_WAIT_CANCEL = """  <recv request="CANCEL" {timeout} next="cancelled"/>
"""

_ANSWER = """  <label id="answer"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]ph[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:{user}@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=ccd 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv

]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <nop next="end"/>
"""

_CANCELLED = """  <label id="cancelled"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <send><![CDATA[
SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[pid]ph[call_number]
[last_Call-ID:]
CSeq: [last_cseq_number] INVITE
Content-Length: 0

]]></send>
  <recv request="ACK" timeout="32000" ontimeout="end"/>
  <label id="end"/>
</scenario>
"""

_REGISTER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register {user}">
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{domain}>;tag=[pid]reg[call_number]
To: <sip:{user}@{domain}>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:{user}@127.0.0.1:{port}>
Max-Forwards: 70
Expires: {expires}
User-Agent: ccd-tests
Content-Length: 0

]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{domain}>;tag=[pid]reg[call_number]
To: <sip:{user}@{domain}>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:{user}@127.0.0.1:{port}>
[authentication]
Max-Forwards: 70
Expires: {expires}
User-Agent: ccd-tests
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"""

# A desk phone dialling out: INVITE, the digest challenge, answer, then FreeSWITCH's BYE.
_DIAL = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="dial {number}">
  <send retrans="500"><![CDATA[
INVITE sip:{number}@{domain} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "{user}" <sip:{user}@{domain}>;tag=[pid]dial[call_number]
To: <sip:{number}@{domain}>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{user}@[local_ip]:[local_port]>
Max-Forwards: 70
User-Agent: ccd-tests
Content-Type: application/sdp
Content-Length: [len]

v=0
o=ccd 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000

]]></send>
  <recv response="407" auth="true"/>
  <send><![CDATA[
ACK sip:{number}@{domain} SIP/2.0
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
INVITE sip:{number}@{domain} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "{user}" <sip:{user}@{domain}>;tag=[pid]dial[call_number]
To: <sip:{number}@{domain}>
Call-ID: [call_id]
CSeq: 2 INVITE
Contact: <sip:{user}@[local_ip]:[local_port]>
[authentication]
Max-Forwards: 70
User-Agent: ccd-tests
Content-Type: application/sdp
Content-Length: [len]

v=0
o=ccd 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="{answer}" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "{user}" <sip:{user}@{domain}>;tag=[pid]dial[call_number]
To: <sip:{number}@{domain}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  {after_answer}
</scenario>
"""

_WAIT_BYE = """<recv request="BYE" timeout="{timeout}"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>"""

_SEND_BYE = """<pause milliseconds="{talk}"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "{user}" <sip:{user}@{domain}>;tag=[pid]dial[call_number]
To: <sip:{number}@{domain}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 3 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>"""


def sipp_binary() -> str | None:
    return shutil.which("sipp")


def quoted_display(from_header: str) -> str | None:
    """The display name of a From header value as a SIP phone reads it (RFC 3261
    quoted-string: the text between the quotes, each backslash pair standing for the
    character after it); a token display name as written; None when there is none."""
    value = from_header.strip()
    if value.startswith('"'):
        out, i = [], 1
        while i < len(value):
            ch = value[i]
            if ch == "\\" and i + 1 < len(value):
                out.append(value[i + 1])
                i += 2
                continue
            if ch == '"':
                return "".join(out)
            out.append(ch)
            i += 1
        return None  # unterminated
    if "<" in value:
        token = value.split("<", 1)[0].strip()
        return token or None
    return None


@dataclass
class Invite:
    """One INVITE a phone received and what became of it (wall-clock epoch seconds)."""

    call_id: str
    at: float
    from_header: str
    raw_from_line: str
    request_uri: str = ""
    answered_at: float | None = None
    refused_at: float | None = None
    cancelled_at: float | None = None
    bye_at: float | None = None

    @property
    def user(self) -> str:
        """The user part of the Request-URI: whom the INVITE calls."""
        return self.request_uri.removeprefix("sip:").split("@", 1)[0]

    @property
    def display(self) -> str | None:
        return quoted_display(self.from_header)

    @property
    def ended_ringing_at(self) -> float | None:
        times = [t for t in (self.answered_at, self.refused_at, self.cancelled_at) if t]
        return min(times) if times else None

    @property
    def ring_time(self) -> float | None:
        end = self.ended_ringing_at
        return None if end is None else end - self.at


_STAMP = re.compile(r"^-{10,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*$")


def _parse_trace(text: str) -> list[tuple[float, str, str]]:
    """sipp's -trace_msg file as (epoch time, 'sent'|'received', message text)."""
    out: list[tuple[float, str, str]] = []
    blocks = re.split(r"^(?=-{10,} \d{4}-)", text, flags=re.M)
    for block in blocks:
        lines = block.split("\n")
        m = _STAMP.match(lines[0]) if lines else None
        if not m or len(lines) < 3:
            continue
        at = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        direction = "sent" if " sent" in lines[1] else "received"
        message = "\n".join(lines[2:]).strip("\n")
        out.append((at, direction, message))
    return out


def _header(message: str, name: str) -> str:
    for line in message.split("\n"):
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name.lower():
            return value.strip()
    return ""


def register(
    user: str,
    contact_port: int,
    workdir: Path,
    *,
    password: str = "1234",
    domain: str = "127.0.0.1",
    sip: tuple[str, int] = ("127.0.0.1", 5060),
    expires: int = 300,
) -> None:
    """REGISTER ``user`` with contact 127.0.0.1:``contact_port`` (expires 0: unregister)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir / f"register-{user}-{expires}.xml"
    scenario.write_text(
        _REGISTER.format(user=user, domain=domain, port=contact_port, expires=expires),
        encoding="latin-1",
    )
    host, port = sip
    result = subprocess.run(
        [
            sipp_binary() or "sipp", f"{host}:{port}",
            "-sf", str(scenario), "-m", "1", "-i", "127.0.0.1", "-p", "0",
            "-au", user, "-ap", password,
            "-nostdin", "-timeout", "10s", "-timeout_error",
            "-trace_err", "-error_file", str(workdir / f"register-{user}-{expires}.err"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=workdir,
        timeout=20,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"REGISTER of {user} failed (sipp exit {result.returncode})")


def _udp_bound(port: int) -> bool:
    """Whether some socket is bound to UDP ``port`` (Linux /proc/net/udp)."""
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return True  # cannot tell: do not wait
    return any(line.split()[1].endswith(":%04X" % port) for line in lines)


class Phone:
    """A desk phone: sipp as UAS on ``port``, registered as ``user`` when asked.

    ``behaviour``: ``("answer", ms)`` rings ``ms`` milliseconds then answers (unless
    cancelled first), ``("refuse", code)`` answers the INVITE with ``code`` (486, 603...),
    ``("ring", None)`` rings until FreeSWITCH gives up.
    """

    def __init__(
        self,
        user: str,
        port: int,
        workdir: Path,
        behaviour: tuple[str, int | None] = ("answer", 500),
        *,
        password: str = "1234",
        domain: str = "127.0.0.1",
        sip: tuple[str, int] = ("127.0.0.1", 5060),
        media_port: int | None = None,
    ) -> None:
        self.user, self.port, self.password, self.domain, self.sip = (
            user, port, password, domain, sip,
        )  # fmt: skip
        self.behaviour = behaviour
        self.dir = Path(workdir) / f"phone-{user}-{port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.trace = self.dir / "messages.log"
        # sipp binds the media port and the one two above it: four apart, below
        # FreeSWITCH's RTP range (16384+) and the kernel's ephemeral ports (32768+).
        self.media_port = media_port or 10000 + (port - 5000) * 4
        self._process: subprocess.Popen[bytes] | None = None

    def scenario(self) -> str:
        kind, value = self.behaviour
        user = self.user
        text = _UAS_HEAD.format(name=f"phone {user} {kind} {value}")
        if kind == "refuse":
            reason = {486: "Busy Here", 603: "Decline", 480: "Temporarily Unavailable"}.get(
                int(value or 486), "Refused"
            )
            return text + _FINAL.format(code=value, reason=reason)
        text += _RINGING.format(user=user)
        if kind == "answer":
            text += _WAIT_CANCEL.format(timeout=f'timeout="{int(value or 0)}" ontimeout="answer"')
        else:
            text += _WAIT_CANCEL.format(timeout="")
            text += '  <nop next="cancelled"/>\n'
        text += _ANSWER.format(user=user)
        return text + _CANCELLED

    # -- process --------------------------------------------------------------------------
    def start(self) -> Phone:
        scenario = self.dir / "uas.xml"
        scenario.write_text(self.scenario(), encoding="latin-1")
        with contextlib.suppress(FileNotFoundError):
            self.trace.unlink()
        self._process = subprocess.Popen(
            [
                sipp_binary() or "sipp",
                "-sf", str(scenario),
                "-i", "127.0.0.1", "-p", str(self.port),
                "-mi", "127.0.0.1", "-mp", str(self.media_port),
                "-trace_msg", "-message_file", str(self.trace),
                "-trace_err", "-error_file", str(self.dir / "errors.log"),
                "-nostdin", "-max_recv_loops", "100000",
                "-timeout_error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.dir,
        )  # fmt: skip
        deadline = time.monotonic() + 5
        while not (_udp_bound(self.port) and _udp_bound(self.media_port)):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sipp for phone {self.user} did not start: see {self.dir}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGUSR1)  # sipp's "quit now"
        try:
            process.wait(3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(3)

    def register(self, expires: int = 300) -> None:
        """REGISTER the user with this phone's port as its contact (0: unregister)."""
        register(
            self.user, self.port, self.dir, password=self.password, domain=self.domain,
            sip=self.sip, expires=expires,
        )  # fmt: skip

    def unregister(self) -> None:
        self.register(expires=0)

    # -- what the phone saw ------------------------------------------------------------------
    def messages(self) -> list[tuple[float, str, str]]:
        try:
            return _parse_trace(self.trace.read_text(encoding="utf-8", errors="replace"))
        except FileNotFoundError:
            return []

    def invites(self) -> list[Invite]:
        """Every INVITE received, in order, with how it ended ringing."""
        calls: dict[str, Invite] = {}
        for at, direction, message in self.messages():
            first = message.split("\n", 1)[0]
            call_id = _header(message, "Call-ID")
            cseq = _header(message, "CSeq")
            if direction == "received" and first.startswith("INVITE ") and call_id not in calls:
                from_line = next(
                    (ln for ln in message.split("\n") if ln.lower().startswith("from:")), ""
                )
                calls[call_id] = Invite(
                    call_id, at, _header(message, "From"), from_line, first.split()[1]
                )
                continue
            invite = calls.get(call_id)
            if invite is None:
                continue
            if direction == "sent" and first.startswith("SIP/2.0 ") and cseq.endswith("INVITE"):
                code = int(first.split()[1])
                if code == 200 and invite.answered_at is None:
                    invite.answered_at = at
                elif code >= 300 and code != 487 and invite.refused_at is None:
                    invite.refused_at = at
            elif direction == "received" and first.startswith("CANCEL "):
                invite.cancelled_at = invite.cancelled_at or at
            elif direction == "received" and first.startswith("BYE "):
                invite.bye_at = invite.bye_at or at
        return sorted(calls.values(), key=lambda i: i.at)


def dial(
    user: str,
    number: str,
    workdir: Path,
    *,
    password: str = "1234",
    domain: str = "127.0.0.1",
    sip: tuple[str, int] = ("127.0.0.1", 5060),
    talk_ms: int | None = None,
    wait_bye_ms: int = 20000,
    answer: int = 200,
) -> subprocess.Popen[bytes]:
    """A desk phone ``user`` dials ``number`` (started in the background).

    The call waits for FreeSWITCH's BYE (``wait_bye_ms``), or, with ``talk_ms``, hangs up
    itself after that long. ``.wait()`` on the result: exit code 0 = the scenario ran.
    """
    path = Path(workdir) / f"dial-{user}-{abs(hash(number)) % 10**8}-{time.monotonic_ns()}"
    path.mkdir(parents=True, exist_ok=True)
    after = (
        _SEND_BYE.format(talk=talk_ms, user=user, domain=domain, number=number)
        if talk_ms is not None
        else _WAIT_BYE.format(timeout=wait_bye_ms)
    )
    (path / "uac.xml").write_text(
        _DIAL.format(user=user, domain=domain, number=number, answer=answer, after_answer=after),
        encoding="latin-1",
    )
    host, port = sip
    return subprocess.Popen(
        [
            sipp_binary() or "sipp", f"{host}:{port}",
            "-sf", str(path / "uac.xml"), "-m", "1", "-i", "127.0.0.1", "-p", "0",
            "-mi", "127.0.0.1", "-mp", "0",
            "-au", user, "-ap", password, "-nostdin",
            "-timeout", f"{(wait_bye_ms + (talk_ms or 0)) // 1000 + 15}s", "-timeout_error",
            "-trace_msg", "-message_file", str(path / "messages.log"),
            "-trace_err", "-error_file", str(path / "errors.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=path,
    )  # fmt: skip
