"""Shared fixtures: small seeded data sets with known structure."""

from __future__ import annotations
