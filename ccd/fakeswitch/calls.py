"""Calls in the fake FreeSWITCH: dialing a leg (directory users, outside parties, gateways)
and ringing it; callers and desk phones placing calls."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping

import structlog

from ccd.fakeswitch.channels import Channel, HangupSignal
from ccd.fakeswitch.phones import Behaviour

log = structlog.get_logger()


class Calls:
    """Part of :class:`ccd.fakeswitch.switch.FakeSwitch` (a mixin over its channels, events
    and clock): outbound legs, inbound callers."""

    # -- dialing --------------------------------------------------------------------------

    def _resolve(self, endpoint: str) -> tuple | str:
        """Endpoint -> (kind, party, behaviour, channel name, presence) or a failure cause."""
        proto, _, rest = endpoint.partition("/")
        if proto == "user":
            ext = rest.split("@", 1)[0]
            phone = self.phones.get(ext)
            if phone is None:
                return "USER_NOT_REGISTERED" if self.directory_user(ext) else "SUBSCRIBER_ABSENT"
            if not phone.registered:
                return "USER_NOT_REGISTERED"
            name = f"sofia/internal/{ext}@127.0.0.1:{phone.port}"
            return ("phone", ext, phone.behaviour, name, f"{ext}@{self.domain}")
        if proto == "sofia":
            parts = rest.split("/")
            if parts[0] == "gateway" and len(parts) >= 3:
                number = parts[2]
            elif len(parts) >= 2:
                number = parts[1].split("@", 1)[0]
            else:
                return "INVALID_NUMBER_FORMAT"
            party = self.outside.get(number)
            behaviour = party.behaviour if party else self.default_outside
            return ("outside", number, behaviour, f"sofia/external/{number}", "")
        if proto == "error":
            return self.valid_cause(rest or "NORMAL_CLEARING")
        return "CHAN_NOT_IMPLEMENTED"

    def _outbound_leg(
        self,
        name: str,
        party: str,
        variables: Mapping[str, str],
        *,
        kind: str,
        presence: str = "",
        cid_name: str = "",
        cid_number: str = "",
    ) -> Channel:
        ch = self._new_channel(
            name,
            "outbound",
            uuid=variables.get("origination_uuid"),
            caller_id_name=variables.get("origination_caller_id_name", cid_name),
            caller_id_number=variables.get(
                "origination_caller_id_number", cid_number or "0000000000"
            ),
            callee_id_name="Outbound Call",
            callee_id_number=party,
            destination_number=party,
            context="default",
            source="src/switch_ivr_originate.c",
            presence_id=presence,
            kind=kind,
            party=party,
        )
        ch.variables.update(variables)
        ch.variables["originate_endpoint"] = "sofia"
        ch.state = "CS_NONE"
        self.ev.fire("CHANNEL_OUTGOING", ch)
        self.ev.state(ch, "CS_INIT")
        self.ev.fire("CHANNEL_CREATE", ch)
        self.ev.fire("CHANNEL_ORIGINATE", ch)
        self.ev.state(ch, "CS_ROUTING")
        self.ev.state(ch, "CS_CONSUME_MEDIA")
        return ch

    def _ring(
        self, ch: Channel, behaviour: Behaviour, timeout: float, watch: Channel | None = None
    ) -> str | None:
        """Let the far end react; None when it answers, else the failure cause.

        Raises HangupSignal (for ``watch``, the dialing A leg) when ``watch`` hangs up.
        A uuid_kill of the ringing leg ends the ring with its cause (NORMAL_CLEARING).
        """
        outcome = behaviour.outcome()
        if outcome == "busy":
            cause: str | None = "USER_BUSY"
        elif outcome == "reject":
            cause = "CALL_REJECTED"
        else:
            self.ev.progress(ch)
            if watch is not None:
                self.ev.progress(watch)
            self.trace.record("ring", uuid=ch.uuid, party=ch.party, leg=ch.kind, timeout=timeout)
            answers = outcome == "answer" and behaviour.answer_after < timeout
            ring_for = behaviour.answer_after if answers else timeout
            deadline = time.monotonic() + self.clock.real_seconds(ring_for)
            cause = None if answers else "NO_ANSWER"
            while True:
                if watch is not None and (watch.pending_hangup or watch.hangup_cause):
                    self.hangup_channel(ch, "ORIGINATOR_CANCEL")
                    self._finish(ch)
                    raise HangupSignal()
                try:
                    if (
                        ch.wait(max(0.0, deadline - time.monotonic()), interruptible=False)
                        == "timeout"
                    ):
                        break
                except HangupSignal:
                    return ch.hangup_cause or "NORMAL_CLEARING"
        if cause is not None:
            self.trace.record(
                "originate_failed" if watch is None else "dial_failed",
                uuid=ch.uuid,
                party=ch.party,
                cause=cause,
            )
            self.hangup_channel(ch, cause)
        return cause

    def _answer_outbound(self, ch: Channel) -> None:
        self.ev.codec(ch)
        self.ev.answer(ch)
        self.trace.record("answer", uuid=ch.uuid, party=ch.party, leg=ch.kind)

    # -- inbound calls ------------------------------------------------------------------------

    def place_call(
        self,
        caller_number: str,
        caller_name: str = "",
        destination: str = "5000",
        context: str = "ccd",
        digits: Iterable[str | None] = (),
        patience: float | None = None,
        hangup_after: float | None = None,
    ) -> str | None:
        """A customer calls in: inbound leg through the dialplan. Returns its uuid
        (None when sessions-per-second refuses it)."""
        if not self._admit():
            self.trace.record("call_refused", party=caller_number, cause="DESTINATION_OUT_OF_ORDER")
            return None
        ch = self._new_channel(
            f"sofia/external/{caller_number}@192.0.2.10",
            "inbound",
            caller_id_name=caller_name,
            caller_id_number=caller_number,
            destination_number=destination,
            context=context,
            dialplan="XML",
            network_addr="192.0.2.10",
            kind="caller",
            party=caller_number,
        )
        ch.digits.extend(digits)
        ch.talk_limit = hangup_after
        ch.variables.update(sip_from_user=caller_number, sip_to_user=destination)
        self.trace.record(
            "call",
            uuid=ch.uuid,
            party=caller_number,
            name=caller_name,
            to=destination,
            context=context,
        )
        if patience is not None:
            self.spawn_later(patience, self._caller_gives_up, ch)
        self.spawn(self._inbound, ch)
        return ch.uuid

    def phone_call(
        self,
        ext: str,
        destination: str,
        *,
        hangup_after: float | None = None,
        digits: Iterable[str | None] = (),
    ) -> str | None:
        """A desk phone dials ``destination`` (feature code, agent, outside number)."""
        phone = self.phones[ext]
        if not self._admit():
            return None
        ch = self._new_channel(
            f"sofia/internal/{ext}@127.0.0.1",
            "inbound",
            caller_id_name=phone.caller_id_name,
            caller_id_number=phone.caller_id_number,
            destination_number=destination,
            context=phone.context,
            dialplan="XML",
            username=ext,
            network_addr="127.0.0.1",
            presence_id=f"{ext}@{self.domain}",
            kind="agent_call",
            party=ext,
        )
        ch.digits.extend(digits)
        ch.talk_limit = hangup_after if hangup_after is not None else phone.behaviour.hangup_after
        ch.variables.update(user_name=ext, domain_name=self.domain, sip_from_user=ext)
        self.trace.record(
            "call", uuid=ch.uuid, party=ext, to=destination, context=phone.context, leg="agent_call"
        )
        self.spawn(self._inbound, ch)
        return ch.uuid

    def _inbound(self, ch: Channel) -> None:
        try:
            self.ev.state(ch, "CS_NEW")
            self.ev.state(ch, "CS_INIT")
            self.ev.fire("CHANNEL_CREATE", ch)
            self.ev.callstate(ch, "RINGING")
            self.ev.state(ch, "CS_ROUTING")
            program = self._route(ch)
        except HangupSignal:
            self._finish(ch)
            return
        ch.has_runner = True
        self._run(ch, deque(program), True)

    def _caller_gives_up(self, ch: Channel) -> None:
        if ch.uuid in self.channels and not ch.is_hungup and not ch.ever_bridged:
            self.trace.record("abandon", uuid=ch.uuid, party=ch.party)
            self.hangup_channel(ch, "NORMAL_CLEARING")
