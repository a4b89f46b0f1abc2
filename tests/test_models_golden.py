"""The golden hash: every list the engine publishes for a fixed slice of the shared Yoochoose
sample, and the state it checkpoints, hash to a known value. Kernels are plain sequential loops
(docs/decisions/0017), so the value is the same on every CPU; a change of output is therefore
always a deliberate one: check `reco evaluate` figures, then update GOLDEN here."""
from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from online_models.evaluation.baselines import EngineSubject
from online_models.evaluation.datasets import load_events
from online_models.events import Interaction

YOOCHOOSE = Path(__file__).resolve().parents[2] / "shared" / "data" / "yoochoose-sample" / "clicks.tsv"
EVENTS = 3000
GOLDEN = "9e4b940cc036c18a"


@pytest.mark.skipif(not YOOCHOOSE.exists(), reason="shared data not mounted")
def test_lists_and_state_of_a_fixed_yoochoose_slice_hash_to_the_golden_value():
    subject = EngineSubject()
    engine, digest = subject.engine, hashlib.sha256()
    try:
        for n, e in enumerate(load_events(YOOCHOOSE)[:EVENTS], 1):
            digest.update(orjson.dumps(engine.publish(e["user_id"]).to_dict()))
            engine.learn(Interaction.from_dict(e))
            if n % 1000 == 0:
                digest.update(repr(sorted(engine.checkpoint(n).items())).encode())
    finally:
        subject.close()
    assert digest.hexdigest()[:16] == GOLDEN, "the engine's output changed: if deliberate, update GOLDEN"
