"""OpenDispatch: a self-hosted server for the Vonage Dispatch API (failover workflows)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
