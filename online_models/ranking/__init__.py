"""Ranking: gather every source's candidates, score them with the learned ranker, apply rules,
diversity and exploration."""
