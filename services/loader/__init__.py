"""loader: upserts canonical products into each tenant's target through adapters."""
