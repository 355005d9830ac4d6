"""Curation of real footage: probe -> scenes -> quality -> dedup -> normalize -> captions -> manifest.

Each stage is a pure function of one file or one scene (probe.py, scenes.py, quality.py, dedup.py,
normalize.py, captions.py); pipeline.py runs them over a process pool, caches each file's analysis
by content hash, and writes the manifest, the audit log and report.html.
"""

from kinema.data.curate.pipeline import CurateResult, analyze_file, curate, gather_inputs
from kinema.data.curate.recipe import CurateRecipe

__all__ = ["CurateRecipe", "CurateResult", "analyze_file", "curate", "gather_inputs"]
