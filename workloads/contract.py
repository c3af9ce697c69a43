"""The operator ↔ workload contract, stated once (torch-free; both sides import it).

Environment variable names the operator sets and the workloads read, exit codes with a
meaning for the reconciler, the labels on every child, the resource plurals and the
default ports. Change a name here and both sides follow.
"""

from __future__ import annotations

API_GROUP = "codekiln.dev"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

# ---------------------------------------------------------------- kinds and plurals
KIND_PLURALS: dict[str, str] = {
    "DataPipeline": "datapipelines", "PretrainRun": "pretrainruns", "RLRun": "rlruns", "SandboxPool": "sandboxpools",
}
BUILTIN_PLURALS: dict[str, str] = {
    "ConfigMap": "configmaps", "Service": "services", "ServiceAccount": "serviceaccounts", "Pod": "pods",
    "Event": "events", "Job": "jobs", "Deployment": "deployments", "NetworkPolicy": "networkpolicies",
    "Role": "roles", "RoleBinding": "rolebindings", "PodGroup": "podgroups",
}
PLURALS: dict[str, str] = {**BUILTIN_PLURALS, **KIND_PLURALS}

# ---------------------------------------------------------------- environment (operator -> workload)
ENV_PREFIX = "CODEKILN_"  # users may not set names with this prefix
ENV_RESOURCE_KIND = "CODEKILN_RESOURCE_KIND"
ENV_RESOURCE_PLURAL = "CODEKILN_RESOURCE_PLURAL"
ENV_RESOURCE_NAME = "CODEKILN_RESOURCE_NAME"
ENV_RESOURCE_NAMESPACE = "CODEKILN_RESOURCE_NAMESPACE"
ENV_RESOURCE_API_VERSION = "CODEKILN_RESOURCE_API_VERSION"
ENV_PROGRESS_BACKEND = "CODEKILN_PROGRESS"
ENV_METRICS_PORT = "CODEKILN_METRICS_PORT"
ENV_STAGE = "CODEKILN_STAGE"
ENV_ATTEMPT = "CODEKILN_ATTEMPT"
ENV_SANDBOX_URL = "CODEKILN_SANDBOX_URL"
ENV_DATA_PROCESSES = "CODEKILN_DATA_PROCESSES"
ENV_JOB_COMPLETION_INDEX = "JOB_COMPLETION_INDEX"  # set by Kubernetes for Indexed Jobs
# torchrun rendezvous (PET_* are torchrun's own env forms of its flags)
TORCHRUN_ENV = ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")
DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
RESERVED_ENV_NAMES = frozenset(TORCHRUN_ENV + DISTRIBUTED_ENV)

# ---------------------------------------------------------------- exit codes (workload -> operator)
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2  # bad configuration / input: retrying cannot help (the operator fails the shard or gang at once)
EXIT_SANDBOX_UNAVAILABLE = 3  # the sandbox cannot isolate runs here (its pod stays unready)
NON_RETRIABLE_EXIT_CODE = EXIT_INVALID

# ---------------------------------------------------------------- labels
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "codekiln"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_KIND = f"{API_GROUP}/kind"
LABEL_NAME = f"{API_GROUP}/name"
LABEL_STAGE = f"{API_GROUP}/stage"
LABEL_ATTEMPT = f"{API_GROUP}/attempt"

# ---------------------------------------------------------------- ports
DEFAULT_MASTER_PORT = 29500  # torchrun rendezvous
DEFAULT_SANDBOX_PORT = 8080
WORKLOAD_METRICS_PORT = 9400
OPERATOR_METRICS_PORT = 9090
OPERATOR_LIVENESS_PORT = 8080
