"""Prequential (test-then-train) evaluation: for each event, score the list the user would
have been shown just before it, then learn from it. Runs the same engine code as live traffic.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

import numpy as np

from .catalog import Catalog
from .config import EngineConfig
from .events import NEGATIVE_TYPES
from .rules import category_diversity

DIVERSITY_SAMPLE = 10  # intra-list diversity is measured on every 10th list


class Subject(Protocol):
    """Anything that can be evaluated: the engine, a baseline."""
    def recommend_ids(self, user_id: str, k: int) -> list[str]: ...
    def learn_event(self, event: dict) -> None: ...


@dataclass
class Report:
    ks: tuple[int, ...]
    targets: int = 0
    hits: dict[int, int] = field(default_factory=dict)
    rr: dict[int, float] = field(default_factory=dict)
    ndcg: dict[int, float] = field(default_factory=dict)
    recommended: set[str] = field(default_factory=set)
    items_seen: set[str] = field(default_factory=set)
    ild_sum: float = 0.0
    ild_n: int = 0
    sampled_lists: list[list[str]] = field(default_factory=list)
    events: int = 0
    seconds: float = 0.0

    def observe(self, ranked: list[str], target: str, diversity: float | None) -> None:
        self.targets += 1
        self.recommended.update(ranked)
        if diversity is not None:
            self.ild_sum += diversity
            self.ild_n += 1
        try:
            pos = ranked.index(target)
        except ValueError:
            return
        for k in self.ks:
            if pos < k:
                self.hits[k] = self.hits.get(k, 0) + 1
                self.rr[k] = self.rr.get(k, 0.0) + 1.0 / (pos + 1)
                self.ndcg[k] = self.ndcg.get(k, 0.0) + 1.0 / math.log2(pos + 2)

    def as_dict(self) -> dict:
        n = max(self.targets, 1)
        out: dict = {"targets": self.targets, "events": self.events}
        for k in self.ks:
            out[f"hr@{k}"] = round(self.hits.get(k, 0) / n, 4)
            out[f"mrr@{k}"] = round(self.rr.get(k, 0.0) / n, 4)
            out[f"ndcg@{k}"] = round(self.ndcg.get(k, 0.0) / n, 4)
        out["coverage"] = round(len(self.recommended & self.items_seen) / max(len(self.items_seen), 1), 4)
        out["intra_list_diversity"] = round(self.ild_sum / self.ild_n, 4) if self.ild_n else None
        out["events_per_s"] = round(self.events / self.seconds) if self.seconds else None
        return out


def prequential(subject: Subject, events: Iterable[dict], ks: tuple[int, ...] = (10, 20),
                diversity: Callable[[list[str]], float | None] | None = None,
                progress: Callable[[int], None] | None = None) -> Report:
    """Every event except skip/dislike is a target: the list is taken just before it, then the
    subject learns it. Every DIVERSITY_SAMPLE-th list is kept for embedding diversity."""
    report = Report(ks=ks)
    kmax = max(ks)
    started = time.perf_counter()
    negatives = NEGATIVE_TYPES
    for n, event in enumerate(events, 1):
        if event["type"] not in negatives:
            ranked = subject.recommend_ids(event["user_id"], kmax)
            sample = report.targets % DIVERSITY_SAMPLE == 0
            report.observe(ranked, event["item_id"], diversity(ranked) if diversity and sample else None)
            if sample:
                report.sampled_lists.append(ranked)
            report.items_seen.add(event["item_id"])
        subject.learn_event(event)
        if progress and n % 1000 == 0:
            progress(1000)
        report.events = n
    report.seconds = time.perf_counter() - started
    return report


def embedding_diversity(lists: list[list[str]], index: dict[str, int], vectors: np.ndarray) -> float | None:
    """Mean pairwise cosine distance of listed items under one referee embedding (the full
    engine's MF item vectors), so every subject is judged by the same yardstick."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    total, n = 0.0, 0
    for items in lists:
        rows = [index[i] for i in items if i in index]
        m = len(rows)
        if m < 2:
            continue
        u = unit[rows]
        sim = (u.sum(axis=0) @ u.sum(axis=0) - m) / (m * (m - 1))  # mean off-diagonal cosine
        total += 1.0 - float(sim)
        n += 1
    return round(total / n, 4) if n else None


def evaluate(events: list[dict], ks: tuple[int, ...] = (10, 20), config: EngineConfig | None = None,
             catalog_records: list[dict] | None = None, baselines: tuple[str, ...] = ("trending", "covisit", "mf", "river_biased_mf"),
             progress: Callable[[str, int], Callable[[int], None]] | None = None) -> dict:
    """`reco evaluate` semantics: the full engine and every baseline over the same events.

    `progress(name, total)` may return a per-1000-events callback (a progress bar)."""
    from .baselines import EngineSubject, RiverBiasedMF, baseline_config

    config = config or EngineConfig()

    def catalog() -> Catalog:
        cat = Catalog()
        for record in catalog_records or ():
            cat.upsert(record)
        return cat

    def run(name: str, subject) -> Report:
        cat_div = (lambda items: category_diversity(items, subject.engine.catalog)) \
            if catalog_records and hasattr(subject, "engine") else None
        tick = progress(name, len(events)) if progress else None
        return prequential(subject, events, ks, cat_div, tick)

    reports: dict[str, Report] = {}
    subjects = {"engine": lambda: EngineSubject(config, catalog())}
    for name in baselines:
        if name == "river_biased_mf":
            subjects[name] = RiverBiasedMF
        else:
            subjects[name] = lambda name=name: EngineSubject(baseline_config(config, name), catalog())
    closers = []
    mf = None
    for name, make in subjects.items():
        subject = make()
        reports[name] = run(name, subject)
        closers.append(subject)
        if name == "engine":
            mf = subject.engine.mf  # the referee embedding for intra-list diversity
    out: dict = {"baselines": {}}
    for name, report in reports.items():
        d = report.as_dict()
        d["category_diversity"] = d.pop("intra_list_diversity")
        d["intra_list_diversity"] = embedding_diversity(report.sampled_lists, mf.index, mf.vectors[:len(mf.ids)]) \
            if mf is not None else None
        if name == "engine":
            out["engine"] = d
        else:
            out["baselines"][name] = d
    for subject in closers:
        subject.close()
    best = max((b["hr@20"] for b in out["baselines"].values() if "hr@20" in b), default=0.0)
    if "hr@20" in out["engine"]:
        out["engine"]["lift_over_best_baseline"] = round(out["engine"]["hr@20"] / best, 3) if best else None
    return out
