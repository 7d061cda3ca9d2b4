"""The gRPC plumbing every novalite service shares: the runner that starts, serves
and stops each of them (runner.py), server bootstrap with health, reflection,
metrics and graceful stop (server.py), the interceptors for auth, error
mapping, logging and metrics (interceptors.py), domain errors <-> status codes
(status.py), channels that carry a bearer token (client.py), and the per-call
context managers read the caller from (context.py).

Importing this package imports no grpc: managers may use ``novalite.services.context``.
"""
