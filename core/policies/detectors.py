"""The detectors by the names config uses, built once per process (the secret rules take a while to
compile) and shared by every policy that names them."""

from __future__ import annotations

import functools
from typing import Literal, get_args

from core.policies.findings import Detector
from core.policies.injection import InjectionDetector
from core.policies.pii import CardDetector, EmailDetector, IbanDetector, IpDetector, PhoneDetector, SsnDetector
from core.policies.secrets import SecretsDetector

DetectorName = Literal["secrets", "pii", "email", "phone", "card", "iban", "ssn", "ip", "injection"]
PII = ("email", "phone", "card", "iban", "ssn", "ip")
NAMES: tuple[str, ...] = get_args(DetectorName)


@functools.cache
def detector(name: str, region: str = "US") -> Detector:
    """One built-in detector by name (not `pii`, which stands for the PII ones: see expand)."""
    match name:
        case "secrets":
            return SecretsDetector()
        case "email":
            return EmailDetector()
        case "phone":
            return PhoneDetector(region)
        case "card":
            return CardDetector()
        case "iban":
            return IbanDetector()
        case "ssn":
            return SsnDetector()
        case "ip":
            return IpDetector()
        case "injection":
            return InjectionDetector()
    raise ValueError(f"unknown detector {name!r}: one of {', '.join(NAMES)}")


def expand(names: list[str]) -> list[str]:
    """Config's names with `pii` spelled out, each once, in order."""
    return list(dict.fromkeys(n for name in names for n in (PII if name == "pii" else (name,))))
