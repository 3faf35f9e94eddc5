"""Evaluators and what runs them: scoring live calls in the background, datasets and experiments (issue 15)."""
