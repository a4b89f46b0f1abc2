"""MovieLens in `reco produce` and `reco evaluate` (both layouts, one reader), timestamps from 1995
on, and `reco evaluate --score-from / --warm-up` (issue 14's groundwork)."""
from __future__ import annotations

import subprocess

import orjson
import pytest
from click.testing import CliRunner
from helpers import read_all
from test_cli import RECO, env_for

from online_models.evaluation.datasets import detect_format, load_events, read_movielens, split_items
from online_models.evaluation import synthetic
from online_models.evaluation.prequential import evaluate
from streams.cli.produce import check_records
from streams.clients import partition_for
from streams.worker.decode import Rejected, decode_interaction

MOVIES_CSV = """movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
11,"American President, The (1995)",Comedy|Drama|Romance
2,Jumanji (1995),Adventure|Children|Fantasy
114335,La cravate (1957),(no genres listed)
"""
# sorted by user, not time; 964981247 twice (a tie: user, then movie, decides)
RATINGS_CSV = """userId,movieId,rating,timestamp
1,1,0.5,964982703
1,11,2.0,964981247
1,2,3.0,964982224
2,1,4.0,835355493
2,114335,5.0,964981247
"""
# (event id, type, value, ts in ms) in time order
EXPECTED = [("ml-2-1", "like", 4.0, 835355493000), ("ml-1-11", "dislike", 2.0, 964981247000),
            ("ml-2-114335", "like", 5.0, 964981247000), ("ml-1-2", "view", 3.0, 964982224000),
            ("ml-1-1", "dislike", 0.5, 964982703000)]

def flags(*on: int) -> str:
    return "|".join("1" if n in on else "0" for n in range(19))


U_ITEM = (f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|{flags(3, 4, 5)}\n"
          f"2|Cité des enfants perdus, La (1995)|01-Jan-1995||http://x|{flags(8, 9)}\n"
          f"267|unknown|||http://x|{flags(0)}\n")
U_DATA = "196\t1\t3\t881250949\n186\t2\t5\t891717742\n22\t267\t1\t878887116\n196\t2\t4\t881250949\n"


@pytest.fixture
def latest(tmp_path):
    d = tmp_path / "ml-latest-small"
    d.mkdir()
    (d / "movies.csv").write_text(MOVIES_CSV)
    (d / "ratings.csv").write_text(RATINGS_CSV)
    return d


@pytest.fixture
def ml100k(tmp_path):
    d = tmp_path / "ml-100k"
    d.mkdir()
    (d / "u.item").write_bytes(U_ITEM.encode("latin-1"))
    (d / "u.data").write_text(U_DATA)
    return d


def test_latest_layout_events_in_time_order_and_the_catalogue_first(latest):
    records = read_movielens(latest)
    events, items = split_items(records)
    assert records[:4] == items  # the catalogue first, then the events
    assert [(e["event_id"], e["type"], e["value"], e["ts"]) for e in events] == EXPECTED
    assert events[0] == {"event_id": "ml-2-1", "user_id": "2", "item_id": "1", "type": "like",
                         "ts": 835355493000, "value": 4.0}
    assert items[1] == {"item_id": "11", "title": "American President, The (1995)", "category": "Comedy",
                        "tags": ["Comedy", "Drama", "Romance"]}
    assert items[3] == {"item_id": "114335", "title": "La cravate (1957)"}  # no genres: no category
    for path in (latest, latest / "ratings.csv"):  # a directory or its ratings file: the same records
        assert detect_format(path) == "movielens"
        assert load_events(path) == records
    assert load_events(latest / "movies.csv") == items  # the catalogue alone
    assert detect_format(latest / "movies.csv") == "movielens"


def test_100k_layout_with_and_without_u_genre(ml100k):
    events, items = split_items(load_events(ml100k))
    assert detect_format(ml100k) == detect_format(ml100k / "u.data") == "movielens"
    assert [(e["user_id"], e["item_id"], e["type"]) for e in events] == [
        ("22", "267", "dislike"), ("196", "1", "view"), ("196", "2", "like"), ("186", "2", "like")]
    assert items[0]["category"] == "Animation" and items[0]["tags"] == ["Animation", "Children's", "Comedy"]
    assert items[1]["title"] == "Cité des enfants perdus, La (1995)"  # latin-1, as the 100k files are
    assert items[2] == {"item_id": "267", "title": "unknown"}  # genre "unknown" only: no category
    names = ["unknown", *(f"g{n}" for n in range(1, 19))]
    (ml100k / "u.genre").write_text("".join(f"{name}|{n}\n" for n, name in enumerate(names)))
    _, items = split_items(load_events(ml100k))
    assert items[0]["tags"] == ["g3", "g4", "g5"]


def test_broken_files_are_named_by_line(tmp_path, latest):
    (latest / "ratings.csv").write_text(RATINGS_CSV + "3,1,four,964982703\n")
    with pytest.raises(ValueError, match="ratings.csv line 7: expected userId, movieId, rating, timestamp"):
        load_events(latest)
    (latest / "movies.csv").write_text(MOVIES_CSV + "5,Father of the Bride, Part II (1995),Comedy\n")
    with pytest.raises(ValueError, match="movies.csv line 6: expected movieId,title,genres"):
        load_events(latest)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither ratings.csv nor u.data"):
        detect_format(tmp_path / "empty")
    with pytest.raises(ValueError, match="only --format movielens reads a directory"):
        load_events(latest, "jsonl")


def test_timestamps_from_1995_are_valid_and_seconds_are_still_named():
    def decode(ts, record_ts=None):
        value = orjson.dumps({"user_id": "1", "item_id": "1", "type": "like", "ts": ts})
        return decode_interaction(b"1", value, "interactions", 0, 0, record_ts=record_ts)

    assert decode(835355493000).ts == 835355493000           # 1996-06-21: MovieLens' first ratings
    assert decode(788918400000).ts == 788918400000           # 1995-01-01, the schema's lower bound
    assert decode(835355493000, record_ts=835355493000).event_id == "interactions/0/0@835355493000"
    for wrong in (788918399999, 964982703):                  # 1994; seconds
        rejected = decode(wrong)
        assert isinstance(rejected, Rejected) and rejected.code == "schema" and "ts" in rejected.reason
    bad = check_records([("event 1", {"user_id": "1", "item_id": "1", "type": "like", "ts": 835355493}),
                         ("event 2", {"user_id": "1", "item_id": "1", "type": "like", "ts": 835355493000})])
    assert [b.where for b in bad] == ["event 1"] and "looks like seconds" in bad[0].reason


def test_produce_movielens_sends_the_catalogue_then_the_events(settings_factory, latest):
    s = settings_factory()
    done = subprocess.run(RECO + ["produce", "--format", "movielens", str(latest)], env=env_for(s),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert f"sent 5 events to {s.interactions_topic} and 4 catalogue records to {s.items_topic}" in done.stdout
    events = read_all(s, s.interactions_topic, idle_s=0.3)
    assert all(m.key().decode() == orjson.loads(m.value())["user_id"] for m in events)
    assert sorted((orjson.loads(m.value())["event_id"], orjson.loads(m.value())["type"]) for m in events) == \
        sorted((e, t) for e, t, _, _ in EXPECTED)
    items = {m.key().decode(): orjson.loads(m.value()) for m in read_all(s, s.items_topic, idle_s=0.3)}
    assert items["11"]["title"] == "American President, The (1995)" and items["11"]["category"] == "Comedy"
    # --limit counts events: the whole catalogue still goes first (auto-detected from the ratings file)
    limited = settings_factory()
    done = subprocess.run(RECO + ["produce", "--limit", "2", str(latest / "ratings.csv")], env=env_for(limited),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "sent 2 events" in done.stdout and "and 4 catalogue records" in done.stdout


def test_evaluate_movielens_scores_what_follows_the_cut(latest):
    from streams.cli.main import cli

    def run(*args):
        result = CliRunner().invoke(cli, ["evaluate", "--format", "movielens", str(latest), "--jobs", "1",
                                          "--baseline", "covisit", *args])
        assert result.exit_code == 0, result.output
        return result

    report = orjson.loads(run("--json").stdout)
    assert report["engine"]["events"] == 5 and report["engine"]["targets"] == 3  # the dislikes are no targets
    assert report["scored"] == {"events": 5, "of": 5, "warm_up": 0, "score_from": None, "from_ts": 835355493000}
    # 2000-07-30 00:00 UTC: the first event (1996) is history; of the other four, two are targets
    report = orjson.loads(run("--json", "--score-from", "2000-07-30").stdout)
    assert report["scored"] == {"events": 4, "of": 5, "warm_up": 1, "score_from": 964915200000,
                                "from_ts": 964981247000}
    assert report["engine"]["targets"] == report["baselines"]["covisit"]["targets"] == 2
    assert report["engine"]["events"] == 5  # every event is still learned
    same = orjson.loads(run("--json", "--score-from", "964915200000").stdout)
    assert same["scored"] == report["scored"]
    later = orjson.loads(run("--json", "--score-from", "2000-07-30", "--warm-up", "3").stdout)  # the later cut
    assert later["scored"]["warm_up"] == 3 and later["engine"]["targets"] == 1
    table = run("--warm-up", "1").stdout
    assert "scored 4 of 5 events, from 2000-07-30 18:20:47 (the 1 before were learned only)" in table
    for args, says in ((["--score-from", "2030-01-01"], "no event to score from 2030-01-01"),
                       (["--warm-up", "5"], "no event to score after the first 5"),
                       (["--score-from", "964915200"], "seconds?")):
        result = CliRunner().invoke(cli, ["evaluate", str(latest), "--jobs", "1", *args])
        assert result.exit_code != 0 and says in result.output and "Traceback" not in result.output, result.output


def test_warm_up_is_learned_by_every_subject_and_split_across_partitions():
    events = synthetic.events(600, n_users=30)
    catalog = synthetic.catalog_records()
    full = evaluate(events, catalog_records=catalog, baselines=("covisit", "trending"))
    held = evaluate(events, catalog_records=catalog, baselines=("covisit", "trending"), warm_up=400)
    targets = sum(e["type"] not in ("skip", "dislike") for e in events[400:])
    for pick in (lambda r: r["engine"], lambda r: r["baselines"]["covisit"], lambda r: r["baselines"]["trending"]):
        assert pick(held)["targets"] == targets < pick(full)["targets"]
        assert pick(held)["events"] == 600
    assert held["scored"]["events"] == 200 and held["scored"]["from_ts"] == events[400]["ts"]
    shards = evaluate(events, catalog_records=catalog, baselines=("covisit",), warm_up=400,
                      partitions=2, partition_of=partition_for)
    assert shards["engine"]["targets"] == targets and shards["scored"] == held["scored"]
    by_time = evaluate(events, catalog_records=catalog, baselines=("covisit",), score_from=events[400]["ts"])
    assert by_time["scored"]["warm_up"] <= 400 and by_time["engine"]["targets"] >= targets
