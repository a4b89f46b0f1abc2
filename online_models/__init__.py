"""The engine: per-user state, online models and the recommender.

Nothing here imports a Kafka client; every class works on plain Python objects so it
can be unit-tested, evaluated offline and replayed deterministically.
"""
