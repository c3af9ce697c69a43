"""Names and labels of the children a resource owns (deterministic, so reconciles are idempotent)."""

from __future__ import annotations

from codekiln.workloads import contract

LABEL_MANAGED_BY = contract.LABEL_MANAGED_BY
MANAGED_BY = contract.MANAGED_BY
LABEL_KIND = contract.LABEL_KIND
LABEL_NAME = contract.LABEL_NAME
LABEL_STAGE = contract.LABEL_STAGE
LABEL_ATTEMPT = contract.LABEL_ATTEMPT
LABEL_COMPONENT = contract.LABEL_COMPONENT
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

CONFIG_MOUNT = "/etc/codekiln"
CONFIG_KEY = "resource.json"
WORKLOAD_CONTAINER = "workload"
MAX_JOB_NAME = 52  # leaves room for "-<index>" pod hostnames within the 63-char DNS label limit


def dns1035(name: str) -> str:
    """Service names must start with a letter; resource names may start with a digit."""
    return name if name[:1].isalpha() else f"x{name}"


def config_map_name(name: str) -> str:
    return f"{name}-config"


def workload_service_account(name: str) -> str:
    """Per-resource ServiceAccount the workload pods run as (when the user sets none)."""
    return f"{name}-workload"


def progress_role_name(name: str) -> str:
    return f"{name}-progress"


def gang_job_name(name: str, attempt: int) -> str:
    """One Job per gang attempt: ``<name>-r<attempt>``; a restart is a new name, never a reuse."""
    return f"{name}-r{attempt}"


def gang_service_name(name: str) -> str:
    """Headless Service giving gang pods stable DNS (``<job>-<index>.<service>``)."""
    return dns1035(f"{name}-gang")


def stage_job_name(name: str, index: int, stage: str) -> str:
    """``<name>-<stage>`` when short enough, else ``<name>-s<index>``."""
    full = f"{name}-{stage}"
    return full if len(full) <= MAX_JOB_NAME else f"{name}-s{index}"


def sandbox_service_name(name: str) -> str:
    return dns1035(name)


def sandbox_url(pool: str, namespace: str, port: int) -> str:
    """The in-cluster URL of a SandboxPool's Service."""
    return f"http://{sandbox_service_name(pool)}.{namespace}.svc:{port}"


def owner_labels(kind: str, name: str) -> dict[str, str]:
    """Labels every child (and every pod of a child) carries; selects them back for the reconciler."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_KIND: kind, LABEL_NAME: name}


def label_selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
