"""Call records: the typed record of one call (`model`), and where records go (store, spool, webhook)."""
