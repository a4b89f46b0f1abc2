"""Readers that turn public interaction logs into contract events, time-ordered.

Formats: contract JSONL (one interaction per line), the YOOCHOOSE clicks TSV
(`SessionId ItemId Time`, seconds), OTTO sessions JSONL (`{session, events[{aid, ts, type}]}`)
and MovieLens ratings with their catalogue (see MOVIELENS_MAPPING).
A session is the user id for YOOCHOOSE and OTTO.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

import orjson

OTTO_TYPES = {"clicks": "click", "carts": "add_to_cart", "orders": "purchase"}

MOVIELENS_MAPPING = (
    "movielens: a MovieLens directory or its ratings file — ratings.csv + movies.csv (ml-latest, "
    "ml-25m…) or u.data + u.item (ml-100k). Every rating is one event: user_id = userId, item_id = "
    "movieId (as in the files), value = the rating, type like for a rating >= 4, dislike for <= 2, "
    "view otherwise; ts = timestamp (seconds) x 1000; event_id ml-USER-MOVIE. Every movie is a "
    "catalogue record: title, category = its first genre, tags = all its genres (none for "
    "\"(no genres listed)\" or u.item's \"unknown\").")
ML_RATINGS = ("ratings.csv", "u.data")                   # the ratings file of each layout
ML_MOVIES = {"ratings.csv": "movies.csv", "u.data": "u.item"}
ML_NO_GENRE = {"(no genres listed)", "unknown"}
ML_100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                  "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                  "Romance", "Sci-Fi", "Thriller", "War", "Western")  # u.item's 19 flags, in order


def detect_format(path: str | Path) -> str:
    path = Path(path)
    if path.is_dir():
        if any((path / name).is_file() for name in ML_RATINGS):
            return "movielens"
        raise ValueError(f"{path}: a directory is read only as MovieLens, and it holds neither "
                         f"{' nor '.join(ML_RATINGS)}")
    if path.name in (*ML_RATINGS, *ML_MOVIES.values()):
        return "movielens"
    with path.open("rb") as f:
        first = next((line for line in f if line.strip()), b"")  # blank lines are skipped by every reader
    if not first:
        raise ValueError(f"{path}: empty file")
    if first.startswith(b"SessionId"):
        return "yoochoose"
    if first.startswith((b"userId,movieId,", b"movieId,title,")):
        return "movielens"
    if first.lstrip().startswith(b"{"):
        try:
            record = orjson.loads(first)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"{path}: the first line is not JSON ({e})") from None
        return "otto" if "events" in record and "session" in record else "jsonl"
    raise ValueError(f"{path}: unrecognised format (expected contract JSONL, YOOCHOOSE TSV, OTTO JSONL "
                     "or MovieLens)")


def read_yoochoose(path: str | Path) -> list[dict]:
    events = []
    with Path(path).open(newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader)
        for line, row in enumerate(reader, 2):
            if not row:
                continue
            try:
                session, item, seconds = row
                ts = int(round(float(seconds) * 1000))
            except ValueError:
                raise ValueError(f"{path} line {line}: expected SessionId<TAB>ItemId<TAB>Time (seconds), "
                                 f"got {chr(9).join(row)[:80]!r}") from None
            events.append({"event_id": f"yc-{len(events)}", "user_id": session, "item_id": item,
                           "type": "click", "ts": ts, "session_id": session})
    return events


def read_otto(path: str | Path) -> list[dict]:
    events = []
    with Path(path).open("rb") as f:
        for line, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                record = orjson.loads(text)
                sid = str(record["session"])
                for n, e in enumerate(record["events"]):
                    events.append({"event_id": f"otto-{sid}-{n}", "user_id": sid, "item_id": str(e["aid"]),
                                   "type": OTTO_TYPES[e["type"]], "ts": int(e["ts"]), "session_id": sid})
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path} line {line}: not an OTTO session "
                                 f'({{"session", "events": [{{"aid", "ts", "type"}}]}}): {type(e).__name__} {e}') from None
    return events


def movielens_files(path: str | Path) -> tuple[Path | None, Path | None]:
    """(ratings file, movies file) of a MovieLens directory, ratings file or movies file; either
    may be None when absent (a ratings file without its movies file: events only)."""
    path = Path(path)
    if path.is_dir():
        for ratings, movies in ML_MOVIES.items():
            if (path / ratings).is_file():
                return path / ratings, (path / movies) if (path / movies).is_file() else None
        raise ValueError(f"{path}: not a MovieLens directory (no {' or '.join(ML_RATINGS)})")
    if path.name in ML_MOVIES.values():
        return None, path
    if path.name == "u.data":
        movies = path.with_name("u.item")
    else:  # ratings.csv, or another name with its header (checked when read)
        movies = path.with_name("movies.csv")
    return path, movies if movies.is_file() else None


def _ml_type(rating: float) -> str:
    return "like" if rating >= 4 else "dislike" if rating <= 2 else "view"


def _ml_movie(movie: str, title: str, genres: list[str]) -> dict:
    genres = [g for g in genres if g and g not in ML_NO_GENRE]
    record: dict = {"item_id": movie, "title": title}
    if genres:
        record["category"] = genres[0]
        record["tags"] = genres
    return record


def read_movielens(path: str | Path) -> list[dict]:
    """Catalogue records (one per movie, file order), then one event per rating ordered by
    (ts, userId, movieId) — the ratings files are sorted by user, not time (MOVIELENS_MAPPING)."""
    ratings, movies = movielens_files(path)
    out = _ml_movies(movies) if movies is not None else []
    if ratings is None:
        return out
    if ratings.name == "u.data":
        rows = _ml_rows(ratings, "\t")
    else:
        rows = _ml_rows(ratings, ",")
        header = next(rows, None)
        if header is not None and header[1][:2] != ["userId", "movieId"]:
            raise ValueError(f"{ratings} line 1: expected the header userId,movieId,rating,timestamp, "
                             f"got {','.join(header[1])[:80]!r}")
    keyed = []
    for line, row in rows:
        try:
            user, movie, rating, seconds = row
            value, ts = float(rating), int(seconds) * 1000
            order = (ts, int(user), int(movie))
        except ValueError:
            raise ValueError(f"{ratings} line {line}: expected userId, movieId, rating, timestamp (seconds), "
                             f"got {' '.join(row)[:80]!r}") from None
        keyed.append((order, {"event_id": f"ml-{user}-{movie}", "user_id": user, "item_id": movie,
                              "type": _ml_type(value), "ts": ts, "value": value}))
    keyed.sort(key=lambda pair: pair[0])
    out.extend(event for _, event in keyed)
    return out


def _ml_rows(path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line."""
    with path.open(newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.reader(f, delimiter=delimiter), 1):
            if row:
                yield line, row


def _ml_movies(path: Path) -> list[dict]:
    records = []
    if path.name == "u.item":  # id|title|release date|video release date|IMDb URL|19 genre flags
        names = _ml_100k_genres(path.with_name("u.genre"))
        # latin-1: the 100k files predate UTF-8; no quoting ("|" never occurs in a title)
        with path.open(encoding="latin-1", newline="") as f:
            for line, text in enumerate(f, 1):
                if not text.strip():
                    continue
                row = text.rstrip("\r\n").split("|")
                flags = row[5:]
                if len(row) < 6 or len(flags) != len(names) or not set(flags) <= {"0", "1"}:
                    raise ValueError(f"{path} line {line}: expected movie id|title|release date|video release "
                                     f"date|IMDb URL|{len(names)} genre flags, got {text.strip()[:80]!r}")
                records.append(_ml_movie(row[0], row[1], [g for g, flag in zip(names, flags) if flag == "1"]))
        return records
    for line, row in _ml_rows(path, ","):
        if line == 1 and row[:1] == ["movieId"]:
            continue
        if len(row) != 3:
            raise ValueError(f"{path} line {line}: expected movieId,title,genres (a title with commas in "
                             f"double quotes), got {','.join(row)[:80]!r}")
        records.append(_ml_movie(row[0], row[1], row[2].split("|")))
    return records


def _ml_100k_genres(path: Path) -> tuple[str, ...]:
    """u.genre (`name|index` lines) when present, else the standard ml-100k list."""
    if not path.is_file():
        return ML_100K_GENRES
    pairs = []
    with path.open(encoding="latin-1") as f:
        for line, text in enumerate(f, 1):
            if not text.strip():
                continue
            name, _, index = text.strip().rpartition("|")
            if not name or not index.isdigit():
                raise ValueError(f"{path} line {line}: expected genre|index, got {text.strip()[:80]!r}")
            pairs.append((int(index), name))
    return tuple(name for _, name in sorted(pairs))


def read_jsonl(path: str | Path) -> list[dict]:
    return [record for _, record in read_jsonl_numbered(path)]


def read_jsonl_numbered(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, record) for every non-blank line; a line that is not a JSON object is an error."""
    out = []
    with Path(path).open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise ValueError(f"{path} line {n}: not JSON ({e})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path} line {n}: expected a JSON object, got {type(record).__name__}")
            out.append((n, record))
    return out


EVENT_ONLY_FIELDS = ("user_id", "ts", "event_id", "session_id")


def is_item_record(record: dict) -> bool:
    """Contract JSONL may interleave catalogue records (`item_id`, no `type` and none of an
    event's own fields) with interactions; a line with `user_id` but no `type` is a broken event."""
    return "type" not in record and "item_id" in record and not any(f in record for f in EVENT_ONLY_FIELDS)


def split_items(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(interactions, catalogue records), each in file order."""
    items = [r for r in records if is_item_record(r)]
    return [r for r in records if not is_item_record(r)], items


READERS = {"yoochoose": read_yoochoose, "otto": read_otto, "jsonl": read_jsonl, "movielens": read_movielens}
FORMATS = ("auto", "jsonl", "yoochoose", "otto", "movielens")  # the --format choices of `reco produce` and `reco evaluate`


def load_events(path: str | Path, fmt: str | None = None, sort: bool = True) -> list[dict]:
    """Contract event dicts from any supported file (a MovieLens directory too); time-ordered
    (stable) unless sort=False."""
    fmt = fmt if fmt and fmt != "auto" else detect_format(path)
    if fmt != "movielens" and Path(path).is_dir():
        raise ValueError(f"{path}: a directory, not a {fmt} file (only --format movielens reads a directory)")
    events = READERS[fmt](path)
    return sort_events(events, path) if sort else events


def sort_events(events: list[dict], path: str | Path = "input") -> list[dict]:
    """Time order (stable: a file's order among equal times; catalogue records, without ts, first)."""
    odd = next((e for e in events if not isinstance(e.get("ts", 0), (int, float))), None)
    if odd is not None:
        raise ValueError(f"{path}: `ts` must be a number (epoch ms) on every line; found {odd['ts']!r} "
                         f"(event {odd.get('event_id') or odd.get('user_id')!r})")
    return sorted(events, key=lambda e: e.get("ts", 0))


def iter_jsonl_lines(events: list[dict]) -> Iterator[bytes]:
    for e in events:
        yield orjson.dumps(e)
