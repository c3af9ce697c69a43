"""The LLM API key: from an env var, or a Kubernetes Secret the operator injects under that env var."""

from __future__ import annotations

from codekiln.operator.builders.data import build_stage_job
from codekiln.operator.resources import DataPipeline
from codekiln.workloads.llm.config import secret_env_vars


def _pipeline(llm: dict, env: list | None = None) -> DataPipeline:
    return DataPipeline.model_validate({
        "apiVersion": "codekiln.dev/v1alpha1", "kind": "DataPipeline", "metadata": {"name": "synth", "uid": "u-1"},
        "spec": {"env": env or [], "pipeline": {"outputDir": "/data/out", "stages": [{
            "name": "s", "shards": 1, "steps": [
                {"readJsonl": {"paths": ["/data/in"]}}, {"responseGeneration": {"llm": llm}},
                {"llmJudgeFilter": {"llm": {**llm, "apiKeyEnv": "JUDGE_KEY"}}}]}]}},
    })


def test_secret_ref_becomes_value_from_in_the_stage_job():
    llm = {"baseUrl": "https://api.example/v1", "model": "m", "apiKeySecretRef": {"name": "llm-creds", "key": "token"}}
    job = build_stage_job(_pipeline(llm), 0)
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "llm-creds", "key": "token"}}} in env
    assert {"name": "JUDGE_KEY", "valueFrom": {"secretKeyRef": {"name": "llm-creds", "key": "token"}}} in env
    assert not any("llm-creds" in str(e.get("value", "")) for e in env)


def test_an_explicit_env_entry_wins_and_no_ref_adds_nothing():
    llm = {"baseUrl": "http://vllm:8000/v1", "apiKeySecretRef": {"name": "s", "key": "k"}}
    job = build_stage_job(_pipeline(llm, env=[{"name": "OPENAI_API_KEY", "value": "literal"}]), 0)
    env = [e for e in job["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "OPENAI_API_KEY"]
    assert env == [{"name": "OPENAI_API_KEY", "value": "literal"}]
    assert secret_env_vars({"llm": {"baseUrl": "x"}}) == []
