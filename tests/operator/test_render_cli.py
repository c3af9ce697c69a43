"""`codekiln render -f FILE`: every manifest the operator would create, from the same builders, no cluster."""

from __future__ import annotations

from types import SimpleNamespace

import yaml
from operator_factories import document

from codekiln.operator.builders.children import render_all
from codekiln.operator.cli import main
from codekiln.operator.resources import RESOURCE_KINDS

SECRET_PVC_SCHEDULING = {
    "spec": {"env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}],
             "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "corpus"}}],
             "volumeMounts": [{"name": "data", "mountPath": "/corpus"}],
             "tolerations": [{"key": "gpu", "operator": "Exists"}], "nodeSelector": {"pool": "a"},
             "priorityClassName": "batch"}}


def render(tmp_path, capsys, docs, *args):
    """`codekiln render -f FILE ARGS` (the CLI's main, in this process); (exit code, stdout, stderr)."""
    path = tmp_path / "resources.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    code = main(["render", "-f", str(path), *args])
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def test_render_prints_every_child_with_secrets_volumes_and_scheduling(tmp_path, capsys):
    docs = []
    for kind in ("DataPipeline", "PretrainRun", "RLRun"):
        doc = document(kind, kind.lower(), uid=False, podTemplateOverrides=[SECRET_PVC_SCHEDULING])
        doc["metadata"].pop("namespace")
        docs.append(doc)
    pool = document("SandboxPool", "pool", uid=False, podTemplateOverrides=[
        {"spec": {k: v for k, v in SECRET_PVC_SCHEDULING["spec"].items() if k != "env"}}])
    docs.append(pool)
    docs[2]["spec"]["sandboxPoolRef"] = {"name": "pool"}
    done = render(tmp_path, capsys, docs, "-n", "team-a")
    assert done.returncode == 0, done.stderr
    manifests = list(yaml.safe_load_all(done.stdout))
    expected = sum(len(render_all(RESOURCE_KINDS[d["kind"]].model_validate(
        {**d, "metadata": {**d["metadata"], "uid": "u", "namespace": "team-a"}}))) for d in docs)
    assert len(manifests) == expected
    assert {m["metadata"]["namespace"] for m in manifests} == {"team-a"}
    pods = [m["spec"]["template"] for m in manifests if m["kind"] in ("Job", "Deployment")]
    assert len(pods) >= 4
    for template in pods:
        spec = template["spec"]
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "corpus"}} in spec["volumes"]
        assert spec["nodeSelector"] == {"pool": "a"} and spec["priorityClassName"] == "batch"
        assert {"key": "gpu", "operator": "Exists"} in spec["tolerations"]
    secret_env = [e for t in pods for e in t["spec"]["containers"][0]["env"] if e["name"] == "HF_TOKEN"]
    assert len(secret_env) == sum(m["kind"] == "Job" for m in manifests)
    assert secret_env[0]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    rl_job = next(m for m in manifests if m["kind"] == "Job" and m["metadata"]["name"] == "rlrun-r0")
    env = {e["name"]: e.get("value") for e in rl_job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CODEKILN_SANDBOX_URL"] == "http://pool.team-a.svc:8080"


def test_render_refuses_an_invalid_file_naming_the_field(tmp_path, capsys):
    doc = document("PretrainRun", "bad", uid=False, podTemplateOverrides=[
        {"spec": {"env": [{"name": "RANK", "value": "3"}]}}])
    done = render(tmp_path, capsys, [doc])
    assert done.returncode == 2 and "podTemplateOverrides[0].spec.env[0].name" in done.stderr and not done.stdout
