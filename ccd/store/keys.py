"""Key names: the one place where every Redis key is made (prefix ``ccd:`` configurable).

Each part is checked so that a caller-supplied value (a number, an agent id, a uuid) cannot
forge another key: letters, digits and ``_ . @ + -`` only, no ``:``, whitespace or glob
characters. Keys are named by the concept word: ``agent:<id>``, ``callback:<id>``,
``callback_due``, ``sticky:<number>``, ``dnc:<number>``, ``disposition:<day>``...
"""

from __future__ import annotations

import re

__all__ = ["Keys", "check_part"]

_PART_RE = re.compile(r"^[A-Za-z0-9_.@+\-]{1,128}$")


def check_part(value: object, what: str = "key part") -> str:
    """``value`` if it may be part of a key (ccd/store/routing.lua makes keys from such parts
    too), else ValueError naming ``what``."""
    if not isinstance(value, str) or not _PART_RE.match(value):
        raise ValueError(f"bad {what}: {value!r:.80}")
    return value


class Keys:
    """Key names. Each part is checked: letters, digits and ``_ . @ + -`` only."""

    def __init__(self, prefix: str = "ccd:") -> None:
        if not re.match(r"^[A-Za-z0-9_.\-]{0,32}:?$", prefix):
            raise ValueError(f"bad key prefix {prefix!r}")
        self.prefix = prefix

    def _key(self, *parts: str) -> str:
        for part in parts:
            if not isinstance(part, str) or not _PART_RE.match(part):
                raise ValueError(f"bad key part {part!r}")
        return self.prefix + ":".join(parts)

    # Routing (ccd/store/routing.lua makes these same names inside Redis; its header says
    # what each holds).
    def free_agents(self, tag: str | None = None) -> str:
        """ZSET of free agents (all, or those carrying ``tag``) in routing order."""
        return self._key("agents", "free", tag) if tag else self._key("agents", "free")

    def tagsets_built(self) -> str:
        """Set once every agent is in the index by tag set (ccd/store/routing.lua)."""
        return self._key("agents", "tagsets")

    def ready_agents(self) -> str:
        """SET of agents logged in with a registered phone."""
        return self._key("agents", "ready")

    def tag(self, tag: str) -> str:
        """SET of the agents carrying ``tag``."""
        return self._key("agents", "tag", tag)

    def wait_lists(self) -> str:
        """HASH of the waiting lists (``<queue>:<tagset>``) -> calls in each."""
        return self._key("wait", "lists")

    def wait_list(self, name: str) -> str:
        """A waiting list: calls with no agent yet, by queue order key."""
        queue, _, tagset = name.partition(":")
        return self._key("wait", queue, tagset)

    def offer(self, call_uuid: str) -> str:
        """The agent reserved for a call (msgpack {agent, leg, job, at})."""
        return self._key("offer", call_uuid)

    def tried(self, call_uuid: str) -> str:
        """SET of the agents a call was offered to."""
        return self._key("tried", call_uuid)

    def call_lease(self, call_uuid: str) -> str:
        """The daemon hunting a call (valid while that daemon's node key lives)."""
        return self.lease("call." + call_uuid)

    def epoch(self) -> str:
        """A random mark written once into an empty Redis: gone means Redis lost its data."""
        return self._key("epoch")

    def node(self, node_id: str) -> str:
        """A live daemon's heartbeat (msgpack {host, pid, token, started}, short TTL)."""
        return self._key("node", node_id)

    def node_clock(self, node_id: str) -> str:
        """A live daemon's clock at its last beat (msgpack [daemon now, wall now, time scale],
        the heartbeat's TTL): what ``ccd`` commands measure durations against."""
        return self._key("node_clock", node_id)

    def notify(self, node_id: str) -> str:
        """The pub/sub channel on which a daemon hears of agents reserved for its calls."""
        return self._key("notify", node_id)

    def agent(self, agent_id: str) -> str:
        """The agent record (msgpack)."""
        return self._key("agent", agent_id)

    def agents(self) -> str:
        """Set of known agent ids."""
        return self._key("agents")

    def call(self, call_uuid: str) -> str:
        """A call's record (msgpack)."""
        return self._key("call", call_uuid)

    def calls(self) -> str:
        """Set of live call uuids."""
        return self._key("calls")

    def queue(self, name: str) -> str:
        """A queue's waiting calls."""
        return self._key("queue", name)

    def ref(self, kind: str, uuid: str) -> str:
        """Maps a FreeSWITCH id (``job``, ``leg``) to the caller's uuid."""
        return self._key(kind, uuid)

    def lease(self, name: str) -> str:
        """A lease; the value is the owner's name."""
        return self._key("lease", name)

    def callback(self, request_id: str) -> str:
        """A callback request (msgpack, ccd.store.callback)."""
        return self._key("callback", request_id)

    def callback_all(self) -> str:
        """ZSET of every callback request id by creation time (never trimmed)."""
        return self._key("callback_all")

    def callback_status(self, status: str) -> str:
        """ZSET of the callback ids in one status, by the original call's queue order."""
        return self._key("callback_status", status)

    def callback_due(self) -> str:
        """ZSET of the pending callback ids by the time they are next due."""
        return self._key("callback_due")

    def callback_open(self, number: str) -> str:
        """SET of the open (pending, working) callback ids of a normalised number."""
        return self._key("callback_open", number)

    def callback_open_queue(self, queue: str) -> str:
        """SET of the open callback ids of a queue (its cap, callback.max_open_per_queue)."""
        return self._key("callback_open_queue", queue or "_")

    def callback_open_anonymous(self, queue: str) -> str:
        """SET of the open callback ids of a queue's callers without a usable number."""
        return self._key("callback_open_anonymous", queue or "_")

    def callback_lease(self, request_id: str) -> str:
        """The lease of the daemon working a callback request (value: its node id)."""
        return self.lease("callback." + request_id)

    def sticky(self, number: str) -> str:
        """A sticky binding (msgpack, ccd.store.sticky) by normalised number; TTL = its expiry."""
        return self._key("sticky", number)

    def sticky_pattern(self) -> str:
        """SCAN pattern of every sticky binding (the prefix holds no glob characters)."""
        return self.prefix + "sticky:*"

    def sticky_setting(self, agent_id: str) -> str:
        """An agent's run-time sticky setting (msgpack), overriding the config file."""
        return self._key("sticky_setting", agent_id)

    def dnc(self, number: str) -> str:
        """A do-not-call entry (msgpack, ccd.store.dnc) by normalised number; TTL = its period."""
        return self._key("dnc", number)

    def dnc_pattern(self) -> str:
        """SCAN pattern of every do-not-call entry (the prefix holds no glob characters)."""
        return self.prefix + "dnc:*"

    def disposition_stream(self, day: str) -> str:
        """A day's dispositions (ccd.store.report): a stream, one entry per recording."""
        return self._key("disposition", day)

    def disposition_counts(self, day: str) -> str:
        """A day's disposition counters (ccd.store.report): a hash."""
        return self._key("disposition_counts", day)

    def disposition_call(self, call_uuid: str) -> str:
        """The codes already counted for a call and the day they count on (ccd.store.report)."""
        return self._key("disposition_call", call_uuid)

    def disposition_info(self, call_uuid: str) -> str:
        """What codes set later need of a finished call (msgpack, ccd.engine.disposition)."""
        return self._key("disposition_info", call_uuid)

    def disposition_last(self, agent_id: str) -> str:
        """The uuid of the agent's most recent finished call (ccd.engine.disposition)."""
        return self._key("disposition_last", agent_id)

    def events(self) -> str:
        """The event feed (ccd.store.feed): a stream every daemon appends to, capped."""
        return self._key("events")

    def customer(self, number: str) -> str:
        """A customer record (msgpack), by normalised number (ccd.core.numbers)."""
        return self._key("customer", number)

    def contacts(self, number: str) -> str:
        """A number's contact history: a list of msgpack entries, newest first."""
        return self._key("contacts", number)

    # --- statistics (ccd.store.stats; its Lua builds the same names from the prefix) ---

    def stats_queue_day(self, queue: str, day: str) -> str:
        """A queue's counters of one day in its zone (a hash, expires after the retention)."""
        return self._key("stats", "queue", queue, day)

    def stats_queue_minute(self, queue: str, minute: str) -> str:
        """A queue's counters of one minute (epoch minutes; a hash living the longest window)."""
        return self._key("stats", "queue_minute", queue, minute)

    def stats_agent_day(self, agent_id: str, day: str) -> str:
        """An agent's seconds per status and counts of one day in the centre's zone (a hash)."""
        return self._key("stats", "agent", agent_id, day)

    def stats_agent_now(self, agent_id: str) -> str:
        """An agent's status since when, its queues, the queue call its time counts for."""
        return self._key("stats", "agent_now", agent_id)

    def stats_agents(self, queue: str | None = None) -> str:
        """Agents by status (a hash status → count): of one queue, or of the whole centre."""
        return self._key("stats", "agents", queue) if queue else self._key("stats", "agents")

    def stats_busy(self, queue: str) -> str:
        """A queue's agents ringing, on a call, in wrap-up or on break (a hash agent →
        ``"<status> <since> <after the call>"``): the estimated wait's input."""
        return self._key("stats", "busy", queue)


# Shared Lua helpers, put in front of every registered script (Lua 5.1 in Redis).
