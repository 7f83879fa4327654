"""Accounts and applications: credentials, key generation, Basic and JWT verification."""
