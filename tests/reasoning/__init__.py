"""Tests of app.reasoning."""
