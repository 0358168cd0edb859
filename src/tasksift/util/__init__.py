"""Shared machinery every other layer may use: errors, atomic writes, hashing, progress, threads, parameters."""
