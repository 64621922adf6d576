"""The configuration: one schema of documented defaults, one TOML file, secrets from the
environment, validated once into a frozen :class:`Config`.

``schema`` holds every section's keys with their defaults and docs, ``schema_tables`` the
queues' and agents' keys and ``defaults_table`` (``ccd config defaults``, the README),
``checks`` the value checkers, ``sections`` the section dataclasses, ``loading`` the
:class:`Config` and :func:`load_config`; ``rules`` builds the core's rules from a Config.
"""

from ccd.config.checks import EXTENSION_RE, NAME_RE, ConfigError, redact_url
from ccd.config.loading import Config, load_config
from ccd.config.schema_tables import defaults_table

__all__ = [
    "EXTENSION_RE",
    "NAME_RE",
    "Config",
    "ConfigError",
    "defaults_table",
    "load_config",
    "redact_url",
]
