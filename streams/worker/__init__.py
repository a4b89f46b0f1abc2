"""The engine worker: consume, decode, learn, rank, publish, checkpoint, restore."""
