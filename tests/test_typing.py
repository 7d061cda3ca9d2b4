"""Typing of the placement package (issue 2, item 7: "typed (.pyi, py.typed)").

* The stub python/novalite/_placement.pyi matches the compiled module (mypy's
  stubtest imports the extension and compares every class, method, parameter
  name, default and constant).
* The facade passes ``mypy --strict``.
* A typed user of the facade and of the compiled module (tests/typecheck/usage.py)
  gets the types it expects (``assert_type``).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "python" / "novalite"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "python"), env.get("PYTHONPATH")) if p)
    env.setdefault("MYPY_FORCE_COLOR", "0")
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy_cache")


def test_the_package_is_marked_typed() -> None:
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "_placement.pyi").is_file()


def test_stub_matches_the_compiled_module() -> None:
    out = _run("mypy.stubtest", "novalite._placement", "--mypy-config-file", str(ROOT / "pyproject.toml"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_facade_passes_mypy_strict(cache: Path) -> None:
    out = _run("mypy", "--strict", "--cache-dir", str(cache), "python/novalite/placement")
    assert out.returncode == 0, out.stdout + out.stderr


def test_typed_usage_gets_the_expected_types(cache: Path) -> None:
    out = _run("mypy", "--strict", "--cache-dir", str(cache), "python/novalite/_placement.pyi",
               "tests/typecheck/usage.py")
    assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------- stub return types
# stubtest compares names, parameters and defaults, not what a method returns: check
# every return annotation of the stub against what the compiled module does return.

def _stub_returns() -> dict[str, Any]:
    import numpy as np
    import numpy.typing as npt
    from novalite import _placement

    tree = ast.parse((PACKAGE / "_placement.pyi").read_text())
    namespace: dict[str, Any] = {"np": np, "npt": npt, "Any": Any, "None": None}
    namespace.update({n: getattr(_placement, n) for n in ("HostTable", "Scheduler", "PreparedRequest")})
    for node in tree.body:  # type aliases such as _Pick
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            namespace[node.targets[0].id] = eval(ast.unparse(node.value), namespace)
    out: dict[str, Any] = {}
    for cls in tree.body:
        if not isinstance(cls, ast.ClassDef):
            continue
        for fn in cls.body:
            if isinstance(fn, ast.FunctionDef) and fn.returns is not None and fn.name != "__new__":
                out[f"{cls.name}.{fn.name}"] = eval(ast.unparse(fn.returns), namespace)
    return out


def _conforms(value: Any, hint: Any) -> bool:
    import numpy as np

    if hint is Any:
        return True
    if hint is None:
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if origin is dict:
        return isinstance(value, dict) and all(
            _conforms(k, args[0]) and _conforms(v, args[1]) for k, v in value.items())
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is tuple:
        return isinstance(value, tuple) and len(value) == len(args) and all(
            _conforms(v, a) for v, a in zip(value, args))
    if origin is np.ndarray:
        dtype = typing.get_args(args[1])[0]
        return isinstance(value, np.ndarray) and value.ndim == 1 and (dtype is Any or value.dtype == dtype)
    if hint is float:
        return type(value) is float
    if hint is int:
        return type(value) is int
    return isinstance(value, hint)


def test_stub_return_types_are_what_the_core_returns() -> None:
    from novalite import _placement
    from novalite.placement import Aggregate, Flavor, Host, Inventory, RequestSpec, SchedulerConfig

    t = _placement.HostTable()
    t.set_aggregate(Aggregate("agg", "agg", {"availability_zone": "az1"}))
    got: dict[str, Any] = {
        "HostTable.add_host": t.add_host(Host("h0", "u0", Inventory(8), Inventory(4096), Inventory(40),
                                              aggregates=["agg"])),
        "HostTable.add_hosts": t.add_hosts(["h1", "h2"], ["u1", "u2"], {}, {"cell": ["c1", "c1"]}),
        "HostTable.__len__": t.__len__(),
        "HostTable.update_host": t.update_host("h1", num_io_ops=1),
        "HostTable.set_aggregate": t.set_aggregate(Aggregate("agg2")),
        "HostTable.add_host_to_aggregate": t.add_host_to_aggregate("agg2", "h1"),
        "HostTable.remove_host_from_aggregate": t.remove_host_from_aggregate("agg2", "h1"),
        "HostTable.remove_aggregate": t.remove_aggregate("agg2"),
        "HostTable.add_instance": t.add_instance("h0", "inst-1", {"os_distro": "x"}),
        "HostTable.remove_instance": t.remove_instance("inst-1"),
        "HostTable.set_inventory": t.set_inventory("h1", "VCPU", Inventory(4)),
        "HostTable.claim": t.claim("c", {"h0": {"VCPU": 1}}),
        "HostTable.replace": t.replace("c", {"h0": {"VCPU": 2}}),
        "HostTable.usage": t.usage("h0"),
        "HostTable.capacity": t.capacity("h0"),
        "HostTable.generation": t.generation("h0"),
        "HostTable.inventory_tuple": t.inventory_tuple("h0", "VCPU"),
        "HostTable.allocations": t.allocations("c"),
        "HostTable.consumers": t.consumers(),
        "HostTable.host_names": t.host_names(),
        "HostTable.host_aggregates": t.host_aggregates("h0"),
        "HostTable.instances_on": t.instances_on("h0"),
        "HostTable.availability_zone": t.availability_zone("h0"),
        "HostTable.release": t.release("c"),
        "HostTable.remove_host": t.remove_host("h2"),
    }
    sched = _placement.Scheduler(t, SchedulerConfig())
    spec = RequestSpec(flavor=Flavor("m1", 1, 512, 1), instance_uuids=["i-1", "i-2"])
    prepared = sched.prepare(spec)
    got.update({
        "Scheduler.prepare": prepared,
        "PreparedRequest.amounts": prepared.amounts,
        "PreparedRequest.num_instances": prepared.num_instances,
        "Scheduler.filter": sched.filter(spec),
        "Scheduler.weigh": sched.weigh(prepared, 1),
        "Scheduler.select": sched.select(spec, True, 3, True),
    })
    hints = _stub_returns()
    assert set(hints) - {"HostTable.column"} == set(got), "a method of the stub is not exercised here"
    for name, hint in hints.items():
        if name == "HostTable.column":
            for column in _placement.COLUMNS:
                assert _conforms(t.column(column), hint), column
            continue
        assert _conforms(got[name], hint), f"{name} returned {got[name]!r}, the stub says {hint}"
    for name in ("RESOURCE_CLASSES", "COLUMNS"):
        assert _conforms(getattr(_placement, name), list[str])
    # the picks of a claimed two-instance select have the stub's shape, alternates included
    assert len(got["Scheduler.select"][2]) == 2 and got["Scheduler.select"][2][0][1]
