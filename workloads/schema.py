"""Base class for every workload config model (torch-free, imported by the operator)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ConfigModel(BaseModel):
    """A config model: camelCase in YAML, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    def to_wire(self) -> dict:
        """The JSON-ready camelCase form (as it appears in a resource spec)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
