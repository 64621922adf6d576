"""freeswitch_conf/ (what a real FreeSWITCH loads) and the fake's loader of it."""

from __future__ import annotations

import re
import shutil
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ccd.config import Config
from ccd.fakeswitch.dialplan import (
    Action,
    ConfError,
    NoRoute,
    expand_vars,
    load_conf,
    transfer_target,
)

CONF_DIR = Path(__file__).resolve().parents[1] / "freeswitch_conf"
QUEUES = {
    "sales": ("sales", "sales"),
    "support_internet": ("support", "support,internet"),
    "support_tv": ("support", "support,tv"),
    "payments": ("payments", "billing"),
    "general": ("general", "general"),
}
AGENT = {"caller_id_number": "1001", "domain_name": "example.test"}


@pytest.fixture(scope="module")
def conf():
    return load_conf(CONF_DIR)


def _set_vars(actions: list[Action]) -> dict[str, str]:
    return dict(a.data.split("=", 1) for a in actions if a.app == "set")


# --- the shipped conf ---------------------------------------------------------------


def test_every_xml_file_is_well_formed_before_and_after_preprocessing(conf):
    files = sorted(CONF_DIR.rglob("*.xml"))
    assert len(files) >= 12
    for path in files:
        ET.parse(path)  # raw: what an editor or xmllint sees
    assert {p.resolve() for p in conf.files} == {p.resolve() for p in files}


def test_main_number_parks_for_the_direct_callback_look_up_then_falls_through_to_menu(conf):
    actions = [a for a in conf.dialplan.route("ccd", "5000", {}) if not a.inline]
    apps = ["answer", "set", "set", "set", "set", "sched_transfer", "park"]
    assert [a.app for a in actions] == apps
    variables = dict(a.data.split("=", 1) for a in actions if a.app == "set")
    assert variables == {
        "ccd_direct_check": "true",
        "ccd_direct_queue": "general",
        "ccd_direct_tags": "general",
        # the wait below, for a daemon hearing of the caller late (ccd.core.events)
        "ccd_direct_check_s": conf.vars["ccd_direct_check_s"],
    }
    # No daemon answering: the dialplan itself moves the caller on to the menu.
    delay, target = actions[5].data.split(" ", 1)
    assert delay == "+" + conf.vars["ccd_direct_check_s"]
    assert transfer_target(target, "ccd") == ("ccd_ivr", "ccd")


def test_menu_extension_runs_the_main_menu_then_general_queue(conf):
    actions = [a for a in conf.dialplan.route("ccd", "ccd_ivr", {}) if not a.inline]
    assert [a.app for a in actions] == ["set", "sleep", "ivr", "transfer"]
    assert actions[2].data == "ccd_main"
    assert transfer_target(actions[3].data, "ccd") == ("ccd_queue_general", "ccd")


def test_main_menu_has_departments_and_support_submenu(conf):
    main, support = conf.menus["ccd_main"], conf.menus["ccd_support"]
    assert main.entry_for("1").param == "transfer ccd_queue_sales XML ccd"
    assert main.entry_for("2").action == "menu-sub" and main.entry_for("2").param == "ccd_support"
    assert main.entry_for("3").param == "transfer ccd_queue_payments XML ccd"
    assert main.entry_for("4").param == "transfer ccd_queue_general XML ccd"
    assert main.entry_for("9") is None
    assert support.entry_for("1").param == "transfer ccd_queue_support_internet XML ccd"
    assert support.entry_for("2").param == "transfer ccd_queue_support_tv XML ccd"
    assert support.entry_for("*").action == "menu-top"
    for menu in (main, support):
        assert menu.max_failures >= 1 and menu.max_timeouts >= 1 and menu.timeout_ms > 0
        assert menu.invalid_sound and menu.exit_sound and menu.greet_long


@pytest.mark.parametrize("name", sorted(QUEUES))
def test_queue_extension_sets_contract_vars_arms_voicemail_safety_and_parks(conf, name):
    actions = [a for a in conf.dialplan.route("ccd", f"ccd_queue_{name}", {}) if not a.inline]
    queue, tags = QUEUES[name]
    assert _set_vars(actions)["ccd_queue"] == queue
    assert _set_vars(actions)["ccd_tags"] == tags
    assert actions[-1].app == "park"
    sched = [a for a in actions if a.app == "sched_transfer"]
    assert len(sched) == 1
    delay, target = sched[0].data.split(" ", 1)
    assert delay == "+" + conf.vars["ccd_park_timeout_s"]
    assert transfer_target(target, "ccd") == (f"ccd_voicemail_{queue}", "ccd")
    assert queue in conf.voicemail_boxes  # mod_voicemail records only for a known user


def test_park_safety_delay_comes_from_the_vars_file():
    conf = load_conf(CONF_DIR, {"ccd_park_timeout_s": "42"})
    sched = [
        a for a in conf.dialplan.route("ccd", "ccd_queue_sales", {}) if a.app == "sched_transfer"
    ]
    assert sched[0].data.startswith("+42 ")


def test_voicemail_extension_records_in_the_named_box(conf):
    actions = [a for a in conf.dialplan.route("ccd", "ccd_voicemail_support", {}) if not a.inline]
    assert [a.app for a in actions] == ["sched_cancel", "answer", "voicemail", "hangup"]
    assert actions[2].data == "default ${domain_name} support"


def test_gateway_call_gets_a_domain_name_inline_but_a_phone_keeps_its_own(conf):
    from_gateway = conf.dialplan.route("ccd", "5000", {})
    assert from_gateway[0] == Action("set", "domain_name=" + conf.vars["ccd_domain"], True)
    from_phone = conf.dialplan.route("ccd", "5000", {"domain_name": "pbx.test"})
    assert not any(a.inline for a in from_phone)


@pytest.mark.parametrize(
    ("code", "action"),
    [
        ("*21", "login"),
        ("*22", "logout"),
        ("*23", "break"),
        ("*24", "ready"),
        ("*25", "next_callback"),
    ],
)
def test_feature_codes_park_with_ccd_action_and_a_timeout(conf, code, action):
    actions = conf.dialplan.route("ccd_agents", code, AGENT)
    variables = _set_vars(actions)
    assert variables["ccd_action"] == action
    assert variables["ccd_agent_ext"] == "${user_name}"
    assert variables["park_timeout"].split(":")[0] == conf.vars["ccd_feature_park_timeout_s"]
    assert actions[0].app == "answer" and actions[-1].app == "park"


def test_agent_to_agent_bridges_to_the_user(conf):
    actions = conf.dialplan.route("ccd_agents", "1004", AGENT)
    assert actions[-1] == Action("bridge", "user/1004@${domain_name}")


@pytest.mark.parametrize("number", ["+4930123456", "0612345678", "123456"])
def test_outside_number_parks_for_the_dnc_check_with_a_safety(conf, number):
    actions = conf.dialplan.route("ccd_agents", number, AGENT)
    variables = _set_vars(actions)
    assert variables == {
        "ccd_agent_ext": "${user_name}",
        "ccd_dialed": number,
        "ccd_action": "outbound_check",
        "ccd_direct_check_s": conf.vars["ccd_direct_check_s"],  # the wait below
    }
    assert [a.app for a in actions][-4:] == ["ring_ready", "set", "sched_transfer", "park"]
    # No daemon: the call goes on unchecked after the main number's short wait (fail open).
    sched = next(a for a in actions if a.app == "sched_transfer")
    assert sched.data == f"+{conf.vars['ccd_direct_check_s']} ccd_outbound_go XML ccd_agents"
    assert not any(a.app == "bridge" for a in actions)  # nothing goes out before the check


@pytest.mark.parametrize("number", ["+4930123456", "0612345678", "123456"])
def test_checked_outside_number_is_marked_and_goes_out_the_gateway(conf, number):
    actions = conf.dialplan.route("ccd_agents", "ccd_outbound_go", {**AGENT, "ccd_dialed": number})
    assert actions[0] == Action("sched_cancel", "")  # the safety must not transfer it again
    assert Action("unset", "ccd_action") in actions
    variables = _set_vars(actions)
    assert variables["ccd_outbound"] == "true"
    assert variables["ccd_gateway"] == conf.vars["ccd_gateway"]
    assert variables["effective_caller_id_number"] == conf.vars["ccd_outbound_caller_id_number"]
    assert variables["hangup_after_bridge"] == "true"
    assert actions[-1] == Action("bridge", f"sofia/gateway/${{ccd_gateway}}/{number}")


@pytest.mark.parametrize("dialed", [None, "", "12345", "0612345678;x", "06123$456789"])
def test_outbound_go_without_a_checked_number_bridges_nothing(conf, dialed):
    variables = dict(AGENT) if dialed is None else {**AGENT, "ccd_dialed": dialed}
    actions = conf.dialplan.route("ccd_agents", "ccd_outbound_go", variables)
    assert [a.app for a in actions] == ["answer", "playback", "hangup"]  # ccd_agents_invalid


def test_refused_outside_number_hears_why_and_is_not_marked(conf):
    actions = conf.dialplan.route("ccd_agents", "ccd_outbound_refused", AGENT)
    assert [a.app for a in actions] == [
        "sched_cancel", "unset", "answer", "playback", "hangup"
    ]  # fmt: skip
    assert "ccd_outbound" not in _set_vars(actions)
    assert actions[-1] == Action("hangup", "CALL_REJECTED")


@pytest.mark.parametrize("number", ["99", "*99", "12345", "abc"])
def test_anything_else_from_a_desk_phone_hears_a_message(conf, number):
    actions = conf.dialplan.route("ccd_agents", number, AGENT)
    assert [a.app for a in actions] == ["answer", "playback", "hangup"]
    assert actions[1].data.startswith("ivr/")


def test_directory_phones_run_in_ccd_agents(conf):
    assert sorted(conf.directory) == [f"100{i}" for i in range(1, 7)]
    for ext, variables in conf.directory.items():
        assert variables["user_context"] == "ccd_agents"
        assert variables["effective_caller_id_number"] == ext
        assert conf.directory_params[ext]["password"] == conf.vars["ccd_phone_password"]


def test_event_socket_and_switch_settings(conf):
    assert conf.event_socket["listen-ip"] == "127.0.0.1"
    assert conf.event_socket["listen-port"] == "8021"
    assert conf.event_socket["password"] == conf.vars["ccd_esl_password"]
    # Only the one core setting ccd needs, in the file FreeSWITCH reads after switch.conf.xml:
    # an operator's switch.conf.xml is never replaced (scripts/install_freeswitch_conf.py).
    assert "switch.conf" not in conf.settings
    assert conf.settings["post_load_switch.conf"] == {"sessions-per-second": "200"}
    secret = load_conf(CONF_DIR, {"ccd_esl_password": "s3cret"})
    assert secret.event_socket["password"] == "s3cret"


def test_every_transfer_and_menu_reference_resolves(conf):
    targets = []
    for menu in conf.menus.values():
        for entry in menu.entries:
            if entry.action == "menu-sub":
                assert entry.param in conf.menus
            if entry.param.startswith("transfer "):
                targets.append(transfer_target(entry.param.split(" ", 1)[1], "ccd"))
    for context in conf.dialplan.contexts:
        for ext in conf.dialplan.extensions(context):
            for cond in ext.conditions:
                for item in cond.actions:
                    if item.app == "ivr":
                        assert item.data in conf.menus
                    if item.app == "transfer":
                        targets.append(transfer_target(item.data, context))
    assert len(targets) >= 6
    for target in targets:
        assert target is not None
        assert conf.dialplan.route(target[1], target[0], {})


# --- a broken copy is refused, naming the file --------------------------------------


@pytest.fixture
def conf_copy(tmp_path):
    target = tmp_path / "conf"
    shutil.copytree(CONF_DIR, target)
    return target


def test_dangling_menu_sub_is_refused_naming_the_file(conf_copy):
    path = conf_copy / "ivr_menus" / "ccd_main.xml"
    path.write_text(path.read_text().replace('param="ccd_support"', 'param="ccd_nowhere"'))
    with pytest.raises(ConfError, match=r"ccd_main\.xml.*ccd_nowhere"):
        load_conf(conf_copy)


def test_dangling_ivr_and_transfer_are_refused_naming_the_file(conf_copy):
    path = conf_copy / "dialplan" / "ccd.xml"
    text = path.read_text().replace('data="ccd_main"', 'data="ccd_gone"')
    path.write_text(text.replace("ccd_queue_general XML ccd", "ccd_queue_nope XML ccd"))
    with pytest.raises(ConfError) as info:
        load_conf(conf_copy)
    assert "ccd.xml" in str(info.value) and "ccd_gone" in str(info.value)
    assert "ccd_queue_nope" in str(info.value)


def test_malformed_xml_is_refused_naming_the_file(conf_copy):
    path = conf_copy / "dialplan" / "ccd_agents.xml"
    path.write_text(path.read_text().replace("</context>", "</contxt>"))
    with pytest.raises(ConfError, match=r"ccd_agents\.xml: malformed XML"):
        load_conf(conf_copy)


def test_undefined_preprocess_variable_is_refused_naming_file_and_line(conf_copy):
    path = conf_copy / "autoload_configs" / "event_socket.conf.xml"
    path.write_text(path.read_text().replace("ccd_esl_password", "ccd_esl_pasword"))
    message = r"event_socket\.conf\.xml:\d+: undefined .*ccd_esl_pasword"
    with pytest.raises(ConfError, match=message):
        load_conf(conf_copy)


# --- pre-processor on small trees ---------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _ctx(body: str, name: str = "t") -> str:
    return f'<include><context name="{name}">{body}</context></include>'


def test_include_is_relative_to_the_including_file_and_set_applies_in_order(tmp_path):
    root = _write(
        tmp_path,
        {
            "ccd_vars.xml": """\
            <include>
              <X-PRE-PROCESS cmd="set" data="a=one"/>
              <X-PRE-PROCESS cmd="set" data="b=$${a}-two"/>
            </include>""",
            "dialplan/t.xml": """\
            <include>
              <context name="t">
                <X-PRE-PROCESS cmd="include" data="t/*.xml"/>
              </context>
            </include>""",
            "dialplan/t/10_x.xml": """\
            <include><extension name="x"><condition field="destination_number" expression="^x$">
              <action application="log" data="$${b}"/>
            </condition></extension></include>""",
        },
    )
    conf = load_conf(root)
    assert conf.vars["b"] == "one-two"
    assert conf.dialplan.route("t", "x", {}) == [Action("log", "one-two")]
    assert load_conf(root, {"a": "uno"}).vars["b"] == "uno-two"


def test_preprocess_directive_inside_a_comment_is_refused(tmp_path):
    root = _write(
        tmp_path,
        {
            "ccd_vars.xml": """\
        <include>
          <!--
          <X-PRE-PROCESS cmd="set" data="a=1"/>
          -->
        </include>"""
        },
    )
    with pytest.raises(ConfError, match=r"ccd_vars\.xml:3: X-PRE-PROCESS inside a comment"):
        load_conf(root)


def test_include_of_a_missing_file_is_refused(tmp_path):
    root = _write(
        tmp_path,
        {
            "dialplan/t.xml": """\
        <include>
          <X-PRE-PROCESS cmd="include" data="nothere.xml"/>
        </include>"""
        },
    )
    with pytest.raises(ConfError, match=r"t\.xml:2: include of missing file"):
        load_conf(root)


# --- dialplan semantics on small inline XML ------------------------------------------


def _route(tmp_path: Path, body: str, number: str, variables=None) -> list[Action]:
    conf = load_conf(_write(tmp_path, {"dialplan/t.xml": _ctx(body)}))
    return conf.dialplan.route("t", number, variables or {})


def _cond(expr: str, *apps: str, field: str = "destination_number", extra: str = "") -> str:
    actions = "".join(f'<action application="{a}" data="{a}"/>' for a in apps)
    return f'<condition field="{field}" expression="{expr}" {extra}>{actions}</condition>'


def test_first_matching_extension_wins_and_captures_substitute(tmp_path):
    body = (
        '<extension name="a"><condition field="destination_number" expression="^(\\d)(\\d)$">'
        '<action application="log" data="$2-$1-$3-${keep}"/></condition></extension>'
        '<extension name="b">' + _cond("^.*$", "second") + "</extension>"
    )
    assert _route(tmp_path, body, "42") == [Action("log", "2-4--${keep}")]


def test_no_capture_groups_leave_dollar_digits_alone(tmp_path):
    body = (
        '<extension name="a"><condition field="destination_number" expression="^7$">'
        '<action application="log" data="costs $5"/></condition></extension>'
    )
    assert _route(tmp_path, body, "7") == [Action("log", "costs $5")]


def test_no_route_when_nothing_matches(tmp_path):
    with pytest.raises(NoRoute) as info:
        _route(tmp_path, '<extension name="a">' + _cond("^1$", "x") + "</extension>", "2")
    assert (info.value.context, info.value.number) == ("t", "2")
    conf = load_conf(tmp_path)
    with pytest.raises(NoRoute):
        conf.dialplan.route("no_such_context", "1", {})


def test_anti_action_runs_when_condition_is_false(tmp_path):
    body = (
        '<extension name="a"><condition field="caller_id_number" expression="^100$">'
        '<action application="yes"/><anti-action application="no"/></condition></extension>'
    )
    assert [a.app for a in _route(tmp_path, body, "1", {"caller_id_number": "100"})] == ["yes"]
    assert [a.app for a in _route(tmp_path, body, "1", {"caller_id_number": "7"})] == ["no"]


def test_break_on_false_stops_extension_and_hunt_moves_on(tmp_path):
    body = (
        '<extension name="a">' + _cond("^1$", "a1") + _cond("^2$", "a2") + "</extension>"
        '<extension name="b">' + _cond("^1$", "b1") + "</extension>"
    )
    # a's first condition already collected a1 (FreeSWITCH keeps it); a fails; b matches.
    assert [a.app for a in _route(tmp_path, body, "1")] == ["a1", "b1"]


def test_break_never_evaluates_the_next_condition(tmp_path):
    body = (
        '<extension name="a">'
        + _cond("^9$", "first", extra='break="never"')
        + _cond("^1$", "second")
        + "</extension>"
    )
    assert [a.app for a in _route(tmp_path, body, "1")] == ["second"]


def test_break_on_true_stops_after_a_true_condition(tmp_path):
    body = (
        '<extension name="a">'
        + _cond("^1$", "first", extra='break="on-true"')
        + _cond("^1$", "second")
        + "</extension>"
    )
    assert [a.app for a in _route(tmp_path, body, "1")] == ["first"]


def test_break_always_stops_even_after_false(tmp_path):
    body = (
        '<extension name="a">'
        + _cond("^9$", "first", extra='break="always"')
        + _cond("^1$", "second")
        + "</extension>"
        '<extension name="b">' + _cond("^1$", "b") + "</extension>"
    )
    assert [a.app for a in _route(tmp_path, body, "1")] == ["b"]


def test_continue_true_keeps_hunting_after_a_match(tmp_path):
    body = (
        '<extension name="a" continue="true">' + _cond("^1$", "a") + "</extension>"
        '<extension name="b">' + _cond("^1$", "b") + "</extension>"
        '<extension name="c">' + _cond("^1$", "c") + "</extension>"
    )
    assert [a.app for a in _route(tmp_path, body, "1")] == ["a", "b"]


def test_condition_without_field_is_always_true(tmp_path):
    body = '<extension name="a"><condition><action application="always"/></condition></extension>'
    assert [a.app for a in _route(tmp_path, body, "anything")] == ["always"]


def test_variable_condition_and_expression_expansion(tmp_path):
    body = '<extension name="a">' + _cond("^${want}$", "ok", field="${vip}") + "</extension>"
    assert [a.app for a in _route(tmp_path, body, "1", {"vip": "gold", "want": "gold"})] == ["ok"]
    with pytest.raises(NoRoute):
        _route(tmp_path, body, "1", {"vip": "tin", "want": "gold"})


def test_inline_set_is_seen_by_later_conditions(tmp_path):
    body = (
        '<extension name="a" continue="true"><condition>'
        '<action application="set" data="tier=${level}x" inline="true"/></condition></extension>'
        '<extension name="b">' + _cond("^2x$", "matched", field="${tier}") + "</extension>"
    )
    actions = _route(tmp_path, body, "1", {"level": "2"})
    assert actions == [Action("set", "tier=2x", True), Action("matched", "matched")]


def test_unsupported_dialplan_features_are_refused(tmp_path):
    body = (
        '<extension name="a"><condition wday="1-5"><action application="park" '
        'inline="true"/></condition></extension>'
    )
    with pytest.raises(ConfError) as info:
        _route(tmp_path, body, "1")
    assert "'wday'" in str(info.value) and "inline" in str(info.value)


def test_expand_vars_nested_unknown_and_unterminated():
    values = {"b": "x", "a_x": "deep", "n": "5"}
    assert expand_vars("${a_${b}}/${n}/${missing}/$5/$${raw", values.get) == "deep/5//$5/$${raw"
    assert expand_vars("tail ${open", values.get) == "tail ${open"


def test_example_trunk_gateway_is_the_one_the_dialplan_and_callbacks_name(conf):
    # Agents' outside calls bridge sofia/gateway/${ccd_gateway}/...; the daemon's callbacks
    # dial callback.gateway (default ccd_trunk): the example gateway carries that name.
    assert conf.vars["ccd_gateway"] == Config.from_dict({}, env={}).callback.gateway
    gateway = conf.gateways[conf.vars["ccd_gateway"]]
    assert gateway["proxy"] == conf.vars["ccd_trunk_proxy"]
    assert gateway["register"] == "false"
    site = load_conf(CONF_DIR, {"ccd_trunk_proxy": "10.0.0.5:5060"})
    assert site.gateways["ccd_trunk"]["proxy"] == "10.0.0.5:5060"


# --- sounds: freeswitch_conf/SOUNDS.md lists every file the conf plays ----------------------
SOUNDS_MD = CONF_DIR / "SOUNDS.md"
_WAV = re.compile(r"`([a-z]+/[A-Za-z0-9_.-]+\.wav)`")


def _played_files(conf) -> set[str]:
    """Every sound file the dialplan and the menus play (prompt variables expanded)."""
    files: set[str] = set()

    def add(argument: str) -> None:
        for part in argument.removeprefix("file_string://").split("!"):
            if part.endswith(".wav"):
                files.add(part)

    for context in conf.dialplan.contexts:
        for ext in conf.dialplan.extensions(context):
            for cond in ext.conditions:
                for item in cond.actions + cond.anti_actions:
                    if item.app == "playback":
                        add(item.data)
                    elif item.app == "play_and_get_digits":
                        args = item.data.split()
                        add(args[5])  # prompt
                        add(args[6])  # invalid prompt
                    elif item.app == "say":  # mod_say_en: one digits/N.wav per digit
                        files |= {f"digits/{d}.wav" for d in range(10)}
    for menu in conf.menus.values():
        for sound in (menu.greet_long, menu.greet_short, menu.invalid_sound, menu.exit_sound):
            add(sound)
    return files


def test_sounds_md_lists_exactly_the_files_the_conf_plays(conf):
    files_section = SOUNDS_MD.read_text(encoding="utf-8").split("## Files", 1)[1]
    files_section = files_section.split("\n## ", 1)[0]
    listed = set(_WAV.findall(files_section))
    played = _played_files(conf)
    assert played, "no sound found: the extraction is broken"
    assert sorted(played - listed) == [], "played but not listed in freeswitch_conf/SOUNDS.md"
    assert sorted(listed - played) == [], "listed in SOUNDS.md but played nowhere"


def test_sounds_md_names_every_prompt_variable(conf):
    text = SOUNDS_MD.read_text(encoding="utf-8")
    prompts = {name for name in conf.vars if name.startswith("ccd_cb_") and "prompt" in name}
    named = set(re.findall(r"`(ccd_cb_\w+_prompt)`", text))
    assert sorted(prompts - named) == [], "prompt variables SOUNDS.md does not explain"
    assert sorted(named - prompts) == [], "SOUNDS.md names variables ccd_vars.xml lacks"
