"""Admin for this area of automation."""

from __future__ import annotations
