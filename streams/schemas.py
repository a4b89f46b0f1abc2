"""The JSON Schemas in schemas/ are the single source of truth for every topic's values."""
from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Callable

import fastjsonschema
import orjson

SCHEMA_FILES = {
    "interaction": "interaction.v1.json",
    "item": "item.v1.json",
    "recommendation": "recommendation.v1.json",
    "dead-letter": "dead-letter.v1.json",
    "forget-user": "forget-user.v1.json",
    "user-control": "user-control.v1.json",
}


def schema_dir() -> Path:
    import reco_schemas  # schemas/ in a checkout, packaged as reco_schemas in a wheel

    return Path(reco_schemas.__file__).resolve().parent


@cache
def load_schema(name: str) -> dict:
    return orjson.loads((schema_dir() / SCHEMA_FILES[name]).read_bytes())


@cache
def validator(name: str) -> Callable[[object], object]:
    """A compiled validator; raises fastjsonschema.JsonSchemaValueException on bad input."""
    return fastjsonschema.compile(load_schema(name))
