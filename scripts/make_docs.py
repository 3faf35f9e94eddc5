"""Write the generated parts of the pages in docs/, so the references cannot drift from the code: the
`tapgate` CLI reference from its argparse parser, the options table from the addons' `load()` loaders,
and the config reference from the pydantic models. The hand-written text around them stays; only what
lies between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->` is rewritten.

    python scripts/make_docs.py           # rewrite the stale pages
    python scripts/make_docs.py --check   # exit 1 naming the stale pages, change nothing
"""

from __future__ import annotations

import argparse
import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
COMMAND = "python scripts/make_docs.py"


def cli_parser() -> argparse.ArgumentParser:
    """The `tapgate` command's parser: the one place that knows where the CLI lives."""
    from cli.main import parser

    return parser()


# --- the CLI reference ---------------------------------------------------------------------------


def commands(p: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every runnable command, depth first: (`tapgate keys create`, its parser)."""
    sub = next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None:
        return [(p.prog, p)]
    return [c for child in sub.choices.values() for c in commands(child)]


def argument(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest.upper()}`"
    takes = action.nargs != 0
    meta = action.metavar or (f"{{{','.join(action.choices)}}}" if action.choices else action.dest.upper())
    return ", ".join(f"`{flag} {meta}`" if takes else f"`{flag}`" for flag in action.option_strings)


def cli_reference() -> str:
    out = []
    for prog, p in commands(cli_parser()):
        out += [f"### {prog}", "", one_line(p.description or ""), "", "| argument | meaning |", "|---|---|"]
        for action in p._actions:
            if "-h" in action.option_strings:
                continue
            repeat = " (repeatable)" if isinstance(action, argparse._AppendAction) and "repeatable" not in (
                action.help or "") else ""
            out.append(f"| {argument(action)} | {plain_cell(action.help or '')}{repeat} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# --- the options table ---------------------------------------------------------------------------


class OptionRecorder:
    """Stands in for mitmproxy's loader: records what each addon's load() declares."""

    def __init__(self) -> None:
        self.options: list[tuple[str, type, object, str]] = []

    def add_option(self, name, typespec, default, help, choices=None) -> None:
        self.options.append((name, typespec, default, help))

    def add_command(self, *args, **kwargs) -> None:
        pass


def gateway_options() -> list[tuple[str, type, object, str]]:
    from addons import gateway

    loader = OptionRecorder()
    for addon in gateway.addons:
        if hasattr(addon, "load"):
            addon.load(loader)
    return sorted(o for o in loader.options if o[0].startswith("tapgate_"))


def options_reference() -> str:
    out = ["| option | type | default | meaning |", "|---|---|---|---|"]
    for name, typespec, default, help in gateway_options():
        shown = "(empty)" if default == "" else str(default).lower() if isinstance(default, bool) else default
        out.append(f"| `{name}` | {typespec.__name__} | `{shown}` | {cell(help)} |")
    return "\n".join(out) + "\n"


# --- the config reference ------------------------------------------------------------------------


def config_models() -> list[tuple[type[BaseModel], list[str]]]:
    """Every model in the config file, in reading order, with the paths it is found at."""
    from core.config import TapgateConfig

    found: dict[type[BaseModel], list[str]] = {TapgateConfig: ["(top level)"]}

    def visit(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            path = f"{prefix}{name}"
            for inner, suffix in nested_models(field.annotation):
                found.setdefault(inner, []).append(f"`{path}{suffix}`")
                visit(inner, f"{path}{suffix}.")

    visit(TapgateConfig, "")
    return list(found.items())


def nested_models(annotation, suffix: str = "") -> list[tuple[type[BaseModel], str]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, suffix)]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list:
        return nested_models(args[0], suffix + "[]")
    if origin is dict:
        return nested_models(args[1], suffix + ".<name>")
    return [m for a in args for m in nested_models(a, suffix)]


def type_name(annotation) -> str:
    if annotation is type(None):
        return "none"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"map of {type_name(args[1])}"
    return {str: "text", int: "integer", float: "number", bool: "true/false"}.get(annotation, str(annotation))


def default_of(field) -> str:
    if field.default is PydanticUndefined:
        return "required"
    value = field.default
    if isinstance(value, BaseModel):
        return "(its defaults)"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return "(empty)"
    return f"`{value}`"


def config_reference() -> str:
    out = []
    for model, paths in config_models():
        out += [f"### {model.__name__}", "", f"{one_line(model.__doc__ or '')} At: {', '.join(paths)}.".strip(), ""]
        out += ["| field | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            out.append(f"| `{name}` | {type_name(field.annotation)} | {default_of(field)} | "
                       f"{cell(field.description or '')} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# --- the pages -----------------------------------------------------------------------------------

PARTS = {"cli": cli_reference, "options": options_reference, "config": config_reference}
PAGES = {"cli": "docs/cli.md", "options": "docs/options.md", "config": "docs/options.md"}


def one_line(text: str) -> str:
    return " ".join(text.split())


def cell(text: str) -> str:
    return one_line(text).replace("|", "\\|")


def plain_cell(text: str) -> str:
    """Help text, which has no markdown of its own: `<cap>` and `gpt-4o*` shown as written."""
    return cell(text).replace("<", "&lt;").replace("*", "\\*")


def regenerate(text: str, parts: dict[str, str]) -> str:
    """The page with each of its generated parts replaced by the current one."""
    for name, body in parts.items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n).*?(<!-- end generated: {name} -->)", re.S)
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), text)
    return text


def stale_pages() -> dict[Path, str]:
    """Pages whose generated parts differ from the code, with their up-to-date text."""
    stale = {}
    for page in sorted(set(PAGES.values())):
        path = ROOT / page
        names = [n for n, p in PAGES.items() if p == page]
        current = path.read_text()
        missing = [n for n in names if f"<!-- generated: {n} -->" not in current]
        if missing:
            raise SystemExit(f"{page}: no <!-- generated: {missing[0]} --> marker")
        fresh = regenerate(current, {n: PARTS[n]() for n in names})
        if fresh != current:
            stale[path] = fresh
    return stale


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description="Write the generated parts of docs/ from the code.")
    cli.add_argument("--check", action="store_true", help="name the stale pages and exit 1; change nothing")
    args = cli.parse_args(argv)
    stale = stale_pages()
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run {COMMAND}")
        return 1 if stale else 0
    for path, text in stale.items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
