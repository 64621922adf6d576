"""Bridging in the fake FreeSWITCH: ``uuid_bridge`` and the ``bridge`` application, legs
staying bridged until one leaves, and what each side does after."""

from __future__ import annotations

import structlog

from ccd.fakeswitch.channels import Channel, HangupSignal, Interrupt, new_uuid
from ccd.fakeswitch.dialstring import (
    number_or,
    parse_dial_string,
)

log = structlog.get_logger()

_DIALSTATUS = {
    "NO_ANSWER": "NOANSWER",
    "USER_BUSY": "BUSY",
    "CALL_REJECTED": "CANCEL",
    "SUCCESS": "SUCCESS",
}


class Bridging:
    """Part of :class:`ccd.fakeswitch.switch.FakeSwitch` (a mixin over its channels, events
    and clock): bridges."""

    # -- bridging -----------------------------------------------------------------------

    def _link(self, a: Channel, b: Channel) -> None:
        a.bridged_to, b.bridged_to = b, a
        a.other, b.other = b, a
        a.other_type, b.other_type = "originatee", "originator"
        now = self.now_us()
        for ch, other in ((a, b), (b, a)):
            ch.times["bridged"] = now
            ch.variables["bridge_uuid"] = other.uuid
            ch.variables["signal_bond"] = other.uuid
            ch.variables["last_bridge_to"] = other.uuid
            ch.ever_bridged = True
        self.trace.record(
            "bridge", a=a.uuid, b=b.uuid, a_party=a.party or None, b_party=b.party or None
        )
        for ch in (a, b):
            if ch.talk_limit is not None:
                self.talk_timer(ch, ch.talk_limit)

    def schedule(self, ch: Channel, seconds: float, what: str, arg: str) -> None:
        """sched_transfer / sched_hangup: act on ``ch`` later unless unscheduled."""

        def fire() -> None:
            self._scheduled.get(ch.uuid, set()).discard(g)
            if ch.uuid not in self.channels or ch.is_hungup:
                return
            self.trace.record("scheduled_" + what, uuid=ch.uuid, arg=arg)
            if what == "hangup":
                self.hangup_channel(ch, self.valid_cause(arg))
            else:
                parts = arg.split()
                if parts:
                    context = parts[2] if len(parts) > 2 else ch.context
                    ch.request_interrupt(Interrupt("transfer", (parts[0], context)))

        g = self.spawn_later(seconds, fire)
        self._scheduled.setdefault(ch.uuid, set()).add(g)

    def unschedule(self, uuid: str) -> int:
        tasks = self._scheduled.pop(uuid, set())
        for g in tasks:
            g.kill(block=False)
        return len(tasks)

    def api_sched_del(self, args: str) -> str:
        count = self.unschedule(args.strip())
        return "+OK\n" if count else "-ERR no such id\n"

    def talk_timer(self, ch: Channel, seconds: float) -> None:
        """The party behind ``ch`` hangs up after ``seconds``; a leg that ends first
        takes its timers with it (``_finish``)."""
        ch.timers.append(self.spawn_later(seconds, self._party_hangs_up, ch, "talk_done"))

    def _party_hangs_up(self, ch: Channel, why: str) -> None:
        if ch.uuid in self.channels and not ch.is_hungup:
            self.trace.record("party_hangup", uuid=ch.uuid, party=ch.party or None, why=why)
            self.hangup_channel(ch, "NORMAL_CLEARING")

    def _bridge_event(self, name: str, a: Channel, b: Channel) -> None:
        self.ev.fire(name, a, pre=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)])

    def _bridged_wait(self, ch: Channel, partner: Channel, a_side: bool) -> None:
        """Stay bridged until someone leaves; raise HangupSignal/Interrupt when we do."""
        left_first = True
        try:
            while True:
                ch.wait(None)
        except Interrupt as interrupt:
            if interrupt.kind != "unbridge":
                raise
            left_first = False
        finally:
            if a_side:
                self._bridge_event("CHANNEL_UNBRIDGE", ch, partner)
            if ch.bridged_to is partner:
                ch.bridged_to = None
                if partner.bridged_to is ch:
                    partner.bridged_to = None
                self.trace.record(
                    "unbridge",
                    a=ch.uuid if a_side else partner.uuid,
                    b=partner.uuid if a_side else ch.uuid,
                )
                if left_first:
                    stays = partner.variables.get("park_after_bridge") == "true"
                    if a_side and not stays:
                        self.hangup_channel(partner, "NORMAL_CLEARING")
                    else:
                        partner.request_interrupt(Interrupt("unbridge", ch))

    def _uuid_bridge_leg(self, ch: Channel, partner: Channel, a_side: bool) -> None:
        for state in ("CS_HIBERNATE", "CS_RESET", "CS_SOFT_EXECUTE"):
            self.ev.state(ch, state)
        self.ev.execute(ch, "uuid_bridge", partner.uuid, new_uuid())
        if a_side:
            self._link(ch, partner)
            self._bridge_event("CHANNEL_BRIDGE", ch, partner)
        else:
            self.ev.state(ch, "CS_EXCHANGE_MEDIA")
        self._bridged_wait(ch, partner, a_side)

    def bridge_app(self, ch: Channel, data: str) -> None:
        """The dialplan ``bridge`` application: dial one endpoint and bridge to it."""
        variables, endpoint = parse_dial_string(data)
        variables = {**ch.exported, **variables}
        timeout = number_or(ch.variables.get("call_timeout") or variables.get("leg_timeout"), 60)
        target = self._resolve(endpoint)
        if isinstance(target, str):
            self._bridge_failed(ch, target)
            return
        kind, party, behaviour, name, presence = target
        if not self._admit():
            self._bridge_failed(ch, "DESTINATION_OUT_OF_ORDER")
            return
        b = self._outbound_leg(
            name,
            party,
            variables,
            kind=kind,
            presence=presence,
            cid_name=ch.caller_id_name,
            cid_number=ch.caller_id_number,
        )
        b.other, b.other_type = ch, "originator"
        ch.variables["originated_legs"] = f"{b.uuid};Outbound Call;{party}"
        b.variables["originating_leg_uuid"] = ch.uuid
        ch.dialing = b
        try:
            cause = self._ring(b, behaviour, timeout, watch=ch)
        finally:
            ch.dialing = None
        if cause is not None:
            self._finish(b)
            self._bridge_failed(ch, cause)
            return
        self._answer_outbound(b)
        b.talk_limit = behaviour.hangup_after
        b.digits.extend(behaviour.digits)
        if not ch.answered:
            self.ev.codec(ch)
            self.ev.progress_media(ch)
            self.ev.answer(ch)
        ch.variables["originate_disposition"] = "SUCCESS"
        ch.variables["DIALSTATUS"] = "SUCCESS"
        self._link(ch, b)
        self._bridge_event("CHANNEL_BRIDGE", ch, b)
        self.ev.fire("CALL_UPDATE", ch, pre=[("Direction", "SEND")])
        b.has_runner = True
        self.spawn(self._run_b_leg, b, ch)
        try:
            self._bridged_wait(ch, b, True)
        finally:
            cause = b.hangup_cause or "NORMAL_CLEARING"
            ch.variables["last_bridge_hangup_cause"] = cause
            ch.variables["bridge_hangup_cause"] = cause
        if ch.variables.get("hangup_after_bridge") == "true":
            self.hangup_channel(ch, "NORMAL_CLEARING")
            raise HangupSignal()

    def _run_b_leg(self, b: Channel, a: Channel) -> None:
        try:
            self.ev.state(b, "CS_EXCHANGE_MEDIA")
            self.ev.fire("CALL_UPDATE", b, pre=[("Direction", "RECV")])
            self._bridged_wait(b, a, False)
            if b.variables.get("park_after_bridge") == "true":
                self.ev.state(b, "CS_PARK")
                self.apps.park_loop(b)
            self.hangup_channel(b, "NORMAL_CLEARING")
        except (HangupSignal, Interrupt):
            pass
        except Exception:
            log.exception("fakeswitch.channel.crashed", uuid=b.uuid)
        finally:
            self._finish(b)

    def _bridge_failed(self, ch: Channel, cause: str) -> None:
        self.trace.record("bridge_failed", uuid=ch.uuid, party=ch.party or None, cause=cause)
        v = ch.variables
        v["originate_disposition"] = cause
        v["DIALSTATUS"] = _DIALSTATUS.get(cause, cause)
        v["originate_failed_cause"] = cause
        v["last_bridge_hangup_cause"] = cause
