"""A custom detector callable for tests/test_policies_*.py (config names it by dotted path)."""

import re


def find_codes(text):
    return [("code", m.start(), m.end()) for m in re.finditer(r"ZZ-\d\d", text)]
