"""Prequential (test-then-train) evaluation: for each event, score the list the user would
have been shown just before it, then learn from it. Runs the same engine code as live traffic.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

import numpy as np

from online_models.catalog import Catalog
from online_models.config import EngineConfig
from online_models.events import NEGATIVE_TYPES
from online_models.ranking.rules import category_diversity

DIVERSITY_SAMPLE = 10  # intra-list diversity is measured on every 10th list
BASELINES = ("trending", "covisit", "mf", "river_biased_mf")  # what `evaluate` runs beside the engine


class Subject(Protocol):
    """Anything that can be evaluated: the engine, a baseline. A subject with an A/B split also
    has `variant_of(user_id) -> str | None` (None: no split), and gets figures per variant."""
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
    variants: dict[str, "Report"] = field(default_factory=dict)  # the same figures per A/B variant

    def variant(self, name: str) -> "Report":
        """The report of one variant's users (coverage is measured against every item seen)."""
        sub = self.variants.get(name)
        if sub is None:
            sub = self.variants[name] = Report(ks=self.ks, items_seen=self.items_seen)
        return sub

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

    def merge(self, other: "Report") -> None:
        """Add another partition's report: the figures of the whole deployment."""
        self.targets += other.targets
        for mine, theirs in ((self.hits, other.hits), (self.rr, other.rr), (self.ndcg, other.ndcg)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        self.recommended |= other.recommended
        self.items_seen |= other.items_seen
        self.ild_sum += other.ild_sum
        self.ild_n += other.ild_n
        self.events += other.events
        self.seconds += other.seconds  # events/s stays the rate of one process
        for name, sub in other.variants.items():
            self.variant(name).merge(sub)

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
        if self.variants:
            out["variants"] = {name: {k: v for k, v in sub.as_dict().items() if k not in ("events", "events_per_s")}
                               for name, sub in sorted(self.variants.items())}
        return out


def prequential(subject: Subject, events: Iterable[dict], ks: tuple[int, ...] = (10, 20),
                diversity: Callable[[list[str]], float | None] | None = None,
                progress: Callable[[int], None] | None = None, warm_up: int = 0) -> Report:
    """Every event except skip/dislike is a target: the list is taken just before it, then the
    subject learns it. Every DIVERSITY_SAMPLE-th list is kept for embedding diversity. The first
    `warm_up` events are only learned: no list is ranked for them, and they count neither as
    targets nor toward coverage (train on history, test on the rest)."""
    report = Report(ks=ks)
    kmax = max(ks)
    variant_of = getattr(subject, "variant_of", lambda user_id: None)
    started = time.perf_counter()
    negatives = NEGATIVE_TYPES
    for n, event in enumerate(events, 1):
        if n > warm_up and event["type"] not in negatives:
            ranked = subject.recommend_ids(event["user_id"], kmax)
            sample = report.targets % DIVERSITY_SAMPLE == 0
            variant = variant_of(event["user_id"])
            for r in (report,) if variant is None else (report, report.variant(variant)):
                r.observe(ranked, event["item_id"], diversity(ranked) if diversity and sample else None)
                if sample:
                    r.sampled_lists.append(ranked)
            report.items_seen.add(event["item_id"])
        subject.learn_event(event)
        if progress and n % 1000 == 0:
            progress(1000)
        report.events = n
    report.seconds = time.perf_counter() - started
    return report


def embedding_diversity(lists: list[list[str]], index: dict[str, int], vectors: np.ndarray) -> tuple[float, int]:
    """Sum and count of per-list mean pairwise cosine distances under one referee embedding
    (the full engine's MF item vectors), so every subject is judged by the same yardstick."""
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
    return total, n


def _make_subject(name: str, config: EngineConfig, catalog_records: list[dict] | None):
    from online_models.evaluation.baselines import EngineSubject, RiverBiasedMF, baseline_config

    if name == "river_biased_mf":
        return RiverBiasedMF()
    cat = Catalog()
    for record in catalog_records or ():
        cat.upsert(record)
    return EngineSubject(config if name == "engine" else baseline_config(config, name), cat)


def run_subject(name: str, events: list[dict], ks: tuple[int, ...], config: EngineConfig,
                catalog_records: list[dict] | None, warm_up: int = 0,
                tick: Callable[[int], None] | None = None) -> tuple:
    """One subject's prequential run: (name, report, referee) where the referee embedding
    (item index, vectors) is the engine's MF, used to judge every subject's diversity."""
    subject = _make_subject(name, config, catalog_records)
    try:
        engine = getattr(subject, "engine", None)
        cat_div = (lambda items: category_diversity(items, engine.catalog)) \
            if catalog_records and engine is not None else None
        report = prequential(subject, events, ks, cat_div, tick, warm_up)
        referee = (engine.mf.index, engine.mf.vectors[:len(engine.mf.ids)]) if name == "engine" else None
        return name, report, referee
    finally:
        subject.close()


_ticks = None  # in a worker process: where progress goes (see `_parallel`)


def _init_worker(queue) -> None:
    global _ticks
    _ticks = queue


def _run_in_worker(name: str, *args) -> tuple:
    queue = _ticks
    return run_subject(name, *args, tick=(lambda n: queue.put((name, n))) if queue is not None else None)


def _parallel(tasks: list[tuple], jobs: int, ticks: dict) -> list[tuple]:
    """`run_subject(*task)` for every task in `jobs` processes (they share nothing); progress
    comes back over a queue."""
    import multiprocessing
    import queue as queue_module
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
    progress = ctx.Queue()
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(progress,)) as pool:
        futures = [pool.submit(_run_in_worker, *task) for task in tasks]
        pending = set(futures)
        while True:  # after the last subject finishes, until no tick is still in flight
            try:
                name, n = progress.get(timeout=0.2 if pending else 0.05)
            except queue_module.Empty:
                if not pending:
                    return [f.result() for f in futures]
            else:
                if ticks.get(name):
                    ticks[name](n)
            pending = {f for f in pending if not f.done()}


def split_by_user(events: list[dict], partitions: int, partition_of: Callable[[str, int], int]) -> list[list[dict]]:
    """The events each input partition's shard would see, in order: users keyed to partitions
    by `partition_of(user_id, partitions)` (the live producer's partitioner)."""
    shards: list[list[dict]] = [[] for _ in range(partitions)]
    for event in events:
        shards[partition_of(event["user_id"], partitions)].append(event)
    return shards


def evaluate(events: list[dict], ks: tuple[int, ...] = (10, 20), config: EngineConfig | None = None,
             catalog_records: list[dict] | None = None, baselines: tuple[str, ...] = BASELINES,
             progress: Callable[[str, int], Callable[[int], None]] | None = None, jobs: int = 1,
             partitions: int = 1, partition_of: Callable[[str, int], int] | None = None,
             warm_up: int = 0, score_from: int | None = None) -> dict:
    """`reco evaluate` semantics: the full engine and every baseline over the same events.

    `progress(name, total)` may return a per-1000-events callback (a progress bar). With
    `jobs` > 1 the runs go to that many processes at once; each is still one sequential
    test-then-train pass, so every figure except wall-clock time is the same as with one.

    With `partitions` > 1 every subject runs once per partition on that partition's users only
    (split by `partition_of`), as the live workers' per-partition shards learn, and the
    partitions' figures are added up: what a deployment with that many partitions would score.

    `warm_up` (a number of events) and `score_from` (epoch ms) hold out history: the events before
    both cut points (the first `warm_up` events, and those before `score_from`; `events` is in time
    order) are learned by every subject without being scored, and the rest are scored as usual.
    The report's `scored` says where scoring began and how many events it covered."""
    config = config or EngineConfig()
    cut = min(warm_up, len(events))
    if score_from is not None:
        cut = max(cut, next((n for n, e in enumerate(events) if e["ts"] >= score_from), len(events)))
    names = ["engine", *baselines]
    ticks = {name: progress(name, len(events)) if progress else None for name in names}
    if partitions > 1:
        if partition_of is None:
            raise ValueError("partitions > 1 needs partition_of")
        shards = split_by_user(events, partitions, partition_of)
        held = [len(s) for s in split_by_user(events[:cut], partitions, partition_of)]  # each shard's share
    else:
        shards, held = [events], [cut]
    tasks = [(name, shard, ks, config, catalog_records, skip)
             for shard, skip in zip(shards, held) for name in names]
    if jobs > 1 and len(tasks) > 1:
        results = _parallel(tasks, min(jobs, len(tasks)), ticks)
    else:
        results = [run_subject(*task, tick=ticks[task[0]]) for task in tasks]
    reports: dict[str, Report] = {}
    diversity: dict[str, tuple[float, int]] = {}
    for start in range(0, len(results), len(names)):  # one partition's subjects, engine first
        referee = results[start][2]
        for name, report, _ in results[start:start + len(names)]:
            if name in reports:
                reports[name].merge(report)
            else:
                reports[name] = report
            for key, r in ((name, report), *(((name, v), sub) for v, sub in report.variants.items())):
                total, n = embedding_diversity(r.sampled_lists, *referee) if referee else (0.0, 0)
                before = diversity.get(key, (0.0, 0))
                diversity[key] = (before[0] + total, before[1] + n)

    def with_diversity(d: dict, key) -> dict:
        d["category_diversity"] = d.pop("intra_list_diversity")
        total, n = diversity[key]
        d["intra_list_diversity"] = round(total / n, 4) if n else None
        return d

    out: dict = {"partitions": partitions,
                 "scored": {"events": len(events) - cut, "of": len(events), "warm_up": cut,
                            "score_from": score_from,
                            "from_ts": events[cut]["ts"] if cut < len(events) else None},
                 "baselines": {}}
    for name, report in reports.items():
        d = with_diversity(report.as_dict(), name)
        for v, figures in d.get("variants", {}).items():
            with_diversity(figures, (name, v))
        if name == "engine":
            out["engine"] = d
        else:
            out["baselines"][name] = d
    best = max((b["hr@20"] for b in out["baselines"].values() if "hr@20" in b), default=0.0)
    if "hr@20" in out["engine"]:
        out["engine"]["lift_over_best_baseline"] = round(out["engine"]["hr@20"] / best, 3) if best else None
    return out
