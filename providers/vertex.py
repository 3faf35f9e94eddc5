"""Vertex AI's hosts, described once: Google's publisher models (gemini/) and Anthropic's
(anthropic/) answer on the same hosts and are told apart by path.

"global" is the bare host, multi-regions are *.rep hosts, regions are "{region}-aiplatform"
(anthropic-sdk-python lib/vertex/_client.py; the Vertex discovery document). "*" is one DNS label
(base.host_matches)."""

from __future__ import annotations

VERTEX_HOSTS = ("aiplatform.googleapis.com", "*-aiplatform.googleapis.com", "aiplatform.*.rep.googleapis.com")
