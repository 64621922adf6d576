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

_VIA = "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]"
# The phone's tag on the To header of its responses to an INVITE.
_PHONE_TAG = ";tag=[pid]ph[call_number]"
# Every SDP body: PCMU and telephone-event (a phone's answer adds _SDP_ANSWER's lines).
_SDP = """v=0
o=ccd 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
"""
_SDP_ANSWER = _SDP + "a=fmtp:101 0-15\na=sendrecv\n"


def _scenario(name: str) -> str:
    """The opening of a scenario file (the caller closes it with ``</scenario>``)."""
    return f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">\n'


def _send(*lines: str, sdp: str = "", retrans: bool = False) -> str:
    """A sipp ``<send>`` of one SIP message: its start line and headers as given, then its
    length (and type) and ``sdp``, the body, if any. ``retrans``: resent every 500 ms until
    answered (a request over UDP)."""
    length = (
        ("Content-Type: application/sdp", "Content-Length: [len]")
        if sdp
        else ("Content-Length: 0",)
    )
    message = "\n".join((*lines, *length)) + "\n\n" + (sdp + "\n" if sdp else "")
    send = '<send retrans="500">' if retrans else "<send>"
    return f"  {send}<![CDATA[\n{message}]]></send>\n"


def _reply(
    status: str, *, tag: bool = True, cseq: str = "[last_CSeq:]", contact: str = "", sdp: str = ""
) -> str:
    """A response to the request last received, with its Via, From, To, Call-ID and CSeq.
    ``tag``: the phone's To tag (its responses to the INVITE); ``contact``: a Contact header
    naming this user at the phone's address."""
    return _send(
        f"SIP/2.0 {status}",
        "[last_Via:]",
        "[last_From:]",
        "[last_To:]" + (_PHONE_TAG if tag else ""),
        "[last_Call-ID:]",
        cseq,
        *([f"Contact: <sip:{contact}@[local_ip]:[local_port]>"] if contact else []),
        sdp=sdp,
    )


# 200 OK to a BYE or a CANCEL.
_OK = _reply("200 OK", tag=False)

_END = '  <label id="end"/>\n</scenario>\n'


def _answered(user: str) -> str:
    """A phone's answer (label ``answer``), then the ACK, FreeSWITCH's BYE and its 200 OK."""
    return (
        '  <label id="answer"/>\n'
        + _reply("200 OK", contact=user, sdp=_SDP_ANSWER)
        + '  <recv request="ACK" crlf="true"/>\n'
        + '  <recv request="BYE"/>\n'
        + _OK
        + '  <nop next="end"/>\n'
    )


# FreeSWITCH cancelled the ring (label ``cancelled``): 200 to the CANCEL, 487 to the INVITE.
_CANCELLED = (
    '  <label id="cancelled"/>\n'
    + _OK
    + _reply("487 Request Terminated", cseq="CSeq: [last_cseq_number] INVITE")
    + '  <recv request="ACK" timeout="32000" ontimeout="end"/>\n'
    + _END
)


def _register_scenario(user: str, domain: str, port: int, expires: int) -> str:
    """REGISTER, the digest challenge, REGISTER again with the answer, 200."""

    def request(cseq: int, *auth: str) -> str:
        return _send(
            "REGISTER sip:[remote_ip] SIP/2.0",
            _VIA,
            f"From: <sip:{user}@{domain}>;tag=[pid]reg[call_number]",
            f"To: <sip:{user}@{domain}>",
            "Call-ID: [call_id]",
            f"CSeq: {cseq} REGISTER",
            f"Contact: <sip:{user}@127.0.0.1:{port}>",
            *auth,
            "Max-Forwards: 70",
            f"Expires: {expires}",
            "User-Agent: ccd-tests",
            retrans=True,
        )

    return (
        _scenario(f"register {user}")
        + request(1)
        + '  <recv response="401" auth="true"/>\n'
        + request(2, "[authentication]")
        + '  <recv response="200"/>\n</scenario>\n'
    )


def _dial_scenario(
    user: str, domain: str, number: str, answer: int, talk_ms: int | None, wait_bye_ms: int
) -> str:
    """A desk phone dialling out: INVITE, the digest challenge, answer, then FreeSWITCH's BYE
    (or, with ``talk_ms``, its own BYE after that long)."""
    from_ = f'From: "{user}" <sip:{user}@{domain}>;tag=[pid]dial[call_number]'
    to = f"To: <sip:{number}@{domain}>"

    def invite(cseq: int, *auth: str) -> str:
        return _send(
            f"INVITE sip:{number}@{domain} SIP/2.0",
            _VIA,
            from_,
            to,
            "Call-ID: [call_id]",
            f"CSeq: {cseq} INVITE",
            f"Contact: <sip:{user}@[local_ip]:[local_port]>",
            *auth,
            "Max-Forwards: 70",
            "User-Agent: ccd-tests",
            sdp=_SDP,
            retrans=True,
        )

    def in_dialog(method: str, cseq: int, *, retrans: bool = False) -> str:
        return _send(
            f"{method} [next_url] SIP/2.0",
            _VIA,
            from_,
            to + "[peer_tag_param]",
            "Call-ID: [call_id]",
            f"CSeq: {cseq} {method}",
            "Max-Forwards: 70",
            retrans=retrans,
        )

    challenged_ack = _send(
        f"ACK sip:{number}@{domain} SIP/2.0",
        "[last_Via:]",
        "[last_From:]",
        "[last_To:]",
        "[last_Call-ID:]",
        "CSeq: 1 ACK",
        "Max-Forwards: 70",
    )
    if talk_ms is None:
        after_answer = f'  <recv request="BYE" timeout="{wait_bye_ms}"/>\n' + _OK
    else:
        after_answer = (
            f'  <pause milliseconds="{talk_ms}"/>\n'
            + in_dialog("BYE", 3, retrans=True)
            + '  <recv response="200"/>\n'
        )
    return (
        _scenario(f"dial {number}")
        + invite(1)
        + '  <recv response="407" auth="true"/>\n'
        + challenged_ack
        + invite(2, "[authentication]")
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="180" optional="true"/>\n'
        + '  <recv response="183" optional="true"/>\n'
        + f'  <recv response="{answer}" rrs="true"/>\n'
        + in_dialog("ACK", 2)
        + after_answer
        + "</scenario>\n"
    )


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
        _register_scenario(user, domain, contact_port, expires),
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
        text = _scenario(f"phone {user} {kind} {value}")
        text += '  <recv request="INVITE" crlf="true" rrs="true"/>\n'
        if kind == "refuse":
            reason = {486: "Busy Here", 603: "Decline", 480: "Temporarily Unavailable"}.get(
                int(value or 486), "Refused"
            )
            text += _reply(f"{value} {reason}")
            return (
                text
                + '  <recv request="ACK" optional="false" timeout="32000" ontimeout="end"/>\n'
                + _END
            )
        text += _reply("180 Ringing", contact=user)
        # Ringing until FreeSWITCH cancels (or, with a delay, until the delay runs out: answer).
        timeout = f'timeout="{int(value or 0)}" ontimeout="answer"' if kind == "answer" else ""
        text += f'  <recv request="CANCEL" {timeout} next="cancelled"/>\n'
        if kind != "answer":
            text += '  <nop next="cancelled"/>\n'
        text += _answered(user)
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
    (path / "uac.xml").write_text(
        _dial_scenario(user, domain, number, answer, talk_ms, wait_bye_ms), encoding="latin-1"
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
