"""Engine configuration: plain frozen dataclasses, built by the entry point from settings."""
from __future__ import annotations

from dataclasses import dataclass, field

from online_models.state.pseudonyms import NONE, Pseudonyms


@dataclass(frozen=True)
class Blend:
    """How much each candidate source counts in the final score, plus the two re-ranking knobs.

    With `learned` (the default) the weights are where the shard's learned ranker starts from and
    the ranker learns them from the traffic (docs/decisions/0016); without it they are the fixed
    blend tuned by prequential evaluation on a shop (docs/decisions/0010), kept for A/B comparison."""
    recent: float = 1.0      # re-engagement with the user's own recent items
    covisit: float = 1.0     # items seen together with the user's session items
    trending: float = 0.05   # time-decayed popularity (fill and cold start)
    mf: float = 0.05         # online matrix factorisation (user + session taste)
    content: float = 0.3     # category/tag taste profile, new items in liked categories
    context: float = 0.02    # popular on this device / at this time of day
    explore: float = 0.02    # chance that each exploration slot is handed to the bandit
    diversity: float = 0.3   # MMR weight against same-category near duplicates (0 = off)
    learned: bool = True     # rank with the shard's learned weights (False: these, fixed)


@dataclass(frozen=True)
class Variant:
    name: str = "control"
    weight: float = 1.0      # share of users routed here (relative)
    blend: Blend = field(default_factory=Blend)


@dataclass(frozen=True)
class EngineConfig:
    k: int = 20
    model_version: str = "v1"
    exclude_purchased: bool = True
    skip_window_ms: int = 7 * 24 * 3600_000   # a skipped item stays out this long
    recent_window: int = 10                   # session items that seed candidates
    recency_decay: float = 0.75               # weight of the n-th most recent item: decay**n
    trending_half_life_hours: float = 6.0
    context_half_life_hours: float = 72.0     # "popular at this hour / on this device" remembers longer
    covisit_half_life_hours: float = 72.0
    popular_half_life_hours: float = 720.0    # "popular this month": the learned ranker's long horizon
    covisit_window: int = 5
    min_seed_neighbors: int = 10              # neighbours per seed halve with age down to this
    two_hop: float = 0.5                      # weight of neighbours-of-neighbours of the latest item
    two_hop_neighbors: int = 10               # how many of its neighbours are expanded
    two_hop_breadth: int = 20                 # and how many of each one's neighbours are taken
    mf_factors: int = 16
    mf_learning_rate: float = 0.05
    mf_regularization: float = 0.002
    mf_candidates: int = 0                    # items the MF adds from the whole catalogue (0 = rescoring only)
    content_candidates: int = 10              # new/trending items per liked category
    explore_from: int = 10                    # slots from this rank on may be explored
    utc_offset_hours: int = 0                 # local time for the hour-of-day context
    opted_out_feed_aggregates: bool = False   # opted-out users' events still feed trending and MF item factors
    # What bounds the models' memory: past a capacity the coldest entries are evicted (README).
    trending_max_items: int = 50_000          # items per trending scope (global, category, ^start)
    trending_max_scopes: int = 2_000          # trending scopes (categories)
    context_max_items: int = 5_000            # items per context scope (device, time of day)
    context_max_scopes: int = 500             # context scopes (devices)
    covisit_max_items: int = 100_000          # co-visitation rows (each capped at 2 x 100 neighbours)
    mf_max_items: int = 100_000               # MF item factors
    variants: tuple[Variant, ...] = (Variant(),)
    # Privacy: a keyed hash of user ids in place of the ids in the store (pseudonyms.py), and
    # retention — a user idle this long in event time is deleted as on forget (0 = kept forever).
    pseudonyms: Pseudonyms = NONE
    user_ttl_ms: int = 0
