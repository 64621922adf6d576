"""The pure direct-callback rules (ccd.core.sticky) as a table: one row per sentence of seed 000.

Each row is (agent anna's type, a sequence of steps, then: whom a call from the customer is
offered to, and how many seconds the binding has left). Steps, on a fake clock:

* ``fail(agent)``   the agent's outside call to the customer was not answered
* ``answer(agent)`` the agent's outside call was answered: they talked
* ``call(agent)``   the customer called in and talked to ``agent`` (None: nobody / routing)
* ``wait(s)``       s seconds pass

The store is simulated as Redis would hold it: a KEEP leaves the stored binding as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ccd.core.sticky import (
    DISABLED,
    Action,
    AgentAttempt,
    Binding,
    CustomerCall,
    Decision,
    StickySetting,
    StickyType,
    decide,
    route,
)

T0 = 1_700_000_000.0
NUMBER = "+3612345678"
EXPIRY = 100.0


@dataclass(frozen=True)
class Step:
    kind: str
    arg: object = None


def fail(agent: str = "anna") -> Step:
    return Step("fail", agent)


def answer(agent: str = "anna") -> Step:
    return Step("answer", agent)


def call(talked_to: str | None = "anna") -> Step:
    return Step("call", talked_to)


def wait(seconds: float) -> Step:
    return Step("wait", seconds)


class World:
    """A fake clock and the binding as the store holds it."""

    def __init__(self, settings: dict[str, StickySetting]) -> None:
        self.settings = settings
        self.now = T0
        self.stored: Binding | None = None
        self.decisions: list[Decision] = []

    def setting_of(self, agent: str) -> StickySetting:
        return self.settings.get(agent, DISABLED)

    def run(self, *steps: Step) -> World:
        for step in steps:
            if step.kind == "wait":
                self.now += step.arg  # type: ignore[operator]
                continue
            if step.kind == "call":
                event = CustomerCall(NUMBER, self.now, talked_to=step.arg)  # type: ignore[arg-type]
            else:
                event = AgentAttempt(NUMBER, step.arg, step.kind == "answer", self.now)  # type: ignore[arg-type]
            decision = decide(self.stored, event, self.setting_of, self.now)
            assert decision.previous == self.stored
            if decision.action is not Action.KEEP:
                self.stored = decision.binding
            self.decisions.append(decision)
        return self

    @property
    def routed_to(self) -> str | None:
        return route(self.stored, self.now)

    @property
    def left(self) -> float | None:
        if self.routed_to is None:
            return None
        assert self.stored is not None
        return self.stored.expires_at - self.now


def world(anna: StickyType | str, expiry: float = EXPIRY, **others: StickySetting) -> World:
    return World({"anna": StickySetting(StickyType(anna), expiry), **others})


# (id named for the seed's sentence, anna's type [or (type, expiry)], steps, offered to,
# seconds left). Expiry 100 s unless given.
SEED_TABLE = [
    # "Mikor jöhet jól...": for a given time after a call the called party can call the
    # colleague directly; "Ez mindig egy adott időszakra (lejárati időre) lehetséges, amit a
    # rendszerben külön beállíthatunk": always for a period, the configured expiry.
    ("expiry_binding_lasts_the_configured_time", "type1", [fail(), wait(99.5)], "anna", 0.5),
    ("expiry_binding_is_gone_at_the_expiry", "type1", [fail(), wait(100)], None, None),
    # Nem engedélyezett: "ez esetben a közvetlen visszahívás funkció nem elérhető".
    ("disabled_failed_call_binds_nothing", "disabled", [fail(), wait(1)], None, None),
    # "Ha nem szeretnénk, hogy az ügyfél közvetlenül visszahívhassa a kollégánkat, akivel
    # beszélt, ne aktiváljuk az engedélyezést."
    ("disabled_talked_call_binds_nothing", "disabled", [answer(), call(None)], None, None),
    # Típus 1: "ha a kollégád sikertelenül kereste az ügyfelet, ő a lejárati idő végéig
    # közvetlenül visszahívhatja a hívó felet."
    ("type1_failed_call_binds_until_expiry", "type1", [fail(), wait(60)], "anna", 40),
    # "Ha ezalatt az idő alatt tudnak beszélni, a funkció törlődik, bármely fél is
    # kezdeményezte végül a hívást." — the agent called and reached the customer...
    ("type1_talk_deletes_when_the_agent_calls", "type1", [fail(), wait(10), answer()], None, None),
    # ...or the customer called back and talked to the agent.
    (
        "type1_talk_deletes_when_the_customer_calls",
        "type1",
        [fail(), wait(10), call("anna")],
        None,
        None,
    ),
    # "Furán venné ki magát, ha az ügyfél egy olyan munkatársat hívna vissza, aki legfeljebb
    # a rendszerben hagyott jegyzetből tudhatná, mivel kereste őt meg eredetileg a kolléga."
    # The customer calling back reaches the colleague who tried, not someone else; a ringing
    # call not yet answered changes nothing.
    (
        "type1_callback_reaches_the_agent_who_tried",
        "type1",
        [fail(), wait(5), call(None)],
        "anna",
        95,
    ),
    # "Ha viszont a beszélgetés megtörtént, onnantól már később más is felveheti az
    # ügyféllel a kapcsolatot." After the talk the customer goes to the normal queue, also
    # when the agent tries again later and reaches them.
    (
        "type1_after_talking_anyone_may_take_the_customer",
        "type1",
        [fail(), answer(), wait(1), call(None)],
        None,
        None,
    ),
    # (R-STICKY) type1: further attempts do not restart the expiry.
    ("type1_retry_keeps_the_expiry", "type1", [fail(), wait(60), fail(), wait(30)], "anna", 10),
    (
        "type1_retry_does_not_outlive_the_expiry",
        "type1",
        [fail(), wait(60), fail(), wait(40)],
        None,
        None,
    ),
    # Típus 2: "ha a lejárati idő közben a kollégád újból próbálkozik, akkor a lejárati idő
    # számlálása mindig újraindul."
    ("type2_retry_restarts_expiry", "type2", [fail(), wait(60), fail(), wait(30)], "anna", 70),
    # "Vagyis amíg munkatársad próbálkozik, az ügyfél minden esetben őt hívja vissza."
    (
        "type2_customer_reaches_the_agent_while_the_agent_keeps_trying",
        "type2",
        [fail(), wait(90), fail(), wait(90), fail(), wait(90)],
        "anna",
        10,
    ),
    # "Ez a verzió nagyon hasonló" (to type1): talking deletes, whoever called.
    ("type2_talk_deletes_like_type1", "type2", [fail(), wait(10), call("anna")], None, None),
    ("type2_answered_retry_deletes_like_type1", "type2", [fail(), fail(), answer()], None, None),
    # Típus 3: "sikertelen, illetve sikeres hívás esetén is, az ügyfél a lejárati idő végéig
    # közvetlenül visszahívhatja a vele beszélő kollégát."
    ("type3_failed_call_binds", "type3", [fail(), wait(30)], "anna", 70),
    ("type3_answered_call_binds", "type3", [answer(), wait(30)], "anna", 70),
    ("type3_binding_ends_at_expiry", "type3", [answer(), wait(100)], None, None),
    # "Ráadásul a lejárati idő mindig újraindul, ha a munkatársad újra próbálkozik."
    ("type3_retry_restarts_expiry", "type3", [fail(), wait(60), answer(), wait(30)], "anna", 70),
    # "Ez a beállítás állandóbb kapcsolatot eredményez ... praktikus, ha mindig ugyanaz a
    # munkatársad kezeli az ügyfelet." Talking does not end it; the customer's own calls do
    # not extend it (that is type4).
    (
        "type3_talking_keeps_the_binding",
        "type3",
        [answer(), wait(10), call("anna"), wait(10)],
        "anna",
        80,
    ),
    (
        "type3_customer_calls_do_not_extend",
        "type3",
        [fail(), wait(60), call("anna"), wait(40)],
        None,
        None,
    ),
    # Típus 4: "a lejárati idő az ügyfél hívásai esetén is meghosszabbodik".
    (
        "type4_customer_call_restarts_expiry",
        "type4",
        [fail(), wait(60), call(None), wait(30)],
        "anna",
        70,
    ),
    (
        "type4_customer_talk_restarts_expiry",
        "type4",
        [answer(), wait(60), call("anna"), wait(30)],
        "anna",
        70,
    ),
    (
        "type4_retry_restarts_expiry_like_type3",
        "type4",
        [fail(), wait(60), fail(), wait(30)],
        "anna",
        70,
    ),
    # "Ha ügyfeled ragaszkodik egy kollégádhoz, ez a megoldás garantálja, hogy vele
    # kommunikálhat." A customer who keeps calling keeps the agent.
    (
        "type4_customer_who_keeps_calling_keeps_the_agent",
        "type4",
        [answer(), wait(90), call("anna"), wait(90), call(None), wait(90)],
        "anna",
        10,
    ),
    # Edge cases decided in ccd.core.sticky's docstring.
    ("edge_type1_answered_first_call_binds_nothing", "type1", [answer(), call(None)], None, None),
    ("edge_type2_answered_first_call_binds_nothing", "type2", [answer()], None, None),
    ("edge_expiry_zero_is_disabled", ("type3", 0), [fail(), answer(), wait(1)], None, None),
    (
        "edge_type1_talk_to_another_agent_keeps_binding",
        "type1",
        [fail(), wait(10), call("zoli")],
        "anna",
        90,
    ),
    (
        "edge_type4_talk_to_another_agent_restarts",
        "type4",
        [fail(), wait(10), call("zoli")],
        "anna",
        100,
    ),
    (
        "edge_after_expiry_customer_talk_deletes_nothing",
        "type1",
        [fail(), wait(100), call("anna"), fail()],
        "anna",
        100,
    ),
]


@pytest.mark.parametrize(
    ("anna", "steps", "offered_to", "left"),
    [pytest.param(t, s, o, left, id=name) for name, t, s, o, left in SEED_TABLE],
)
def test_seed_table(anna, steps, offered_to, left):
    w = world(*anna) if isinstance(anna, tuple) else world(anna)
    w.run(*steps)
    assert w.routed_to == offered_to
    assert w.left == (None if left is None else pytest.approx(left))


# --- latest agent wins ------------------------------------------------------------------------


def test_newer_agent_replaces_the_binding_and_names_the_old_agent():
    w = world("type1", bela=StickySetting(StickyType.TYPE2, 50))
    w.run(fail("anna"), wait(10), fail("bela"))
    assert w.routed_to == "bela" and w.left == 50  # the newer agent's own expiry
    last = w.decisions[-1]
    assert last.action is Action.SET
    assert [f.name for f in last.facts] == ["sticky.replaced"]
    assert last.facts[0].fields["old_agent"] == "anna"
    assert last.facts[0].fields["agent"] == "bela"


def test_type3_agent_who_talks_replaces_a_type1_binding():
    w = world("type1", bela=StickySetting(StickyType.TYPE3, 100))
    w.run(fail("anna"), wait(10), answer("bela"))
    assert w.routed_to == "bela"


@pytest.mark.parametrize(
    "bela",
    [DISABLED, StickySetting(StickyType.TYPE1, 100), StickySetting(StickyType.TYPE2, 100)],
    ids=["disabled", "type1_talked", "type2_talked"],
)
def test_an_agent_who_binds_nothing_leaves_the_other_binding(bela):
    """A call that creates no binding cannot replace one (nothing newer to win)."""
    w = world("type3", bela=bela)
    w.run(fail("anna"), wait(10), answer("bela") if bela.enabled else fail("bela"))
    assert w.routed_to == "anna" and w.left == 90


def test_the_replaced_agent_talking_does_not_delete_the_new_binding():
    w = world("type1", bela=StickySetting(StickyType.TYPE1, 100))
    w.run(fail("anna"), fail("bela"), answer("anna"))
    assert w.routed_to == "bela"


# --- facts ---------------------------------------------------------------------------------


def _facts(w: World) -> list[list[str]]:
    return [[f.name for f in d.facts] for d in w.decisions]


def test_facts_name_each_change():
    w = world("type1").run(fail(), fail(), call("anna"))
    assert _facts(w) == [["sticky.bound"], ["sticky.kept"], ["sticky.deleted"]]
    assert [d.action for d in w.decisions] == [
        Action.SET,
        Action.KEEP_TTL_UPDATE,
        Action.DELETE,
    ]
    assert w.decisions[1].binding.attempts == 2
    assert w.decisions[2].facts[0].fields["reason"] == "talked"
    w = world("type4").run(fail(), fail(), call(None), call(None))
    assert _facts(w)[1:] == [["sticky.refreshed"]] * 3
    assert [d.facts[0].fields["reason"] for d in w.decisions[1:]] == [
        "attempt",
        "customer_call",
        "customer_call",
    ]


def test_keep_changes_nothing_and_says_nothing():
    w = world("type3").run(fail(), call("anna"))
    assert w.decisions[-1].action is Action.KEEP
    assert w.decisions[-1].facts == ()
    assert w.decisions[-1].binding == w.decisions[0].binding


def test_set_and_refresh_carry_the_ttl_and_keep_ttl_update_does_not():
    w = world("type2", expiry=30).run(fail(), wait(5), fail())
    assert [d.ttl for d in w.decisions] == [30, 30]
    assert w.decisions[1].binding.created_at == T0  # the same binding, refreshed
    w = world("type1", expiry=30).run(fail(), wait(5), fail())
    assert w.decisions[1].ttl is None
    assert w.decisions[1].binding.expires_at == T0 + 30


# --- whose setting applies -------------------------------------------------------------------


def test_the_bound_agents_current_setting_applies_to_the_customers_call():
    """An operator switches anna from type3 to type1 at run time: her binding now ends when
    she and the customer talk."""
    w = world("type3")
    w.run(fail(), wait(10))
    w.settings["anna"] = StickySetting(StickyType.TYPE1, EXPIRY)
    w.run(call("anna"))
    assert w.routed_to is None


def test_a_binding_of_an_agent_now_disabled_is_left_to_lapse():
    w = world("type4")
    w.run(fail(), wait(10))
    w.settings["anna"] = DISABLED
    w.run(call("anna"), wait(10))
    assert w.routed_to == "anna" and w.left == 80


def test_a_stored_but_expired_binding_is_the_previous_of_a_new_one():
    """Redis may still hold it for a moment; the store compares against what it holds."""
    w = world("type1").run(fail(), wait(100), fail())
    assert w.decisions[-1].previous is not None and w.decisions[-1].previous.created_at == T0
    assert [f.name for f in w.decisions[-1].facts] == ["sticky.bound"]
    assert w.left == 100


# --- misuse -------------------------------------------------------------------------------------


def test_route_without_a_binding_is_none():
    assert route(None, T0) is None


def test_a_binding_of_another_number_is_refused():
    other = Binding("+3619999999", "anna", StickyType.TYPE1, T0 + 10, T0)
    with pytest.raises(ValueError, match="binding of"):
        decide(other, CustomerCall(NUMBER, T0), lambda a: DISABLED, T0)


@pytest.mark.parametrize("expiry", [-1, float("nan"), float("inf"), True, "10"])
def test_bad_expiry_is_refused(expiry):
    with pytest.raises(ValueError, match="expiry"):
        StickySetting(StickyType.TYPE1, expiry)


def test_unknown_type_is_refused():
    with pytest.raises(ValueError):
        StickySetting("type5", 10)  # type: ignore[arg-type]
