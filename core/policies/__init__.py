"""Guardrails (issue 13): detectors for secrets, PII and prompt injection, the policies that act on
what they find (block, redact, flag), and redaction with restore; pure, no mitmproxy."""
