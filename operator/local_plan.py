"""Order several resources for ``codekiln run --local`` the way the operator would run them.

``spec.after`` becomes the running order (a stable topological sort: file order wherever
``after`` does not decide); a run whose dependency failed or was skipped is skipped too.
SandboxPools serve until stopped, so with other runs they are left out (an RLRun starts its
own local sandbox server).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codekiln.operator.resources import Resource


@dataclass
class LocalPlan:
    order: list[Resource] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what is left out, and why


def _key(resource: Resource) -> tuple[str, str]:
    return resource.kind_name, resource.metadata.name


def plan_local_run(resources: list[Resource]) -> LocalPlan:
    """The order to run ``resources`` in; raises ``ValueError`` on a ``spec.after`` cycle or duplicate."""
    plan = LocalPlan()
    runs = list(resources)
    if len(runs) > 1:
        pools = [r for r in runs if r.kind_name == "SandboxPool"]
        runs = [r for r in runs if r.kind_name != "SandboxPool"]
        plan.notes += [f"SandboxPool {p.metadata.name!r}: not served in a multi-resource local run "
                       "(an RLRun starts its own local sandbox)" for p in pools]
    keys = [_key(r) for r in runs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"{dup[0]} {dup[1]!r} is given twice")
    present = set(keys)
    needs = {}
    for r in runs:
        deps = [(d.kind, d.name) for d in getattr(r.spec, "after", None) or []]
        for dep in deps:
            if dep not in present:
                plan.notes.append(f"{r.kind_name} {r.metadata.name!r}: spec.after {dep[0]} {dep[1]!r} is not part of "
                                  "this run; assuming it already ran here")
        needs[_key(r)] = [d for d in deps if d in present]
    done: set[tuple[str, str]] = set()
    remaining = list(runs)
    while remaining:
        ready = next((r for r in remaining if all(d in done for d in needs[_key(r)])), None)
        if ready is None:
            cycle = ", ".join(f"{k} {n!r}" for k, n in (_key(r) for r in remaining))
            raise ValueError(f"spec.after forms a cycle among: {cycle}")
        plan.order.append(ready)
        done.add(_key(ready))
        remaining.remove(ready)
    return plan


def blocked_by(resource: Resource, not_ok: set[tuple[str, str]]) -> tuple[str, str] | None:
    """The first ``spec.after`` entry of ``resource`` that failed or was skipped in this run."""
    for dep in getattr(resource.spec, "after", None) or []:
        if (dep.kind, dep.name) in not_ok:
            return dep.kind, dep.name
    return None
