"""The REST API the OpenStack clients speak: Keystone v3 (identity), Nova v2.1
(compute) and Glance v2 (images, read only), one aiohttp application served by the
API service beside its gRPC, over the same managers.

Modules: ``app`` (the application: routes, the edge every request goes through,
the server), ``identity``, ``compute``, ``image`` (the routes: parse, call a
manager, render), ``convert`` (REST <-> records, the one place), ``faults``
(domain errors -> Nova's, Keystone's and Glance's error bodies), ``microversion``
(Nova's microversions and version documents), ``schema`` (request body checks).
"""
