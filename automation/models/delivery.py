"""Models of this area; see the package docstring."""

from __future__ import annotations
