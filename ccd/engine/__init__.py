"""Call control: feeds the pure core from FreeSWITCH's events and Redis, runs its commands.

``control.CallControl`` is what the dispatcher calls; it routes each event to the part that
decides it (entry, hunting, overflow, feature codes, presence, resync, the callback dialer,
dispositions), all sharing one ``io.CallIo`` for commands, facts, presence writes and leases.
"""
