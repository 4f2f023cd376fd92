"""Operator tools behind the `siesa-sync` CLI: status, dead letters, replays."""
