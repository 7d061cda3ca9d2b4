"""Keystone's v3 subset: who may authenticate, their projects and roles, and the
tokens they get (the same signed tokens the gRPC API checks)."""
