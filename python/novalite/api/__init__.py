"""The public API service: manager (domain logic), servicer (protobuf <-> domain)
and service (bootstrap)."""
