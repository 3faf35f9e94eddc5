"""PII detectors: e-mail, phone numbers (Google's libphonenumber via `phonenumbers`), payment cards
(Luhn), IBAN (ISO 13616 checksum) and US SSN (both via `python-stdnum`), and IP addresses. A regex
finds candidates cheaply; a library check keeps only the real ones. Names and postal addresses are
not detected: no maintained library finds them offline without a downloaded model."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

import phonenumbers
from stdnum import iban, luhn
from stdnum.us import ssn

from core.policies.findings import Match

EMAIL = re.compile(r"(?<![\w.%+/-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w-])")
# Each candidate pattern opens with a character class and checks what precedes it after: a pattern that opens
# with a lookbehind is tried at every position of the text, one with a class only where the class matches
# (about 4x faster on prose).
PHONE = re.compile(r"[+(\d](?<![\w+][+(\d])[\d \t().\-/]{5,21}\d(?!\w)")
CARD = re.compile(r"\d(?<![\d-]\d)(?:[ -]?\d){12,18}(?![\d-])")
# Issuer prefixes of the card networks (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro).
CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|6(?:011|5|4[4-9]|2)|35|3(?:0[0-5]|[68])|5[06-9]|6[0-9]")
IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d\d(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
SSN = re.compile(r"\d(?<![\d-]\d)\d\d([- ])\d{2}\1\d{4}(?![\d-])")
IPV4 = re.compile(r"\d(?<![\d.]\d)\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?!\d|\.\d)")
# IPv6 candidates: the run of hex digits, colons and dots around each colon, checked by `ipaddress`.
IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
# The local part before an "@" and the domain after it, read around each "@" rather than tried at every letter.
LOCAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}\Z")
DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
                    r"\.[A-Za-z]{2,24}(?![\w-])")


class EmailDetector:
    name = "email"

    def find(self, text: str) -> Iterator[Match]:
        at = text.find("@")
        while at > 0:
            local = LOCAL.search(text, max(0, at - 64), at)
            domain = DOMAIN.match(text, at + 1)
            if local is not None and domain is not None and EMAIL.fullmatch(text, local.start(), domain.end()):
                start = local.start()
                # Not inside a longer token, and not a URL's user:password@host (the secrets detector's).
                if not (start and text[start - 1] in "./%+-" + ":") or (
                        text[start - 1] == ":" and "://" not in text[:start].rsplit(None, 1)[-1]):
                    yield Match("EMAIL", start, domain.end(), self.name)
            at = text.find("@", at + 1)


class PhoneDetector:
    """Numbers libphonenumber calls valid: international ones anywhere, national ones for `region`."""

    name = "phone"

    def __init__(self, region: str = "US") -> None:
        self.region = region

    def find(self, text: str) -> Iterator[Match]:
        for m in PHONE.finditer(text):
            candidate = m.group()
            digits = sum(c.isdigit() for c in candidate)
            if digits < 7 or digits > 15 or IPV4.fullmatch(candidate):
                continue
            if candidate.startswith("00"):  # the international prefix of most of the world
                candidate = "+" + candidate[2:]
            try:
                number = phonenumbers.parse(candidate, self.region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                yield Match("PHONE", m.start(), m.end(), self.name)


class CardDetector:
    name = "card"

    def find(self, text: str) -> Iterator[Match]:
        for m in CARD.finditer(text):
            digits = re.sub(r"[ -]", "", m.group())
            if 13 <= len(digits) <= 19 and CARD_PREFIX.match(digits) and luhn.is_valid(digits):
                yield Match("CARD", m.start(), m.end(), self.name)


class IbanDetector:
    name = "iban"

    def find(self, text: str) -> Iterator[Match]:
        for m in IBAN.finditer(text):
            if iban.is_valid(m.group(), check_country=False):  # ISO 13616 length and mod 97; bank codes unchecked
                yield Match("IBAN", m.start(), m.end(), self.name)


class SsnDetector:
    """US social security numbers written with dashes or spaces; SSA's never-issued ranges excluded."""

    name = "ssn"

    def find(self, text: str) -> Iterator[Match]:
        for m in SSN.finditer(text):
            if ssn.is_valid(m.group().replace(" ", "-")):
                yield Match("SSN", m.start(), m.end(), self.name)


class IpDetector:
    name = "ip"

    def find(self, text: str) -> Iterator[Match]:
        for m in IPV4.finditer(text):
            if _is_ip(m.group()):
                yield Match("IP", m.start(), m.end(), self.name)
        colon, n = text.find(":"), len(text)
        while colon >= 0:
            start = end = colon
            while start > 0 and text[start - 1] in IPV6_CHARS and start > colon - 45:
                start -= 1
            while end < n and text[end] in IPV6_CHARS and end < colon + 45:
                end += 1
            candidate = text[start:end].rstrip(".")
            if (candidate.count(":") >= 2 and not (start and (text[start - 1].isalnum() or text[start - 1] == "_"))
                    and not (end < n and (text[end].isalnum() or text[end] == "_")) and _is_ip(candidate)):
                yield Match("IP", start, start + len(candidate), self.name)
            colon = text.find(":", end + 1) if end > colon else text.find(":", colon + 1)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
