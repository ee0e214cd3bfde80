"""The demo: the seed incident replayed in simulated time through the real pipeline."""

from __future__ import annotations

from detector.demo.runner import DemoError, DemoResult, run_demo

__all__ = ["DemoError", "DemoResult", "run_demo"]
