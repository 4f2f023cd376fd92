"""`siesa-sync console`: the operator console in the browser (see app.py)."""
