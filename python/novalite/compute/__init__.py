"""The compute agent: ``manager`` (domain logic, no grpc), ``servicer`` (the
ComputeAgent gRPC service), ``service`` (bootstrap: ``novalite compute``) and
``rpcapi`` (the client the conductor calls it with)."""
