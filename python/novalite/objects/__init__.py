"""The domain, with no layer above it: the records every layer passes around
(records.py), the states of a server (states.py) and which action is allowed in which
state and where it leads (lifecycle.py), what enforces each server group policy
(groups.py). The API, conductor, compute agent and database read these; each
converts at its own edge only."""
