"""State: per-user records, interned ids, how rows are keyed and pseudonymised, and the RocksDB
store that holds them."""
