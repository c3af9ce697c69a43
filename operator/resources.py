"""The four custom resources (spec and status), apiVersion ``codekiln.dev/v1alpha1``.

These pydantic models are the single source of truth: CRDs are generated from them,
``codekiln validate`` and the operator validate with them, ``--local`` runs read them.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from codekiln.operator.pod_overrides import SPEC_ROLES, PodTemplateOverride, check_overrides
from codekiln.operator.version import GROUP_VERSION
from codekiln.workloads import contract
from codekiln.workloads.data.config import DataPipelineConfig
from codekiln.workloads.rl.config import RLConfig
from codekiln.workloads.sandbox.config import SandboxConfig
from codekiln.workloads.schema import ConfigModel, problems
from codekiln.workloads.train.config import TrainConfig

DEFAULT_IMAGE = "ghcr.io/codekiln/workload:0.1.0"
DEFAULT_SANDBOX_IMAGE = "ghcr.io/codekiln/sandbox:0.1.0"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Set by the operator for the torchrun rendezvous; users may not override them.
RESERVED_ENV_NAMES = contract.RESERVED_ENV_NAMES
RESERVED_ENV_PREFIX = contract.ENV_PREFIX
QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


# ---------------------------------------------------------------- shared pieces
class ObjectMeta(ConfigModel):
    """The parts of Kubernetes metadata codekiln reads; server-set fields pass through."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=NAME_PATTERN, max_length=40, description="Resource name (DNS label, ≤ 40 chars).")
    namespace: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=63)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class EnvVar(ConfigModel):
    """An environment variable for the workload container."""

    name: str = Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Variable name.")
    value: str = Field(default="", description="Variable value.")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIX):
            raise ValueError(f"'{name}' is reserved: codekiln sets it for the distributed launch")
        return name


class ResourceRequirements(ConfigModel):
    """Container compute resources, as in a Kubernetes container spec."""

    requests: dict[str, str] = Field(default_factory=dict, description="e.g. {cpu: '4', memory: 16Gi}.")
    limits: dict[str, str] = Field(default_factory=dict, description="e.g. {nvidia.com/gpu: '8'}.")

    @field_validator("requests", "limits", mode="before")
    @classmethod
    def _quantities(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        out = {}
        for key, value in values.items():
            text = str(value).strip()
            if text.startswith("-"):
                raise ValueError(f"{key}: quantity must not be negative, got {value!r}")
            if not QUANTITY.match(text):
                raise ValueError(f"{key}: {value!r} is not a Kubernetes quantity (e.g. 500m, 4, 16Gi)")
            out[key] = text
        return out


class Toleration(ConfigModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0)


class Scheduling(ConfigModel):
    """Where and how pods are scheduled."""

    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pods require.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Taints the pods tolerate.")
    priority_class_name: str | None = Field(default=None, description="PriorityClass of the pods.")
    scheduler_name: str | None = Field(default=None, description="e.g. `volcano` for gang scheduling.")
    queue_name: str | None = Field(default=None, description="Kueue LocalQueue (label kueue.x-k8s.io/queue-name).")
    gang_scheduling: bool = Field(default=False, description="Create a Volcano PodGroup (minMember = pods).")


class Storage(ConfigModel):
    """A PersistentVolumeClaim mounted into every pod (data, checkpoints)."""

    claim_name: str = Field(pattern=NAME_PATTERN, description="Existing PVC name.")
    mount_path: str = Field(default="/data", pattern=r"^/", description="Absolute mount path.")


class PodTemplateFields(ConfigModel):
    """Fields every kind has for its pods."""

    image: str = Field(default=DEFAULT_IMAGE, min_length=1, description="Container image.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="When the kubelet pulls the image."
    )
    env: list[EnvVar] = Field(default_factory=list, description="Extra environment (reserved names rejected).")
    scheduling: Scheduling = Field(default_factory=Scheduling, description="Node selection, queueing, gangs.")
    storage: Storage | None = Field(default=None, description="Shared volume for data and checkpoints.")
    service_account_name: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="ServiceAccount of the pods (default: the operator's)."
    )
    pod_template_overrides: list[PodTemplateOverride] = Field(
        default_factory=list, max_length=16,
        description="Per-role pod settings (Secrets as env, volumes, pull secrets, affinity, tolerations, "
        "security contexts, labels): roles trainer (PretrainRun, RLRun), dataShard (DataPipeline), sandbox.",
    )

    @model_validator(mode="after")
    def _pod_overrides(self) -> PodTemplateFields:
        found = check_overrides(self.pod_template_overrides, SPEC_ROLES.get(type(self).__name__, ()))
        if found:
            raise problems(found)
        return self


class Dependency(ConfigModel):
    """A run that must have Succeeded before this one starts (same namespace)."""

    kind: Literal["DataPipeline", "PretrainRun", "RLRun"] = Field(description="Kind of the run waited for.")
    name: str = Field(pattern=NAME_PATTERN, description="Its name.")


class RunFields(PodTemplateFields):
    """Fields of kinds that run to completion."""

    after: list[Dependency] = Field(
        default_factory=list, max_length=16,
        description="Start only after these runs have Succeeded (e.g. a PretrainRun after its DataPipeline); "
        "fail when one of them fails. codekiln run --local ignores it.",
    )

    suspend: bool = Field(default=False, description="Stop (delete pods) while true; resume when false (Kueue).")
    active_deadline_seconds: int | None = Field(default=None, ge=1, description="Fail after this many seconds.")
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete children this long after finishing."
    )


class GangFields(RunFields):
    """Fields of the distributed-training kinds (one pod per node; Kubeflow Trainer's numNodes/numProcPerNode)."""

    nodes: int = Field(default=1, ge=1, le=4096, description="Pods in the gang (one per node).")
    nproc_per_node: int = Field(default=1, ge=1, le=64, description="Processes (GPUs) per node (torchrun).")
    resources_per_node: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="Requests and limits of each node's workload container.",
    )
    max_restarts: int = Field(default=3, ge=0, le=1000, description="Whole-gang restarts before Failed.")
    master_port: int = Field(
        default=contract.DEFAULT_MASTER_PORT, ge=1024, le=65535, description="torchrun rendezvous port."
    )

    @property
    def container_resources(self) -> ResourceRequirements:
        """What each pod's workload container requests (per node)."""
        return self.resources_per_node


# ---------------------------------------------------------------- status
Phase = Literal["Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed"]


class Condition(ConfigModel):
    """A Kubernetes-style condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class Progress(ConfigModel):
    """Training / processing progress, pushed by the workload."""

    step: int | None = Field(default=None, description="Steps (or shards) done.")
    total_steps: int | None = None
    percent: float | None = Field(default=None, description="0-100.")
    stage: str | None = Field(default=None, description="Current stage.")
    tokens: int | None = None
    throughput: float | None = Field(default=None, description="Work per second.")
    throughput_unit: str | None = Field(default=None, description="e.g. tokens/s, docs/s.")
    loss: float | None = None
    reward: float | None = None
    eta_seconds: float | None = None
    message: str | None = None
    updated_at: str | None = None


class StatusBase(ConfigModel):
    model_config = ConfigDict(extra="allow")
    phase: Phase | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    progress: Progress | None = None
    start_time: str | None = None
    completion_time: str | None = None
    message: str | None = None


class StageStatus(ConfigModel):
    name: str
    phase: Phase | None = None
    shards: int = 0
    succeeded: int = 0
    failed: int = 0
    active: int = 0
    completed_indexes: str | None = Field(default=None, description="Shards done, e.g. '0-3,5' (Job format).")
    failed_indexes: str | None = Field(default=None, description="Shards failed for good.")
    start_time: str | None = None
    completion_time: str | None = None


class DataPipelineStatus(StatusBase):
    stages: list[StageStatus] = Field(default_factory=list)
    current_stage: str | None = None
    stages_done: int = Field(default=0, description="Stages succeeded (printer column Done).")
    stages_total: int = Field(default=0, description="Stages that run, dedup blocks expanded (printer column).")


class GangStatus(StatusBase):
    restarts: int = Field(default=0, description="Gang restarts after workload failures (counted against maxRestarts).")
    disruptions: int = Field(default=0, description="Gang restarts after preemption, eviction or drain (not counted).")
    active: int = 0
    succeeded: int = 0
    failed: int = 0


class RLRunStatus(GangStatus):
    sandbox_url: str | None = None


class SandboxPoolStatus(StatusBase):
    replicas: int = 0
    ready_replicas: int = 0
    selector: str | None = None
    replaced_pods: int = Field(default=0, description="Pods deleted for staying unready too long.")


# ---------------------------------------------------------------- specs
class DataPipelineSpec(RunFields):
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="Requests and limits of each shard's container."
    )
    parallelism: int | None = Field(default=None, ge=1, description="Shards run at once per stage (default: all).")
    backoff_limit_per_index: int = Field(default=3, ge=0, le=100, description="Retries of one failed shard.")
    pipeline: DataPipelineConfig = Field(description="What to curate (stages of steps).")

    @property
    def container_resources(self) -> ResourceRequirements:
        return self.resources


class PretrainRunSpec(GangFields):
    training: TrainConfig = Field(description="Model, data, stages, optimizer, checkpoints.")


class ObjectRef(ConfigModel):
    name: str = Field(pattern=NAME_PATTERN, description="Name in the same namespace.")


class RLRunSpec(GangFields):
    sandbox_pool_ref: ObjectRef | None = Field(default=None, description="SandboxPool that scores rollouts.")
    rl: RLConfig = Field(description="Algorithm, model, tasks, rewards.")


class SandboxPoolSpec(PodTemplateFields):
    image: str = Field(default=DEFAULT_SANDBOX_IMAGE, min_length=1, description="Sandbox server image.")
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="Requests and limits of each sandbox server."
    )
    replicas: int = Field(default=2, ge=0, le=10000, description="Warm sandbox servers.")
    runtime_class_name: str | None = Field(default=None, description="e.g. gvisor or kata for VM-grade isolation.")
    seccomp_localhost_profile: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._/-]+$",
        description="Localhost seccomp profile (relative to the kubelet's seccomp dir) used instead of "
        "RuntimeDefault; it must allow unshare/clone of namespaces, which per-run isolation needs.",
    )
    unready_replace_after_seconds: int | None = Field(
        default=600, ge=30, description="Delete a running sandbox pod unready this long (the Deployment "
        "replaces it); null never replaces."
    )
    host_users: bool | None = Field(
        default=None, description="false runs the pods in their own user namespace (Kubernetes ≥ 1.30)."
    )
    proc_mount: Literal["Default", "Unmasked"] | None = Field(
        default=None, description="Unmasked lets bubblewrap mount a fresh /proc for each run's pid namespace "
        "(needs hostUsers: false and the ProcMountType feature)."
    )
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="Server settings.")

    @property
    def container_resources(self) -> ResourceRequirements:
        return self.resources

    @field_validator("proc_mount")
    @classmethod
    def _unmasked_proc_needs_own_user_namespace(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value == "Unmasked" and info.data.get("host_users") is not False:
            raise ValueError("Unmasked requires hostUsers: false (Kubernetes rejects it otherwise)")
        return value


# ---------------------------------------------------------------- resources
class Resource(ConfigModel):
    """Common envelope of a codekiln custom resource."""

    kind_name: ClassVar[str]
    plural: ClassVar[str]
    short_names: ClassVar[list[str]]
    api_version: Literal["codekiln.dev/v1alpha1"] = Field(alias="apiVersion")
    metadata: ObjectMeta


class DataPipeline(Resource):
    kind_name: ClassVar[str] = "DataPipeline"
    plural: ClassVar[str] = "datapipelines"
    short_names: ClassVar[list[str]] = ["dp", "dpipe"]
    kind: Literal["DataPipeline"]
    spec: DataPipelineSpec
    status: DataPipelineStatus | None = None


class PretrainRun(Resource):
    kind_name: ClassVar[str] = "PretrainRun"
    plural: ClassVar[str] = "pretrainruns"
    short_names: ClassVar[list[str]] = ["ptr", "pretrain"]
    kind: Literal["PretrainRun"]
    spec: PretrainRunSpec
    status: GangStatus | None = None


class RLRun(Resource):
    kind_name: ClassVar[str] = "RLRun"
    plural: ClassVar[str] = "rlruns"
    short_names: ClassVar[list[str]] = ["rlr"]
    kind: Literal["RLRun"]
    spec: RLRunSpec
    status: RLRunStatus | None = None


class SandboxPool(Resource):
    kind_name: ClassVar[str] = "SandboxPool"
    plural: ClassVar[str] = "sandboxpools"
    short_names: ClassVar[list[str]] = ["sbp", "sandbox"]
    kind: Literal["SandboxPool"]
    spec: SandboxPoolSpec
    status: SandboxPoolStatus | None = None


RESOURCE_KINDS: dict[str, type[Resource]] = {
    cls.kind_name: cls for cls in (DataPipeline, PretrainRun, RLRun, SandboxPool)
}
assert GROUP_VERSION == "codekiln.dev/v1alpha1"
