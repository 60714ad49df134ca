"""Tests of the REST API, all through HTTP."""
