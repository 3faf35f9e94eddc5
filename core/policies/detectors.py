"""The detectors by the names config uses, built once per process (the secret rules take a while to
compile) and shared by every policy that names them. Their modules (and libraries: phonenumbers,
python-stdnum, re2) are imported when a policy first needs one, so a gateway without policies starts
as fast as before."""

from __future__ import annotations

import functools
from typing import get_args

from core.policies.config import DetectorName
from core.policies.findings import Detector

PII = ("email", "phone", "card", "iban", "ssn", "ip")
NAMES: tuple[str, ...] = get_args(DetectorName)


@functools.cache
def detector(name: str, region: str = "US") -> Detector:
    """One built-in detector by name (not `pii`, which stands for the PII ones: see expand)."""
    if name == "secrets":
        from core.policies.secrets import SecretsDetector
        return SecretsDetector()
    if name == "injection":
        from core.policies.injection import InjectionDetector
        return InjectionDetector()
    from core.policies import pii

    if name == "phone":
        return pii.PhoneDetector(region)
    found = {"email": pii.EmailDetector, "card": pii.CardDetector, "iban": pii.IbanDetector, "ssn": pii.SsnDetector,
             "ip": pii.IpDetector}.get(name)
    if found is not None:
        return found()
    raise ValueError(f"unknown detector {name!r}: one of {', '.join(NAMES)}")


def expand(names: list[str]) -> list[str]:
    """Config's names with `pii` spelled out, each once, in order."""
    return list(dict.fromkeys(n for name in names for n in (PII if name == "pii" else (name,))))
