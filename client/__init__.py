"""Python client helpers for a running summarizer (thin over bentoml.SyncHTTPClient / AsyncHTTPClient)."""
