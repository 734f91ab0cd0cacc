"""The workflow document: what is accepted, what each mistake is called, and $ref values."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobvisor.errors import InvalidRequest
from jobvisor.workflow_doc import (
    InputRef,
    OnFailure,
    RefError,
    load_document,
    parse_workflow,
    resolve_refs,
)

MESH_STUDY = {
    "name": "mesh-study",
    "on_failure": "cancel_dependents",
    "jobs": [
        {"name": "prep", "code": "shell", "params": {"argv": ["./prep"]},
         "resources": {"cpus": 2, "walltime": "00:10:00"}, "outputs": ["mesh.h5"]},
        {"name": "solve-a", "code": "python",
         "params": {"entry": "solver:run", "args": {"size": {"$ref": "prep.result.size"}}},
         "after": ["prep"], "inputs": [{"job": "prep", "path": "mesh.h5"}], "driver": "docker"},
        {"name": "report", "code": "shell", "params": {"argv": ["./report"]}, "after": ["solve-a"]},
    ],
}


def parse(doc: dict, max_jobs: int = 100):
    return parse_workflow(json.loads(json.dumps(doc)), max_jobs=max_jobs)


def refused(doc: dict) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse(doc)
    return caught.value


def shell(name: str, **extra) -> dict:
    return {"name": name, "code": "shell", "params": {"argv": ["true"]}, **extra}


def test_the_issue_example_parses_whole():
    doc = parse(MESH_STUDY)
    assert doc.name == "mesh-study" and doc.on_failure is OnFailure.CANCEL_DEPENDENTS
    prep, solve, report = doc.jobs
    assert prep.spec.resources["cpus"] == 2 and prep.outputs == ("mesh.h5",) and prep.after == ()
    assert solve.after == ("prep",) and solve.inputs == (InputRef("prep", "mesh.h5", "mesh.h5"),)
    assert solve.has_refs and solve.spec.params["args"]["size"] == {"$ref": "prep.result.size"}
    assert solve.spec.driver == "docker" and report.after == ("solve-a",)
    assert doc.order == (0, 1, 2)


def test_inputs_and_refs_imply_their_dependencies():
    doc = parse({"name": "w", "jobs": [
        shell("b", inputs=[{"job": "a", "path": "x", "dest": "in/x"}]),
        shell("a", outputs=["x"]),
        {"name": "c", "code": "python", "params": {"entry": "m:f", "args": {"v": {"$ref": "b.result"}}}},
    ]})
    b, _a, c = doc.jobs
    assert b.after == ("a",) and b.inputs[0].dest == "in/x"
    assert c.after == ("b",)
    assert doc.order == (1, 0, 2)  # a first; otherwise the document's order
    assert doc.on_failure is OnFailure.CONTINUE or doc.on_failure is OnFailure.CANCEL_DEPENDENTS
    assert doc.on_failure is OnFailure.CANCEL_DEPENDENTS  # the default


def test_the_normalized_document_parses_back_to_the_same():
    doc = parse(MESH_STUDY)
    again = parse(doc.to_json())
    assert again == doc
    assert doc.to_json()["jobs"][1]["after"] == ["prep"]


@pytest.mark.parametrize("doc, field, words", [
    ([], "body", "JSON object"),
    ({"name": "w", "jobs": [shell("a")], "color": 1}, "color", "unknown field"),
    ({"jobs": [shell("a")]}, "name", "required"),
    ({"name": "has.dot", "jobs": [shell("a")]}, "name", "letters, digits"),
    ({"name": "w", "jobs": []}, "jobs", "non-empty"),
    ({"name": "w", "on_failure": "explode", "jobs": [shell("a")]}, "on_failure", "'cancel_dependents' or 'continue'"),
    ({"name": "w", "jobs": [shell("a"), shell("a")]}, "jobs[1].name", "duplicate job name 'a'"),
    ({"name": "w", "jobs": [shell("a"), "b"]}, "jobs[1]", "JSON object"),
    ({"name": "w", "jobs": [shell("a"), {"code": "shell", "params": {"argv": ["x"]}}]}, "jobs[1].name", "required"),
    ({"name": "w", "jobs": [shell("a", after=["nope"])]}, "jobs[0].after[0]", "no job named 'nope'"),
    ({"name": "w", "jobs": [shell("a", after=["a"])]}, "jobs[0].after[0]", "a -> a"),
    ({"name": "w", "jobs": [shell("a"), shell("b", inputs=[{"job": "zz", "path": "f"}])]}, "jobs[1].inputs[0].job", "no job named 'zz'"),
    ({"name": "w", "jobs": [shell("a", outputs=["f"]), shell("b", inputs=[{"job": "a", "path": "g"}])]},
     "jobs[1].inputs[0].path", "does not list 'g' among its outputs (it lists 'f')"),
    ({"name": "w", "jobs": [shell("a", outputs=["../up"])]}, "jobs[0].outputs[0]", "not a path inside the run dir"),
    ({"name": "w", "jobs": [shell("a", outputs=["/etc/passwd"])]}, "jobs[0].outputs[0]", "not a path inside the run dir"),
    ({"name": "w", "jobs": [shell("a", outputs=["f", "f"])]}, "jobs[0].outputs[1]", "listed twice"),
    ({"name": "w", "jobs": [shell("a", outputs=["f"]), shell("b", inputs=[{"job": "a", "path": "f", "dest": "a/../../x"}])]},
     "jobs[1].inputs[0].dest", "not a path inside the run dir"),
    ({"name": "w", "jobs": [shell("a", outputs=["f", "g"]), shell("b", inputs=[
        {"job": "a", "path": "f", "dest": "x"}, {"job": "a", "path": "g", "dest": "x"}])]}, "jobs[1].inputs[1].dest", "two inputs"),
    ({"name": "w", "jobs": [shell("a"), {"name": "b", "code": "python", "params": {"entry": "m:f", "args": {"n": {"$ref": "q.result.n"}}}}]},
     "jobs[1].params.args.n", "no job named 'q'"),
    ({"name": "w", "jobs": [shell("a"), {"name": "b", "code": "python", "params": {"entry": "m:f", "args": {"n": {"$ref": "a.output"}}}}]},
     "jobs[1].params.args.n", "JOB.result"),
    ({"name": "w", "jobs": [shell("a", resources={"cpus": -1})]}, "jobs[0].resources.cpus", ""),
    ({"name": "w", "jobs": [{"name": "a", "code": "shell", "params": {"argv": []}}]}, "jobs[0].params.argv", ""),
    ({"name": "w", "jobs": [shell("a", extra=1)]}, "jobs[0].extra", "unknown field"),
])
def test_each_mistake_names_its_field(doc, field, words):
    error = refused(doc)
    assert error.field == field, error.detail
    assert words in error.detail


def test_a_cycle_names_its_jobs_in_run_order():
    error = refused({"name": "w", "jobs": [
        shell("start"), shell("a", after=["c", "start"]), shell("b", after=["a"]), shell("c", after=["b"]),
        shell("tail", after=["c"]),
    ]})
    assert "cycle" in error.detail
    chain = error.detail.rsplit(": ", 1)[1].split(" -> ")
    assert chain[0] == chain[-1] and sorted(chain[:-1]) == ["a", "b", "c"]
    # each runs after the one before it
    after = {"a": "c", "b": "a", "c": "b"}
    assert all(after[later] == earlier for earlier, later in itertools.pairwise(chain))
    assert error.field.startswith("jobs[") and error.field.endswith("].after")


def test_a_cycle_made_by_refs_and_inputs_is_found_too():
    error = refused({"name": "w", "jobs": [
        shell("a", outputs=["f"], after=["b"]),
        {"name": "b", "code": "python", "params": {"entry": "m:f", "args": {"x": {"$ref": "a.result"}}}},
    ]})
    assert "a -> b -> a" in error.detail or "b -> a -> b" in error.detail


def test_too_many_jobs_is_refused_before_any_is_read():
    with pytest.raises(InvalidRequest, match="3 jobs in one workflow; at most 2") as caught:
        parse_workflow({"name": "w", "jobs": [shell("a"), shell("b"), {}]}, max_jobs=2)
    assert caught.value.field == "jobs"


def test_a_ref_stands_in_for_params_the_code_checks():
    # a shell job's argv element, and a whole argv, may come from a result
    doc = parse({"name": "w", "jobs": [
        shell("a"),
        {"name": "b", "code": "shell", "params": {"argv": ["echo", {"$ref": "a.result.word"}]}},
        {"name": "c", "code": "shell", "params": {"argv": {"$ref": "a.result.argv"}}},
    ]})
    assert doc.jobs[1].has_refs and doc.jobs[2].has_refs and doc.jobs[2].after == ("a",)
    # ...but a mistake elsewhere in the same params is still found
    error = refused({"name": "w", "jobs": [
        shell("a"), {"name": "b", "code": "shell", "params": {"argv": [{"$ref": "a.result"}], "env": {"X": 1}}},
    ]})
    assert error.field == "jobs[1].params.env.X" or error.field.startswith("jobs[1].params.env")


def test_a_value_too_big_for_the_wire_is_refused_beside_a_ref():
    error = refused({"name": "w", "jobs": [
        shell("a"), {"name": "b", "code": "python", "params": {"entry": "m:f", "args": {"r": {"$ref": "a.result"}, "n": 2**70}}},
    ]})
    assert error.field == "jobs[1].params.args.n"


def test_resolve_refs_replaces_every_ref():
    params = {"entry": "m:f", "args": {"size": {"$ref": "prep.result.size"}, "all": {"$ref": "prep.result"},
                                       "first": [{"$ref": "other.result.items.0"}]}}
    results = {"prep": {"size": 64}, "other": {"items": ["x", "y"]}}
    assert resolve_refs(params, results) == {
        "entry": "m:f", "args": {"size": 64, "all": {"size": 64}, "first": ["x"]}}


@pytest.mark.parametrize("ref, results, words", [
    ("prep.result.size", {"prep": {"n": 1}}, "prep.result has no key 'size' (it has 'n')"),
    ("prep.result.size", {}, "job 'prep' has no result"),
    ("prep.result.size.x", {"prep": {"size": 3}}, "prep.result.size is int"),
    ("prep.result.items.5", {"prep": {"items": [1]}}, "has 1 items, no [5]"),
    ("prep.result.k", {"prep": None}, "is null"),
])
def test_a_missing_ref_value_names_the_ref(ref, results, words):
    with pytest.raises(RefError) as caught:
        resolve_refs({"x": {"$ref": ref}}, results)
    assert ref in str(caught.value) and words in str(caught.value)


def test_yaml_documents_load_as_json_values():
    body = b"""
name: nightly
jobs:
  - name: fetch
    code: shell
    params: {argv: [echo, 2024-01-01]}
    outputs: [data.csv]
  - name: plot
    code: shell
    params: {argv: [./plot]}
    inputs: [{job: fetch, path: data.csv}]
"""
    data = load_document(body, "application/yaml; charset=utf-8")
    assert data["jobs"][0]["params"]["argv"] == ["echo", "2024-01-01"]  # a date stays a string
    doc = parse_workflow(data, max_jobs=10)
    assert doc.jobs[1].after == ("fetch",)


@pytest.mark.parametrize("body, content_type, words", [
    (b"name: [unclosed", "application/yaml", "not valid YAML"),
    (b"x: !!binary aGVsbG8=", "text/yaml", "not a JSON value"),
    (b"{\"name\": ", "application/json", "not valid JSON"),
    (b"  ", "application/json", "empty"),
])
def test_a_bad_body_is_a_400_on_the_body(body, content_type, words):
    with pytest.raises(InvalidRequest) as caught:
        load_document(body, content_type)
    assert caught.value.field == "body" and words in caught.value.detail


# --------------------------------------------------------------------------- random graphs

@st.composite
def graphs(draw):
    """A random dependency relation over n jobs (edges point from a job to its dependencies)."""
    n = draw(st.integers(1, 12))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=30))
    deps: list[set[int]] = [set() for _ in range(n)]
    for job, dep in edges:
        if job != dep:
            deps[job].add(dep)
    return deps


def _has_cycle(deps: list[set[int]]) -> bool:
    state = [0] * len(deps)

    def visit(i: int) -> bool:
        if state[i] == 1:
            return True
        if state[i] == 2:
            return False
        state[i] = 1
        if any(visit(d) for d in deps[i]):
            return True
        state[i] = 2
        return False

    return any(visit(i) for i in range(len(deps)))


@settings(max_examples=200, deadline=None)
@given(graphs())
def test_any_graph_is_ordered_or_its_cycle_named(deps):
    doc = {"name": "g", "jobs": [shell(f"j{i}", after=[f"j{d}" for d in sorted(ds)]) for i, ds in enumerate(deps)]}
    if _has_cycle(deps):
        error = refused(doc)
        chain = [int(name[1:]) for name in error.detail.rsplit(": ", 1)[1].split(" -> ")]
        assert chain[0] == chain[-1] and len(chain) >= 3
        assert all(earlier in deps[later] for earlier, later in itertools.pairwise(chain))
    else:
        order = parse(doc).order
        assert sorted(order) == list(range(len(deps)))
        place = {job: k for k, job in enumerate(order)}
        assert all(place[d] < place[i] for i, ds in enumerate(deps) for d in ds)
