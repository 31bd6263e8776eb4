"""The HTTP API (api.md section 10): JSON under /api/v1/, authenticated by bearer tokens.

Mount it with `path("api/v1/", include("workflows.api.urls"))`. Its views call the same
services and selectors as the console, the command line and the Python API.
"""
