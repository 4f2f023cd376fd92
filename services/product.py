"""The names this product goes by, fixed by its releases, in one place.

The shared core (`services/common/`) is machinery that names no source or target; what
it publishes under a name (topics, metrics, client ids, alerts) takes the name from
here. The two topics named after Siesa keep the names of the first release: deployments
hold their data and consumer offsets under them.
"""

from __future__ import annotations

NAME = "siesa-sync"
METRIC_NAMESPACE = "siesa_sync"

RAW_TOPIC = "siesa.items.raw.v1"
# The extractor's fingerprints: `<tenant>/<key>` -> fingerprint of the last row emitted.
FINGERPRINTS_TOPIC = "siesa.fingerprints.v1"
