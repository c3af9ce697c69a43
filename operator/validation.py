"""One validation path for the CLI, the operator and local runs.

``validate_document`` turns a parsed YAML/JSON document into a resource model or a
list of one-line problems, each naming the field path (camelCase, as in the YAML).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from codekiln.operator.kustomize import KustomizeError, kustomization_file, render
from codekiln.operator.resources import RESOURCE_KINDS, Resource
from codekiln.operator.version import GROUP_VERSION
from codekiln.workloads.schema import error_lines


@dataclass
class ValidationResult:
    """A validated resource, or the problems that stopped it."""

    resource: Resource | None = None
    errors: list[str] = field(default_factory=list)
    source: str = ""  # e.g. "file.yaml#2" (document number, 1-based)

    @property
    def ok(self) -> bool:
        return not self.errors

    def wire(self) -> dict[str, Any]:
        """The validated resource with defaults applied, camelCase, without status."""
        assert self.resource is not None
        return self.resource.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"status"})


def validate_document(doc: Any) -> ValidationResult:
    """Validate one parsed document against its kind's model."""
    if not isinstance(doc, dict):
        problem = f"<document>: expected a mapping (a Kubernetes resource), got {type(doc).__name__}"
        return ValidationResult(errors=[problem])
    errors: list[str] = []
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version != GROUP_VERSION:
        errors.append(f"apiVersion: expected {GROUP_VERSION!r}, got {api_version!r}")
    if kind not in RESOURCE_KINDS:
        errors.append(f"kind: unknown kind {kind!r} (expected one of {', '.join(sorted(RESOURCE_KINDS))})")
    if errors:
        return ValidationResult(errors=errors)
    try:
        resource = RESOURCE_KINDS[kind].model_validate(doc)
    except ValidationError as exc:
        return ValidationResult(errors=error_lines(exc))
    problems = _cross_resource_problems(resource)
    if problems:
        return ValidationResult(errors=problems)
    return ValidationResult(resource=resource)


def _cross_resource_problems(resource: Resource) -> list[str]:
    """Rules that need more than one field's value (the resource's own name and kind)."""
    return [f"spec.after[{i}]: a {resource.kind_name} cannot wait for itself"
            for i, dep in enumerate(getattr(resource.spec, "after", None) or [])
            if dep.kind == resource.kind_name and dep.name == resource.metadata.name]


def related_problems(resource: Resource, others: dict[tuple[str, str], Resource]) -> list[str]:
    """Rules across resources: a PretrainRun against the DataPipelines in its ``spec.after``.

    Each training stage's seqLen must divide or be a multiple of the pipeline's pack seqLen, and a numeric
    ``model.vocabSize`` must cover the pipeline's trained tokenizer. The CLI runs this on the files it is
    given (``validate``/``run --local``), the operator on the dependencies it reads (a condition).

    Args:
        resource: the resource checked.
        others: the resources it may refer to, by (kind, name).
    """
    if resource.kind_name != "PretrainRun":
        return []
    training, found = resource.spec.training, []
    for i, dep in enumerate(resource.spec.after):
        pipeline = others.get((dep.kind, dep.name))
        if dep.kind != "DataPipeline" or pipeline is None:
            continue
        where = f"DataPipeline {dep.name!r} (spec.after[{i}])"
        for stage in pipeline.spec.pipeline.stages:
            for step in stage.steps:
                if step.type == "pack":
                    pack = step.params.seq_len
                    for k, st in enumerate(training.stages):
                        if st.seq_len % pack and pack % st.seq_len:
                            found.append(f"spec.training.stages[{k}].seqLen: {st.seq_len} neither divides nor is a "
                                         f"multiple of the pack seqLen {pack} of {where}, stage {stage.name!r}")
                if step.type == "train_tokenizer" and isinstance(training.model.vocab_size, int) \
                        and training.model.vocab_size < step.params.vocab_size and training.init_from is None:
                    found.append(f"spec.training.model.vocabSize: {training.model.vocab_size} is smaller than the "
                                 f"tokenizer {where} trains ({step.params.vocab_size}); use vocabSize: auto")
    return found


def check_related(results: list[ValidationResult]) -> None:
    """Add ``related_problems`` of every valid resource to its result (resources of the same files only)."""
    valid = {(r.resource.kind_name, r.resource.metadata.name): r.resource for r in results if r.ok}
    for result in results:
        if result.ok:
            result.errors += related_problems(result.resource, valid)


def iter_documents(text: str, source: str = "<input>") -> Iterator[tuple[str, Any]]:
    """Parse a multi-document YAML string; raise ``ValueError`` naming the line on bad YAML."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{source}:{where}: malformed YAML: {problem}") from None
    for index, doc in enumerate(docs, start=1):
        yield f"{source}#{index}", doc


def validate_paths(paths: list[str | Path]) -> list[ValidationResult]:
    """Validate files and folders.

    A folder with a ``kustomization.yaml`` is rendered (``operator/kustomize.py``); any other folder gives
    its ``*.yaml``/``*.yml`` files, sorted, then its sub-folders that hold a kustomization (overlays).
    """
    results: list[ValidationResult] = []
    for path in map(Path, paths):
        if path.is_dir() and kustomization_file(path) is not None:
            results.extend(validate_kustomization(path))
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            overlays = sorted(p for p in path.iterdir() if p.is_dir() and kustomization_file(p) is not None)
            if not files and not overlays:
                results.append(ValidationResult(errors=[f"{path}: no *.yaml files in this folder"], source=str(path)))
            for file in files:
                results.extend(validate_file(file))
            for overlay in overlays:
                results.extend(validate_kustomization(overlay))
        else:
            results.extend(validate_file(path))
    check_related(results)
    return results


def validate_kustomization(folder: Path) -> list[ValidationResult]:
    """Render a kustomization folder and validate each resource it produces."""
    source = str(kustomization_file(folder))
    try:
        documents = render(folder)
    except (KustomizeError, OSError, yaml.YAMLError) as exc:
        return [ValidationResult(errors=[str(exc)], source=source)]
    results = []
    for index, doc in enumerate(documents, start=1):
        result = validate_document(doc)
        result.source = f"{source}#{index}"
        results.append(result)
    return results


def validate_file(path: str | Path) -> list[ValidationResult]:
    """Validate every document of a YAML file. Malformed YAML gives a single failed result."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        return [ValidationResult(errors=[f"{path}: cannot read file: {exc.strerror}"], source=str(path))]
    try:
        documents = list(iter_documents(text, str(path)))
    except ValueError as exc:
        return [ValidationResult(errors=[str(exc)], source=str(path))]
    if not documents:
        return [ValidationResult(errors=[f"{path}: no documents found"], source=str(path))]
    results = []
    for source, doc in documents:
        result = validate_document(doc)
        result.source = source
        results.append(result)
    return results
