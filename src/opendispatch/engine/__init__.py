"""The failover engine: a pure state machine, `decide(state, event, now_ms)`.

Nothing here imports a database driver, an HTTP client, asyncio or the clock
(`tests/unit/test_engine_purity.py` keeps it so).
"""
