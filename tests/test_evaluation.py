"""Prequential evaluation on a real slice of YOOCHOOSE, through the same engine code."""
from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from online_models.evaluation.datasets import load_events
from online_models.evaluation import synthetic
from online_models.evaluation.prequential import Report, evaluate, prequential, split_by_user
from streams.clients import partition_for

DATA = Path(__file__).parents[2] / "shared" / "data"
YOOCHOOSE = DATA / "yoochoose-sample" / "clicks.tsv"
OTTO = DATA / "otto-sample" / "train.jsonl"
needs_data = pytest.mark.skipif(not YOOCHOOSE.exists(), reason="shared data not mounted")


@needs_data
def test_engine_beats_every_baseline_on_a_yoochoose_slice():
    events = load_events(YOOCHOOSE)[:5000]
    report = evaluate(events)
    engine, baselines = report["engine"], report["baselines"]
    assert set(baselines) == {"trending", "covisit", "mf", "river_biased_mf"}
    # measured 0.41 on this slice; the bounds leave room for tuning, not for regressions
    assert engine["hr@20"] >= 0.38
    assert engine["hr@10"] <= engine["hr@20"]
    assert engine["mrr@20"] >= 0.2 and engine["ndcg@20"] >= engine["mrr@20"]
    assert engine["coverage"] >= 0.3
    best = max(b["hr@20"] for b in baselines.values())
    assert engine["hr@20"] >= 1.2 * best
    assert baselines["trending"]["hr@20"] >= 0.08  # the baselines are real, not strawmen
    assert baselines["covisit"]["hr@20"] >= 0.2
    assert 0.0 < engine["intra_list_diversity"] <= 1.0
    assert engine["events"] == engine["targets"] == 5000


def test_subjects_in_parallel_processes_give_the_same_report():
    events = synthetic.events(1500)
    catalog = synthetic.catalog_records()
    ticks: dict[str, int] = {}

    def progress(name, total):
        ticks[name] = 0
        return lambda n: ticks.__setitem__(name, ticks[name] + n)

    def figures(report):
        for d in (report["engine"], *report["baselines"].values()):
            d.pop("events_per_s")
        return report

    one = figures(evaluate(events, catalog_records=catalog, jobs=1))
    two = figures(evaluate(events, catalog_records=catalog, jobs=2, progress=progress))
    assert one == two
    assert one["engine"]["category_diversity"] is not None and one["engine"]["hr@20"] > 0
    assert ticks == {name: 1000 for name in ("engine", "trending", "covisit", "mf", "river_biased_mf")}


def test_partitions_add_up_the_shards_each_learning_from_its_own_users():
    events = synthetic.events(1500, n_users=40)
    catalog = synthetic.catalog_records()
    shards = split_by_user(events, 2, partition_for)
    users = [{e["user_id"] for e in shard} for shard in shards]
    assert all(users) and not users[0] & users[1]
    assert sum(map(len, shards)) == len(events)

    def hits(d):
        return round(d["hr@20"] * d["targets"])

    whole = evaluate(events, catalog_records=catalog, baselines=("covisit",), partitions=2,
                     partition_of=partition_for, jobs=2)
    apart = [evaluate(shard, catalog_records=catalog, baselines=("covisit",)) for shard in shards]
    assert whole["partitions"] == 2
    for name, pick in (("engine", lambda r: r["engine"]), ("covisit", lambda r: r["baselines"]["covisit"])):
        assert pick(whole)["targets"] == sum(pick(r)["targets"] for r in apart)
        assert pick(whole)["events"] == len(events)
        assert hits(pick(whole)) == sum(hits(pick(r)) for r in apart) > 0
    one = evaluate(events, catalog_records=catalog, baselines=("covisit",))
    assert one["partitions"] == 1 and one["engine"]["targets"] == whole["engine"]["targets"]
    with pytest.raises(ValueError, match="partition_of"):
        evaluate(events, partitions=2)


def test_report_metrics_by_hand():
    r = Report(ks=(1, 2))
    r.items_seen.update({"a", "b", "c", "d"})
    r.observe(["a", "b"], "a", None)   # rank 1
    r.observe(["a", "b"], "b", None)   # rank 2
    r.observe(["a", "b"], "z", None)   # miss
    d = r.as_dict()
    assert d["hr@1"] == round(1 / 3, 4) and d["hr@2"] == round(2 / 3, 4)
    assert d["mrr@2"] == round((1 + 0.5) / 3, 4)
    assert d["coverage"] == 0.5


def test_skips_are_learned_but_never_targets():
    seen = []

    class Probe:
        def recommend_ids(self, user_id, k):
            return []

        def learn_event(self, event):
            seen.append(event["type"])

    events = synthetic.events(200)
    report = prequential(Probe(), events)
    assert report.targets == sum(e["type"] not in ("skip", "dislike") for e in events) < len(events)
    assert len(seen) == len(events)


@needs_data
def test_cli_json_shape_and_otto():
    from streams.cli.evaluate import evaluate as command
    result = CliRunner().invoke(command, [str(OTTO), "--json", "--k", "10", "--k", "20"])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.output)
    assert report["engine"]["events"] == 862
    assert {"hr@10", "hr@20", "mrr@20", "ndcg@20", "coverage", "events_per_s"} <= set(report["engine"])
    assert report["engine"]["hr@20"] > report["baselines"]["trending"]["hr@20"]
    table = CliRunner().invoke(command, [str(YOOCHOOSE), "--limit", "5000", "--jobs", "1"])
    assert table.exit_code == 0 and "river reco.BiasedMF" in table.output and "co-visitation only" in table.output
    assert max(len(line) for line in table.output.splitlines()) <= 100, "fits a 100-column terminal"
    assert "-: not measured" in table.output and "catalogue records" in table.output  # what a "-" means is said
    # not a terminal (a CI log): a line per subject at each quarter instead of a bar
    assert "engine: 5,000/5,000 events" in table.stderr and "co-visitation only: 3,000/5,000 events" in table.stderr
    shards = CliRunner().invoke(command, [str(OTTO), "--json", "--partitions", "2", "--baseline", "covisit"])
    assert shards.exit_code == 0, shards.output
    report = orjson.loads(shards.output)
    assert report["partitions"] == 2 and report["engine"]["events"] == 862


@needs_data
def test_cli_evaluates_the_configured_engine_with_a_row_per_variant(tmp_path):
    from streams.cli.main import cli
    config = tmp_path / "reco.toml"
    # a learned variant beside a fixed blend without the session's items (learned = false: with the
    # ranker on, a variant's weights would only be where the shared learned weights start)
    config.write_text('[[variants]]\nname = "blend"\n\n[[variants]]\nname = "no-recent"\nrecent = 0.0\n'
                      'learned = false\n')
    result = CliRunner().invoke(cli, ["--config", str(config), "evaluate", str(YOOCHOOSE), "--limit", "3000",
                                      "--json", "--baseline", "covisit", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    engine = orjson.loads(result.output)["engine"]
    variants = engine["variants"]
    assert set(variants) == {"blend", "no-recent"}
    assert sum(v["targets"] for v in variants.values()) == engine["targets"] == 3000
    assert all(v["targets"] > 1000 for v in variants.values())  # the split is by user id, about even
    # re-engagement with the session's own items is most of this dataset's signal (decision 0010)
    assert variants["blend"]["hr@20"] > variants["no-recent"]["hr@20"] + 0.01  # measured 0.403 vs 0.377
    assert 0 < variants["blend"]["intra_list_diversity"] <= 2
    table = CliRunner().invoke(cli, ["--config", str(config), "evaluate", str(YOOCHOOSE), "--limit", "500",
                                     "--baseline", "covisit", "--jobs", "1"])
    assert table.exit_code == 0 and "engine · no-recent" in table.output


def test_cli_names_the_bad_line_and_the_unknown_type(tmp_path):
    from streams.cli.evaluate import evaluate as command
    good = orjson.dumps({"event_id": "e1", "user_id": "u", "item_id": "i", "type": "click", "ts": 1_700_000_000_000})
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(good + b"\nnot json\n")
    result = CliRunner().invoke(command, [str(bad)])
    assert result.exit_code == 1 and "line 2: not JSON" in result.output and "Traceback" not in result.output
    teleport = tmp_path / "teleport.jsonl"
    teleport.write_bytes(good.replace(b'"click"', b'"teleport"') + b"\n")
    result = CliRunner().invoke(command, [str(teleport)])
    assert result.exit_code == 1 and "unknown event type(s) 'teleport'" in result.output


@needs_data
def test_bench_evaluate_puts_the_engine_beside_its_per_event_path():
    from streams.cli.main import cli
    result = CliRunner().invoke(cli, ["bench-evaluate", str(YOOCHOOSE), "--limit", "1500", "--rounds", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.output)
    (run,) = report["rounds"]
    assert report["events"] == 1500
    # the models-off path does all the same per-event work except learning and ranking
    assert run["models_off_events_per_s"] > run["engine_events_per_s"] > 0
    assert run["models_us_per_event"] > 0 and run["ratio"] == report["median_ratio"] < 1


def test_cli_file_problems_are_named_not_traced(tmp_path):
    from streams.cli.main import cli
    good = {"user_id": "u", "item_id": "i", "type": "click", "ts": 1_700_000_000_000}
    cases = {
        "mixed.jsonl": (b"\n" + orjson.dumps(good) + b"\n" + orjson.dumps({**good, "ts": "1700000000001"}) + b"\n",
                        "`ts` must be a number (epoch ms) on every line; found '1700000000001'"),
        "empty.jsonl": (b"", "empty file"),
        "clicks.tsv": (b"SessionId\tItemId\tTime\n1\t2\t3\n1\t2\tnotatime\n", "clicks.tsv line 3: expected SessionId"),
    }
    for name, (content, says) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        result = CliRunner().invoke(cli, ["evaluate", str(path)])
        assert result.exit_code == 1 and says in result.output and result.exception.__class__ is SystemExit, \
            (name, result.output)
    otto = CliRunner().invoke(cli, ["produce", "--format", "otto", str(tmp_path / "mixed.jsonl")])
    assert otto.exit_code == 1 and "mixed.jsonl line 2: not an OTTO session" in otto.output


def test_cli_leaves_out_what_the_worker_would_dead_letter_and_shows_every_cutoff(tmp_path):
    from streams.cli.main import cli
    events = [{"user_id": 42, "item_id": "i", "type": "click", "ts": 1_700_000_000_000}]
    events += [{"user_id": "u", "item_id": item, "type": "click", "ts": 1_700_000_000_001 + n}
               for n, item in enumerate("abab")]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    result = CliRunner().invoke(cli, ["evaluate", str(path), "--json", "--k", "3", "--k", "50", "--baseline", "covisit"])
    assert result.exit_code == 0, result.output
    assert "warning: 1 of 5 events are not valid interactions" in result.stderr
    assert "data.user_id must be string" in result.stderr
    report = orjson.loads(result.stdout)
    assert report["engine"]["events"] == 4 and {"hr@3", "hr@50"} <= set(report["engine"])
    table = CliRunner().invoke(cli, ["evaluate", str(path), "--k", "3", "--k", "50", "--baseline", "covisit"])
    assert "HR@50" in table.stdout and "NDCG@3" in table.stdout
