"""Progress reporting from workloads to their resource's ``status.progress``.

Workloads call ``progress_reporter().update(step=..., total_steps=..., loss=...)``.
Where the report goes is decided by the environment the operator (or the local
runner) sets; see the operator docs for the in-cluster mechanism.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROGRESS_FILE_ENV = "CODEKILN_PROGRESS_FILE"


@dataclass
class ProgressReporter:
    """Rate-limited progress sink. ``min_interval_s`` bounds how often it writes."""

    path: Path | None = None
    min_interval_s: float = 2.0
    state: dict[str, Any] = field(default_factory=dict)
    _last_write: float = 0.0
    _start: float = field(default_factory=time.monotonic)

    def update(self, *, force: bool = False, **fields: Any) -> None:
        """Merge ``fields`` (step, total_steps, stage, tokens, throughput, loss, reward, message)."""
        self.state.update({k: v for k, v in fields.items() if v is not None})
        step, total = self.state.get("step"), self.state.get("total_steps")
        if step is not None and total:
            self.state["percent"] = round(100.0 * step / total, 2)
            elapsed = time.monotonic() - self._start
            if step > 0:
                self.state["eta_seconds"] = round(elapsed / step * (total - step), 1)
        now = time.monotonic()
        if force or now - self._last_write >= self.min_interval_s:
            self._last_write = now
            self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        payload = {"updatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **_camel(self.state)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp") as tmp:
            json.dump(payload, tmp)
        os.replace(tmp.name, self.path)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)["state"]


def _camel(d: dict[str, Any]) -> dict[str, Any]:
    def conv(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(p.title() for p in rest)

    return {conv(k): v for k, v in d.items()}


_REPORTER: ProgressReporter | None = None


def progress_reporter() -> ProgressReporter:
    """The process-wide reporter configured from the environment."""
    global _REPORTER
    if _REPORTER is None:
        path = os.environ.get(PROGRESS_FILE_ENV)
        _REPORTER = ProgressReporter(path=Path(path) if path else None)
    return _REPORTER
