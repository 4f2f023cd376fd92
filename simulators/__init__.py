"""HTTP simulators of the external APIs (Siesa, Kong), served as Starlette apps.

They are real HTTP servers on loopback for the demo, the tests and the benchmarks,
each with an admin API under ``/_admin`` to load data and read what was stored.
"""
