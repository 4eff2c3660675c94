"""Every public module, name and signature of scVI 0.6.8 exists at the same path, with the same
parameter names in the same order and the same literal defaults.

The expectations are read off the original package (``tests/data/legacy_api.json``, generated from
``../shared/legacy-api-surface.md`` by ``tests/data/make_legacy_api.py``). Our signatures may add
parameters only after the legacy ones.
"""
import importlib
import inspect
import json
from pathlib import Path

import pytest

SURFACE = json.loads((Path(__file__).parents[1] / "data" / "legacy_api.json").read_text())

# A legacy mutable default (``{}`` / ``[]``) may be replaced by ``None`` meaning the same thing.


def _cases():
    for module_name, module in SURFACE.items():
        yield pytest.param(module_name, None, None, id=module_name)
        for obj_name, obj in module["objects"].items():
            yield pytest.param(module_name, obj_name, None, id=f"{module_name}::{obj_name}")
            for member_name in obj["members"]:
                yield pytest.param(module_name, obj_name, member_name, id=f"{module_name}::{obj_name}.{member_name}")


def _check_params(actual: inspect.Signature, expected: list, where: str, drop_self: bool) -> None:
    params = list(actual.parameters.values())
    if drop_self and params and params[0].name in ("self", "cls"):
        params = params[1:]
    expected_kinds = {p["kind"] for p in expected}
    if expected and expected_kinds <= {"var_positional", "var_keyword"}:
        return  # legacy ``(*args, **kwargs)``: any explicit signature is compatible
    ours_named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    ours_has_var_kw = any(p.kind == p.VAR_KEYWORD for p in params)
    legacy_named = [p for p in expected if p["kind"] == "normal"]
    names = [p.name for p in ours_named]
    assert names[: len(legacy_named)] == [p["name"] for p in legacy_named], (
        f"{where}: parameters {names} do not start with the legacy {[p['name'] for p in legacy_named]}"
    )
    for ours, legacy in zip(ours_named, legacy_named):
        if legacy["has_default"]:
            assert ours.default is not inspect.Parameter.empty, f"{where}: `{ours.name}` lost its default"
            if legacy.get("literal"):
                if ours.default is None and repr(legacy["default"]) in ("{}", "[]"):
                    continue
                assert ours.default == legacy["default"] or (
                    isinstance(legacy["default"], list) and list(ours.default or []) == legacy["default"]
                ), f"{where}: `{ours.name}` default {ours.default!r} != legacy {legacy['default']!r}"
    for extra in ours_named[len(legacy_named):]:
        assert extra.default is not inspect.Parameter.empty or extra.kind == extra.KEYWORD_ONLY, (
            f"{where}: added parameter `{extra.name}` must have a default"
        )
    if "var_keyword" in expected_kinds:
        assert ours_has_var_kw, f"{where}: legacy accepted **kwargs"


@pytest.mark.parametrize("module_name, obj_name, member_name", list(_cases()))
def test_legacy_surface(module_name, obj_name, member_name):
    module = importlib.import_module(module_name)
    if obj_name is None:
        missing = [name for name in SURFACE[module_name]["reexports"] if not hasattr(module, name)]
        assert not missing, f"{module_name} lacks legacy names {missing}"
        return
    spec = SURFACE[module_name]["objects"][obj_name]
    assert hasattr(module, obj_name), f"{module_name}.{obj_name} is missing"
    obj = getattr(module, obj_name)
    if member_name is None:
        if spec["params"]:
            target = obj.__init__ if spec["kind"] == "class" else obj
            _check_params(inspect.signature(target), spec["params"], f"{module_name}.{obj_name}",
                          drop_self=spec["kind"] == "class")
        return
    member_spec = spec["members"][member_name]
    assert hasattr(obj, member_name), f"{module_name}.{obj_name}.{member_name} is missing"
    if member_spec["kind"] in ("method", "staticmethod"):
        raw = inspect.getattr_static(obj, member_name)
        is_static = isinstance(raw, staticmethod)
        target = getattr(obj, member_name)
        _check_params(inspect.signature(target), member_spec["params"],
                      f"{module_name}.{obj_name}.{member_name}", drop_self=not is_static)
    elif member_spec["kind"] == "property":
        raw = inspect.getattr_static(obj, member_name)
        assert isinstance(raw, property) or hasattr(raw, "__get__"), f"{obj_name}.{member_name} is not a property"
