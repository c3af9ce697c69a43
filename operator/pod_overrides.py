"""``spec.podTemplateOverrides``: per-role pod settings, in the style of Kubeflow Trainer v2 / JobSet.

Each kind has one role: PretrainRun and RLRun pods are ``trainer``, DataPipeline shard pods are
``dataShard``, SandboxPool pods are ``sandbox``. An override (``targets`` empty = every role of the
kind) adds Secrets and ConfigMaps as env (``valueFrom``, ``envFrom``), volumes and mounts, image
pull secrets, node selection, tolerations, affinity, a priority class, a ServiceAccount, pod and
container security contexts, and pod labels/annotations. Overrides apply in order, later wins.

Validation keeps what codekiln relies on: reserved env names (the torchrun rendezvous,
``CODEKILN_*``), its volume names and mount paths, its selector labels. The sandbox's isolation
(non-root, no privilege escalation, no added capabilities, seccomp, read-only root, no token, no
host paths) cannot be weakened unless the override sets ``allowUnsafeSandboxSettings: true``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from codekiln.workloads import contract
from codekiln.workloads.schema import ConfigModel, problems

Role = Literal["trainer", "dataShard", "sandbox"]
ROLES: dict[str, tuple[str, ...]] = {"PretrainRun": ("trainer",), "RLRun": ("trainer",),
                                     "DataPipeline": ("dataShard",), "SandboxPool": ("sandbox",)}
SPEC_ROLES = {"PretrainRunSpec": ("trainer",), "RLRunSpec": ("trainer",), "DataPipelineSpec": ("dataShard",),
              "SandboxPoolSpec": ("sandbox",)}
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
# The codekiln volumes and mount paths pods already have.
RESERVED_VOLUMES = ("codekiln-config", "codekiln-storage", "tmp")
RESERVED_MOUNTS = ("/etc/codekiln", "/tmp")
RESERVED_LABEL_PREFIXES = ("codekiln.dev/", "app.kubernetes.io/managed-by", "app.kubernetes.io/component",
                           "batch.kubernetes.io/", "controller-uid", "job-name")
WORKLOAD_UID = 10001  # the images' user; fsGroup default when storage is mounted


def _reserved_env(name: str) -> str:
    if name in contract.RESERVED_ENV_NAMES or name.startswith(contract.ENV_PREFIX):
        raise ValueError(f"'{name}' is reserved: codekiln sets it (torchrun rendezvous, {contract.ENV_PREFIX}*)")
    return name


class KeySelector(ConfigModel):
    """A key of a Secret or ConfigMap."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253, description="Object name.")
    key: str = Field(min_length=1, description="Key in its data.")
    optional: bool | None = Field(default=None, description="Start even if the key is missing.")


class FieldSelector(ConfigModel):
    field_path: str = Field(min_length=1, description="e.g. metadata.name, status.podIP.")
    api_version: str | None = None


class ResourceFieldSelector(ConfigModel):
    resource: str = Field(min_length=1, description="e.g. limits.memory.")
    container_name: str | None = None
    divisor: str | None = None


class EnvVarSource(ConfigModel):
    """Exactly one source, as in a Kubernetes container's ``env[].valueFrom``."""

    secret_key_ref: KeySelector | None = None
    config_map_key_ref: KeySelector | None = None
    field_ref: FieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvVarSource:
        if sum(v is not None for v in (self.secret_key_ref, self.config_map_key_ref, self.field_ref,
                                       self.resource_field_ref)) != 1:
            raise ValueError("set exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef")
        return self


class EnvVar(ConfigModel):
    """``value`` or ``valueFrom`` (a Secret key, a ConfigMap key, a pod field, a resource)."""

    name: str = Field(pattern=ENV_NAME, description="Variable name (codekiln's own names are reserved).")
    value: str | None = None
    value_from: EnvVarSource | None = None

    _name = field_validator("name")(_reserved_env)

    @model_validator(mode="after")
    def _value_or_source(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError("set value or valueFrom, not both")
        return self


class ObjectRef(ConfigModel):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    optional: bool | None = None


class EnvFromSource(ConfigModel):
    """All keys of a Secret or ConfigMap as env (explicit ``env`` and codekiln's own names win)."""

    prefix: str | None = Field(default=None, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    secret_ref: ObjectRef | None = None
    config_map_ref: ObjectRef | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvFromSource:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("set exactly one of secretRef, configMapRef")
        if self.prefix and self.prefix.startswith(contract.ENV_PREFIX):
            raise ValueError(f"prefix '{self.prefix}' is reserved ({contract.ENV_PREFIX}*)")
        return self


class Volume(ConfigModel):
    """A pod volume: ``name`` plus one Kubernetes volume source (persistentVolumeClaim, secret, configMap, …)."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=DNS_LABEL, max_length=63, description="Volume name.")

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        sources = [key for key in (self.model_extra or {})]
        if len(sources) != 1 or not isinstance((self.model_extra or {})[sources[0]], dict):
            raise ValueError(f"volume '{self.name}': give exactly one volume source object "
                             "(e.g. persistentVolumeClaim: {claimName: data})")
        if self.name in RESERVED_VOLUMES:
            raise ValueError(f"volume name '{self.name}' is used by codekiln")
        return self

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, **(self.model_extra or {})}


class VolumeMount(ConfigModel):
    name: str = Field(pattern=DNS_LABEL, max_length=63, description="A volume of this override or spec.")
    mount_path: str = Field(pattern=r"^/", description="Absolute path in the container.")
    read_only: bool | None = None
    sub_path: str | None = None

    @field_validator("mount_path")
    @classmethod
    def _not_ours(cls, path: str) -> str:
        if any(path.rstrip("/") == p or path.startswith(p + "/") for p in RESERVED_MOUNTS):
            raise ValueError(f"'{path}' is used by codekiln ({', '.join(RESERVED_MOUNTS)})")
        return path


class LocalObjectReference(ConfigModel):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)


class Toleration(ConfigModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class SeccompProfile(ConfigModel):
    type: Literal["RuntimeDefault", "Localhost", "Unconfined"]
    localhost_profile: str | None = None


class Capabilities(ConfigModel):
    add: list[str] = Field(default_factory=list)
    drop: list[str] = Field(default_factory=list)


class PodSecurityContext(ConfigModel):
    """Pod-level security settings (a subset of Kubernetes' PodSecurityContext)."""

    run_as_user: int | None = Field(default=None, ge=0)
    run_as_group: int | None = Field(default=None, ge=0)
    run_as_non_root: bool | None = None
    fs_group: int | None = Field(default=None, ge=0)
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] | None = None
    supplemental_groups: list[int] = Field(default_factory=list)
    seccomp_profile: SeccompProfile | None = None


class ContainerSecurityContext(ConfigModel):
    """Container-level security settings (a subset of Kubernetes' SecurityContext)."""

    run_as_user: int | None = Field(default=None, ge=0)
    run_as_group: int | None = Field(default=None, ge=0)
    run_as_non_root: bool | None = None
    allow_privilege_escalation: bool | None = None
    privileged: bool | None = None
    read_only_root_filesystem: bool | None = None
    capabilities: Capabilities | None = None
    seccomp_profile: SeccompProfile | None = None


class PodMetadata(ConfigModel):
    labels: dict[str, str] = Field(default_factory=dict, description="Extra pod labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra pod annotations.")

    @field_validator("labels")
    @classmethod
    def _not_selector_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if key.startswith(RESERVED_LABEL_PREFIXES):
                raise ValueError(f"label '{key}' is set by codekiln or Kubernetes (selectors depend on it)")
        return labels


class PodSpecOverride(ConfigModel):
    """What an override sets on the pod (and its main container)."""

    service_account_name: str | None = Field(default=None, pattern=DNS_LABEL)
    node_selector: dict[str, str] = Field(default_factory=dict)
    affinity: dict[str, Any] | None = Field(default=None, description="A Kubernetes Affinity.")
    tolerations: list[Toleration] = Field(default_factory=list)
    priority_class_name: str | None = Field(default=None, pattern=DNS_LABEL)
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    volumes: list[Volume] = Field(default_factory=list)
    security_context: PodSecurityContext | None = Field(default=None, description="Pod securityContext (merged).")
    env: list[EnvVar] = Field(default_factory=list, description="Main container env (value or valueFrom).")
    env_from: list[EnvFromSource] = Field(default_factory=list, description="Main container envFrom.")
    volume_mounts: list[VolumeMount] = Field(default_factory=list, description="Main container mounts.")
    container_security_context: ContainerSecurityContext | None = Field(
        default=None, description="Main container securityContext (merged over codekiln's)."
    )


class PodTemplateOverride(ConfigModel):
    """Pod settings for some roles of this resource (Kubeflow Trainer v2 ``podTemplateOverrides``)."""

    targets: list[Role] = Field(default_factory=list, description="Roles (trainer, dataShard, sandbox); "
                                "empty: every role of this kind.")
    metadata: PodMetadata = Field(default_factory=PodMetadata)
    spec: PodSpecOverride = Field(default_factory=PodSpecOverride)
    allow_unsafe_sandbox_settings: bool = Field(
        default=False, description="Explicit opt-in to weaken the sandbox pods' isolation (root, privileges, "
        "capabilities, Unconfined seccomp, writable root, ServiceAccount token, hostPath).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> PodTemplateOverride:
        errors: list[tuple[str, str]] = []
        volumes = {v.name for v in self.spec.volumes}
        for i, mount in enumerate(self.spec.volume_mounts):
            if mount.name not in volumes and mount.name != "codekiln-storage":
                errors.append((f"spec.volumeMounts[{i}].name", f"no volume '{mount.name}' in spec.volumes"))
        seen: set[str] = set()
        for i, volume in enumerate(self.spec.volumes):
            if volume.name in seen:
                errors.append((f"spec.volumes[{i}].name", f"duplicate volume '{volume.name}'"))
            seen.add(volume.name)
        if errors:
            raise problems(errors)
        return self

    def weakens_sandbox(self) -> list[tuple[str, str]]:
        """(field, why) for every setting that would weaken the sandbox's isolation."""
        out: list[tuple[str, str]] = []
        pod, ctr = self.spec.security_context, self.spec.container_security_context
        for where, sc in (("spec.securityContext", pod), ("spec.containerSecurityContext", ctr)):
            if sc is None:
                continue
            if sc.run_as_user == 0:
                out.append((f"{where}.runAsUser", "runs the sandbox as root"))
            if sc.run_as_non_root is False:
                out.append((f"{where}.runAsNonRoot", "allows root in the sandbox"))
            if sc.seccomp_profile is not None and sc.seccomp_profile.type == "Unconfined":
                out.append((f"{where}.seccompProfile.type", "turns seccomp off"))
        if ctr is not None:
            if ctr.privileged:
                out.append(("spec.containerSecurityContext.privileged", "makes the sandbox privileged"))
            if ctr.allow_privilege_escalation:
                out.append(("spec.containerSecurityContext.allowPrivilegeEscalation", "allows setuid escalation"))
            if ctr.read_only_root_filesystem is False:
                out.append(("spec.containerSecurityContext.readOnlyRootFilesystem", "makes the root writable"))
            if ctr.capabilities is not None and ctr.capabilities.add:
                out.append(("spec.containerSecurityContext.capabilities.add", "adds Linux capabilities"))
        if self.spec.service_account_name:
            out.append(("spec.serviceAccountName", "mounts a ServiceAccount token user code could read"))
        for i, volume in enumerate(self.spec.volumes):
            if "hostPath" in (volume.model_extra or {}):
                out.append((f"spec.volumes[{i}].hostPath", "exposes the node's files to user code"))
        return out


def check_overrides(overrides: list[PodTemplateOverride], roles: tuple[str, ...]) -> list[tuple[str, str]]:
    """Problems (relative field path, message) of a spec's overrides for a kind with ``roles``."""
    out: list[tuple[str, str]] = []
    for i, override in enumerate(overrides):
        base = f"podTemplateOverrides[{i}]"
        for j, target in enumerate(override.targets):
            if target not in roles:
                out.append((f"{base}.targets[{j}]", f"'{target}' is not a role of this kind (roles: "
                            f"{', '.join(roles)})"))
        applies = not override.targets or any(t in roles for t in override.targets)
        if applies and "sandbox" in roles and not override.allow_unsafe_sandbox_settings:
            for field, why in override.weakens_sandbox():
                out.append((f"{base}.{field}", f"{why}; set {base}.allowUnsafeSandboxSettings: true to allow it"))
    return out


# ---------------------------------------------------------------- rendering
def _merge_env(env: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {item["name"] for item in extra}
    return [item for item in env if item["name"] not in names] + extra


def applicable(overrides: list[PodTemplateOverride], role: str) -> list[PodTemplateOverride]:
    return [o for o in overrides if not o.targets or role in o.targets]


def apply_overrides(overrides: list[PodTemplateOverride], role: str, template_meta: dict[str, Any],
                    pod_spec: dict[str, Any]) -> None:
    """Apply the overrides that target ``role`` to a pod template (in place; the first container is the main one).

    Args:
        overrides: ``spec.podTemplateOverrides`` (already validated).
        role: trainer, dataShard or sandbox.
        template_meta: the pod template's metadata (labels/annotations are added).
        pod_spec: the pod spec built by codekiln.
    """
    container = pod_spec["containers"][0]
    for override in applicable(overrides, role):
        meta, spec = override.metadata, override.spec
        if meta.labels:
            template_meta["labels"] = {**meta.labels, **(template_meta.get("labels") or {})}
        if meta.annotations:
            template_meta["annotations"] = {**(template_meta.get("annotations") or {}), **meta.annotations}
        if spec.service_account_name:  # a named identity is meant to be used: its token is mounted
            pod_spec["serviceAccountName"] = spec.service_account_name
            if role == "sandbox":
                pod_spec["automountServiceAccountToken"] = True
            else:
                pod_spec.pop("automountServiceAccountToken", None)
        if spec.node_selector:
            pod_spec["nodeSelector"] = {**(pod_spec.get("nodeSelector") or {}), **spec.node_selector}
        if spec.affinity is not None:
            pod_spec["affinity"] = spec.affinity
        if spec.tolerations:
            pod_spec["tolerations"] = [*(pod_spec.get("tolerations") or []), *(t.to_wire() for t in spec.tolerations)]
        if spec.priority_class_name:
            pod_spec["priorityClassName"] = spec.priority_class_name
        if spec.image_pull_secrets:
            pod_spec["imagePullSecrets"] = [*(pod_spec.get("imagePullSecrets") or []),
                                            *(s.to_wire() for s in spec.image_pull_secrets)]
        if spec.volumes:
            pod_spec["volumes"] = [*(pod_spec.get("volumes") or []), *(v.to_wire() for v in spec.volumes)]
        if spec.security_context is not None:
            pod_spec["securityContext"] = _deep_merge(pod_spec.get("securityContext") or {},
                                                      spec.security_context.to_wire())
        if spec.env:
            container["env"] = _merge_env(container.get("env") or [], [e.to_wire() for e in spec.env])
        if spec.env_from:
            container["envFrom"] = [*(container.get("envFrom") or []), *(e.to_wire() for e in spec.env_from)]
        if spec.volume_mounts:
            container["volumeMounts"] = [*(container.get("volumeMounts") or []),
                                         *(m.to_wire() for m in spec.volume_mounts)]
        if spec.container_security_context is not None:
            container["securityContext"] = _deep_merge(container.get("securityContext") or {},
                                                       spec.container_security_context.to_wire())
    for key in ("supplementalGroups",):  # empty lists from the models are noise in the manifest
        if not (pod_spec.get("securityContext") or {}).get(key, True):
            pod_spec["securityContext"].pop(key)
    caps = (container.get("securityContext") or {}).get("capabilities")
    if caps is not None:
        for key in ("add", "drop"):
            if key in caps and not caps[key]:
                caps.pop(key)


def storage_security_context(pod_spec: dict[str, Any]) -> None:
    """With a volume mounted, let the non-root workload user write it: ``fsGroup`` (kept if already set)."""
    context = pod_spec.setdefault("securityContext", {})
    context.setdefault("fsGroup", WORKLOAD_UID)
    context.setdefault("fsGroupChangePolicy", "OnRootMismatch")


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        elif value in ([], None):
            continue
        else:
            out[key] = value
    return out
