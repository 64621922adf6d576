"""Configuration: defaults, file, environment, and errors that name the key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from ccd.config import Config, ConfigError, defaults_table, load_config, redact_url

EXAMPLE = Path(__file__).resolve().parent.parent / "ccd" / "example.toml"


def problems_of(data: dict, env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(data, env=env or {})
    return str(info.value)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ccd.toml"
    path.write_text(text)
    return path


# --- defaults and layering -----------------------------------------------------------------


def test_no_file_gives_the_documented_defaults():
    config = load_config(None, env={})
    table = {key: default for key, default, _ in defaults_table()}
    for section in ("esl", "redis", "http", "log", "daemon", "routing"):
        for field in dataclasses.fields(getattr(config, section)):
            assert (
                getattr(getattr(config, section), field.name) == table[f"{section}.{field.name}"]
            ), f"{section}.{field.name}"
    assert config.esl.port == 8021
    assert config.routing.ring_time == 15
    assert config.redis.url == "redis://127.0.0.1:6379/0"
    assert dict(config.queues) == {} and dict(config.agents) == {}


def test_defaults_table_documents_every_key_once():
    rows = defaults_table()
    keys = [key for key, _, _ in rows]
    assert len(keys) == len(set(keys))
    assert all(doc.strip() for _, _, doc in rows)
    assert {
        "esl.password",
        "redis.url",
        "queues.<queue>.ring_time",
        "agents.<agent>.extension",
    } <= (set(keys))


def test_example_config_is_accepted_and_complete():
    config = load_config(EXAMPLE, env={})
    assert config.queues["support"].ring_time == 20
    assert config.queues["sales"].ring_time == config.routing.ring_time  # inherited
    assert config.queues["payments"].voicemail == "payments"  # defaults to the queue name
    assert config.agents["bob"].extension == "1002"
    # Every schema key appears in the example, so the file documents them all.
    text = EXAMPLE.read_text()
    for key, _, _ in defaults_table():
        assert key.rsplit(".", 1)[-1] in text, key


def test_example_config_matches_the_shipped_dialplan():
    """The queues the IVR sends callers to are the example's queues, with their boxes."""
    conf = Path(__file__).resolve().parent.parent / "freeswitch_conf"
    dialplan = (conf / "dialplan" / "ccd.xml").read_text()
    queues_in_dialplan = set(re.findall(r"ccd_queue=([a-z0-9_\-]+)", dialplan))
    config = load_config(EXAMPLE, env={})
    assert queues_in_dialplan == set(config.queues)
    boxes = (conf / "directory" / "default" / "ccd_voicemail_boxes.xml").read_text()
    for queue in config.queues.values():
        assert f'id="{queue.voicemail}"' in boxes, queue.voicemail


def test_file_values_override_defaults_and_tags_are_canonical(tmp_path):
    path = write(
        tmp_path,
        """
[esl]
port = 8022
[routing]
ring_time = 7.5
[queues.sales]
tags = ["sales", "english", "sales"]
[agents.alice]
extension = "1001"
tags = ["sales"]
""",
    )
    config = load_config(path, env={})
    assert config.esl.port == 8022
    assert config.esl.host == "127.0.0.1"
    assert config.queues["sales"].ring_time == 7.5
    assert config.queues["sales"].tags == ("english", "sales")
    assert config.agents["alice"].tags == ("sales",)


def test_environment_overrides_secrets_from_the_file(tmp_path):
    path = write(tmp_path, '[esl]\npassword = "fromfile"\n[redis]\nurl = "redis://h1:6379/0"\n')
    env = {"CCD_ESL_PASSWORD": "fromenv", "CCD_REDIS_URL": "redis://:pw@h2:6380/1"}
    config = load_config(path, env=env)
    assert config.esl.password == "fromenv"
    assert config.redis.url == "redis://:pw@h2:6380/1"
    # An empty variable counts as unset.
    assert load_config(path, env={"CCD_ESL_PASSWORD": ""}).esl.password == "fromfile"
    # FreeSWITCH takes the rest of the `auth` line: inner spaces are allowed.
    assert load_config(path, env={"CCD_ESL_PASSWORD": "two words"}).esl.password == "two words"


def test_config_is_frozen():
    config = load_config(EXAMPLE, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.esl.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.queues["x"] = config.queues["general"]  # type: ignore[index]
    assert isinstance(config.queues["general"].tags, tuple)


def test_time_scale_divides_durations():
    config = Config.from_dict({"daemon": {"time_scale": 10}}, env={})
    assert config.daemon.scale(config.routing.ring_time) == pytest.approx(1.5)


# --- errors name the key -----------------------------------------------------------------


def test_bad_duration_names_the_queue_key():
    message = problems_of({"queues": {"sales": {"ring_time": "abc"}}})
    assert message == 'queues.sales.ring_time: expected a number of seconds > 0, got "abc"'


@pytest.mark.parametrize("value", [0, -1, True, float("nan")])
def test_ring_time_must_be_positive_seconds(value):
    assert "routing.ring_time: expected a number of seconds > 0" in problems_of(
        {"routing": {"ring_time": value}}
    )


def test_zero_is_a_valid_wrapup_but_negative_is_not():
    assert Config.from_dict({"routing": {"wrapup_time": 0}}, env={}).routing.wrapup_time == 0
    assert "routing.wrapup_time: expected a number of seconds >= 0, got -2" in problems_of(
        {"routing": {"wrapup_time": -2}}
    )


def test_unknown_key_suggests_the_close_one():
    assert problems_of({"esl": {"pasword": "x"}}) == (
        'esl.pasword: unknown key (did you mean "password"?)'
    )


def test_unknown_section_suggests_the_close_one():
    assert 'rooting: unknown section (did you mean "routing"?)' in problems_of({"rooting": {}})


def test_unknown_queue_key_is_reported_with_the_queue():
    assert 'queues.sales.ringtime: unknown key (did you mean "ring_time"?)' in problems_of(
        {"queues": {"sales": {"ringtime": 5}}}
    )


def test_agent_tags_must_be_a_list_of_strings():
    message = problems_of({"agents": {"alice": {"extension": "1001", "tags": "sales"}}})
    assert message == "agents.alice.tags: expected a list of strings"
    assert "agents.alice.tags: expected a list of strings" in problems_of(
        {"agents": {"alice": {"extension": "1001", "tags": ["sales", 3]}}}
    )


def test_tags_are_lower_case_names():
    message = problems_of({"queues": {"sales": {"tags": ["Sales"]}}})
    assert message.startswith('queues.sales.tags: tag "Sales" is not valid')


@pytest.mark.parametrize("name", ["Sales", "-x", "a" * 33, "sales team", "a:b"])
def test_queue_and_agent_names_are_checked(name):
    assert problems_of({"queues": {name: {}}}).startswith(f"queues.{name}: bad queue name")
    message = problems_of({"agents": {name: {"extension": "1"}}})
    assert message.startswith(f"agents.{name}: bad agent name")


def test_extension_is_required_digits_and_unique():
    assert problems_of({"agents": {"alice": {}}}) == "agents.alice.extension: required"
    assert problems_of({"agents": {"alice": {"extension": 1001}}}).startswith(
        "agents.alice.extension: expected a string of 1-16 digits, got 1001"
    )
    assert "agents.alice.extension" in problems_of({"agents": {"alice": {"extension": "10a1"}}})
    message = problems_of(
        {"agents": {"alice": {"extension": "1001"}, "bob": {"extension": "1001"}}}
    )
    assert message == "agents.bob.extension: 1001 is already the extension of agents.alice"


def test_queue_with_unknown_strategy_or_voicemail_box():
    assert problems_of({"queues": {"sales": {"on_exhausted": "busy"}}}) == (
        'queues.sales.on_exhausted: expected one of "voicemail", "hangup", got "busy"'
    )
    assert problems_of({"queues": {"sales": {"callback_strategy": "eager"}}}).startswith(
        "queues.sales.callback_strategy: expected one of"
    )
    message = problems_of(
        {"voicemail": {"boxes": ["sales", "support"]}, "queues": {"sales": {"voicemail": "sale"}}}
    )
    assert message.startswith("queues.sales.voicemail: unknown voicemail box")
    assert 'did you mean "sales"' in message
    # A queue's default box (its own name) is checked too.
    assert "queues.billing.voicemail" in problems_of(
        {"voicemail": {"boxes": ["sales"]}, "queues": {"billing": {}}}
    )


def test_all_problems_are_reported_together():
    with pytest.raises(ConfigError) as info:
        Config.from_dict(
            {"esl": {"port": 70000}, "http": {"port": "80"}, "log": {"level": "loud"}}, env={}
        )
    keys = [p.split(":", 1)[0] for p in info.value.problems]
    assert keys == ["esl.port", "http.port", "log.level"]


def test_section_must_be_a_table():
    assert problems_of({"esl": 5}) == "esl: expected a table, got 5"


def test_backoff_max_below_min_is_refused():
    assert problems_of({"esl": {"backoff_min": 5, "backoff_max": 1}}).startswith(
        "esl.backoff_max: must be >= esl.backoff_min"
    )


def test_time_scale_must_be_positive():
    assert "daemon.time_scale: expected a number > 0, got 0" in problems_of(
        {"daemon": {"time_scale": 0}}
    )


def test_caller_id_template_refuses_attribute_access():
    assert "routing.caller_id_template" in problems_of(
        {"routing": {"caller_id_template": "{name.__class__}"}}
    )
    assert "routing.caller_id_template" in problems_of({"routing": {"caller_id_template": "{"}})
    ok = Config.from_dict({"routing": {"caller_id_template": "{vip}{name:.20}"}}, env={})
    assert ok.routing.caller_id_template == "{vip}{name:.20}"


def test_moh_cannot_smuggle_a_line_break_into_a_command():
    assert "routing.moh: expected a single-line string" in problems_of(
        {"routing": {"moh": "local_stream://moh\nhangup"}}
    )


def test_toml_syntax_error_reports_file_and_line(tmp_path):
    path = write(tmp_path, '[esl]\nport = 8021\npassword = "unterminated\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(path) in str(info.value)
    assert "line 3" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "nope.toml", env={})


# --- secrets ---------------------------------------------------------------------------------


def test_secrets_never_in_repr_or_redacted_view():
    env = {"CCD_ESL_PASSWORD": "s3cr3t-esl", "CCD_REDIS_URL": "redis://ccd:s3cr3t-redis@db:6379/0"}
    config = load_config(EXAMPLE, env=env)
    for text in (repr(config), str(config), repr(config.esl), repr(config.redis),
                 str(config.redacted())):  # fmt: skip
        assert "s3cr3t" not in text
    assert config.redacted()["esl"]["password"] == "***"
    assert config.redacted()["redis"]["url"] == "redis://ccd:***@db:6379/0"
    assert config.redacted()["queues"]["support"]["ring_time"] == 20


def test_secrets_never_in_error_messages():
    bad_password = problems_of({}, env={"CCD_ESL_PASSWORD": "s3cr3t\nauth"})
    assert bad_password.startswith(
        "environment variable CCD_ESL_PASSWORD (overrides esl.password):"
    )
    assert "s3cr3t" not in bad_password
    bad_url = problems_of({}, env={"CCD_REDIS_URL": "http://user:s3cr3t@db/0"})
    assert bad_url.startswith(
        "environment variable CCD_REDIS_URL (overrides redis.url): expected a redis://"
    )
    assert "s3cr3t" not in bad_url
    bad_port = problems_of({}, env={"CCD_REDIS_URL": "redis://user:s3cr3t@db:xx/0"})
    assert bad_port.startswith("environment variable CCD_REDIS_URL (overrides redis.url):")
    assert "s3cr3t" not in bad_port
    bad_webhook = problems_of({"routing": {"webhook_url": "ftp://u:s3cr3t@crm/"}})
    assert bad_webhook.startswith("routing.webhook_url:")
    assert "s3cr3t" not in bad_webhook


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cr3t@db:port/0",  # bad port
        "redis://u:s3/cr3t@db/0",  # an unescaped "/" in the password: no masking can cope
        "http://db/0?password=s3cr3t&x=y",  # not a redis scheme
        "s3cr3t",  # no scheme at all
        "redis://:s3cr3t@/0",  # no host
    ],
)
def test_a_malformed_redis_url_from_the_environment_is_blamed_on_it_and_never_echoed(url):
    problem = problems_of({}, env={"CCD_REDIS_URL": url})
    assert problem.startswith("environment variable CCD_REDIS_URL (overrides redis.url): ")
    assert "s3cr3t" not in problem and "cr3t" not in problem


def test_a_malformed_redis_url_in_the_file_is_blamed_on_the_key_and_never_echoed():
    problem = problems_of({"redis": {"url": "redis://u:s3/cr3t@db:x/0"}}, env={})
    assert problem.startswith("redis.url: ") and "cr3t" not in problem


def test_the_http_token_is_checked_masked_and_never_echoed():
    token = "t0ken-" + "x" * 20
    config = Config.from_dict({}, env={"CCD_HTTP_TOKEN": token})
    assert config.http.token == token
    assert token not in repr(config) + str(config.redacted())
    assert config.redacted()["http"]["token"] == "***"
    short = problems_of({}, env={"CCD_HTTP_TOKEN": "s3cr3t"})
    assert short.startswith("environment variable CCD_HTTP_TOKEN (overrides http.token):")
    assert "s3cr3t" not in short
    assert Config.from_dict({}, env={}).http.token == ""


def test_unix_socket_redis_urls_are_accepted():
    config = Config.from_dict({"redis": {"url": "unix:///run/redis/redis.sock?db=2"}}, env={})
    assert config.redis.url == "unix:///run/redis/redis.sock?db=2"
    assert problems_of({"redis": {"url": "unix://"}}, env={}).startswith("redis.url: a unix://")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:pw@host", "redis://:***@host"),
        ("redis://pw@host/0", "redis://***@host/0"),
        ("redis://u:p@ss@host/0", "redis://u:***@host/0"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://host:6379/0?password=pw", "redis://host:6379/0?password=***"),
        ("redis://host/0?db=1&Password=pw&x=1", "redis://host/0?db=1&Password=***&x=1"),
        ("unix:///run/r.sock?password=pw&db=0", "unix:///run/r.sock?password=***&db=0"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_readme_configuration_reference_lists_every_key():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for key, _, _ in defaults_table():
        assert f"`{key}`" in readme, f"README's configuration table lacks {key}"
