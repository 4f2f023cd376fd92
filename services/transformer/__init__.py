"""transformer: maps raw Siesa items to canonical products per tenant mapping."""
