"""The driver interface itself, for every installed driver: optional abilities are declared
(`DriverBase.logins`), never probed; the driver of the configured clusters is found by what it
declares (`kind_serving`); `drivers/base.py` names no concrete driver. No backend is needed:
making a driver instance does no I/O."""

from __future__ import annotations

import ast
import inspect

import pytest

import drivers.base
from drivers.base import DriverBase, available_drivers, kind_serving, make_driver
from jobvisor.config import load_config
from jobvisor.sbatch_keys import CLUSTER_RESOURCE


class Host:
    def agent_exited(self, agent_id, reason):
        pass


@pytest.fixture
def config(tmp_path):
    return load_config(environ={"JOBVISOR_SERVER_STATE_DIR": str(tmp_path)})


@pytest.mark.parametrize("kind", sorted(available_drivers()))
def test_logins_are_declared(kind, config):
    driver = make_driver(kind, config, Host())
    assert isinstance(driver, DriverBase)
    logins = driver.logins
    if logins is not None:
        for name in ("login", "logout", "session"):
            assert callable(getattr(logins, name)), (kind, name)
    if type(driver).instance_resource == CLUSTER_RESOURCE:
        assert logins is not None, f"the {kind} driver serves clusters: users log in to them"


def test_the_cluster_driver_is_found_by_its_declaration():
    kind = kind_serving()
    assert kind is not None and available_drivers()[kind].instance_resource == CLUSTER_RESOURCE
    assert kind_serving("no-such-resource") is None


def test_the_interface_names_no_concrete_driver():
    """No string in its code (docstrings aside, where drivers are examples) is a driver's kind."""
    tree = ast.parse(inspect.getsource(drivers.base))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    strings = [node.value for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]
    for kind in available_drivers():
        if kind == "local":  # the registry's built-in fallback (drivers.local, imported lazily)
            continue
        assert not [s for s in strings if s == kind or s.startswith(kind + ":")], kind
