"""JSON Schemas of every topic (installed as the `reco_schemas` package)."""
