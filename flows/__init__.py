"""Prefect flows: watch the inbox, retrain, compare, promote (see flows/serve.py)."""
