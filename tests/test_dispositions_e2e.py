"""R-DISPO end to end: codes keyed on a desk phone after a call, automatic codes, and the
do-not-call list refusing an agent's own call. Fake FreeSWITCH, real Redis, the daemon."""

from __future__ import annotations

from tests.support.daemon_fixtures import AUTH, bridged, eventually
from tests.test_routing_e2e import SALES, login

AGENTS = {"alice": {"extension": "1001", "tags": ["sales"]}}
CUSTOMER = "+3612345678"


def start(fakeswitch, start_daemon, **phone):
    fakeswitch.add_phone("1001", **(phone or {"answer_after": 1, "hangup_after": 3}))
    daemon = start_daemon(fakeswitch, agents=AGENTS, routing={"wrapup_time": 20})
    login(daemon, "alice")
    return daemon


def dispositions(daemon):
    return daemon.control.disposition


def codes(daemon, call):
    return set(dispositions(daemon).reports.codes_of(call))


def tones(fakeswitch, call):
    return [
        e["file"] for e in fakeswitch.trace.of("playback", uuid=call) if "tone_stream" in e["file"]
    ]


def finished_call(fakeswitch, daemon):
    caller = fakeswitch.place_call(CUSTOMER, "Doe", digits=[SALES])
    eventually(lambda: bridged(fakeswitch, caller), what="bridged")
    eventually(lambda: dispositions(daemon).last_call("alice"), timeout=15, what="call over")
    return caller


def test_codes_keyed_on_the_desk_phone_during_wrap_up(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon)
    caller = finished_call(fakeswitch, daemon)
    ok = fakeswitch.phone_call("1001", "*706#")  # interested
    eventually(lambda: tones(fakeswitch, ok), what="confirmation tone")
    eventually(lambda: "interested" in codes(daemon, caller), what="code recorded")
    again = fakeswitch.phone_call("1001", "*706#")  # twice: recorded once
    eventually(lambda: tones(fakeswitch, again), what="second tone")
    unknown = fakeswitch.phone_call("1001", "*799#")
    eventually(lambda: tones(fakeswitch, unknown), what="refusal tone")
    assert "330" in tones(fakeswitch, unknown)[0] and "330" not in tones(fakeswitch, ok)[0]
    assert codes(daemon, caller) == {"interested"}


def test_do_not_contact_code_refuses_the_agents_next_call_to_that_number(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon)
    finished_call(fakeswitch, daemon)
    code = fakeswitch.phone_call("1001", "*712#")  # do not contact
    eventually(lambda: tones(fakeswitch, code), what="tone")
    eventually(lambda: dispositions(daemon).dnc.is_listed(CUSTOMER), what="listed")
    fakeswitch.add_outside("0612345678", answer_after=1)
    out = fakeswitch.phone_call("1001", "0612345678")
    eventually(lambda: out not in fakeswitch.channels, timeout=15, what="refused")
    assert not fakeswitch.trace.of("ring", party="0612345678")  # never dialled
    transfers = [e["to"] for e in fakeswitch.trace.of("transfer", uuid=out)]
    assert transfers == ["ccd_outbound_refused"]


def test_no_answer_then_voicemail_are_coded_by_the_system(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon, ring_forever=True)
    caller = fakeswitch.place_call(CUSTOMER, "Doe", digits=[SALES])
    eventually(lambda: fakeswitch.trace.of("voicemail_left", uuid=caller), what="voicemail")
    eventually(lambda: codes(daemon, caller), what="automatic codes")
    assert codes(daemon, caller) == {"no_answer", "left_voicemail"}


def test_caller_giving_up_in_the_queue_is_coded_abandoned(fakeswitch, start_daemon):
    daemon = start(fakeswitch, start_daemon, ring_forever=True)
    caller = fakeswitch.place_call(CUSTOMER, "Doe", digits=[SALES], patience=10)
    eventually(lambda: caller not in fakeswitch.channels, timeout=15, what="caller gave up")
    eventually(lambda: codes(daemon, caller), what="automatic codes")
    assert codes(daemon, caller) == {"abandoned"}


def test_http_api_sets_and_shows_codes_of_a_finished_call(fakeswitch, start_daemon):
    import json
    import urllib.error
    import urllib.request

    daemon = start(fakeswitch, start_daemon)
    caller = finished_call(fakeswitch, daemon)
    base = f"http://127.0.0.1:{daemon.http.address[1]}/calls"

    def post(uuid, payload):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{base}/{uuid}/dispositions", data=data, method="POST", headers=AUTH
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status, body = post(caller, {"codes": ["08", "interested"], "by": "crm"})
    assert status == 200 and set(body["new"]) == {"demo_booked", "interested"}
    shown_request = urllib.request.Request(f"{base}/{caller}/dispositions", headers=AUTH)
    with urllib.request.urlopen(shown_request, timeout=5) as resp:
        shown = json.loads(resp.read())
    assert {c["name"] for c in shown["codes"]} == {"demo_booked", "interested"}
    assert post(caller, {"codes": ["99"]})[0] == 400  # unknown code, named
    assert post(caller, {"codes": ["x; rm"]})[0] == 400
    assert post(caller, b"not json")[0] == 400
    assert post("00000000-0000-0000-0000-000000000000", {"codes": ["06"]})[0] == 404
    assert codes(daemon, caller) == {"demo_booked", "interested"}
