"""Who the caller is and what they may do: signed bearer tokens (tokens.py) and the
policy table from RPC method to roles (policy.py). No grpc here: the services'
auth interceptor (novalite.services) applies both."""
