"""extractor: polls Siesa for each tenant and emits new, changed and vanished items."""
