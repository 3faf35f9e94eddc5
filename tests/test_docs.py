"""Docs under test: the README's commands are what CI runs, the README stays a short front page whose
links all land, and the pages in docs/ document every option, config field and command, their generated
parts current with the code."""

import re
import unicodedata

from mitmproxy.test import taddons
from pydantic import BaseModel
from support import ROOT, load_script

from addons import gateway
from core.config import load_config
from core.schema import open_db

make_docs = load_script("make_docs")
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
OFFLINE = (DOCS / "try-offline.md").read_text()


def page(name: str) -> str:
    return (DOCS / name).read_text()


def readme_commands(heading: str) -> str:
    section = README.split(f"## {heading}\n", 1)[1]
    return re.search(r"```sh\n(.+?)\n```", section, re.S).group(1)


def test_ci_runs_the_readmes_test_command():
    command = readme_commands("Install and test")
    assert command in (ROOT / ".ci" / "run").read_text()
    assert "pytest" in command and "[test]" in command


def test_the_run_command_loads_the_gateway():
    assert "mitmdump -s addons/gateway.py" in readme_commands("Install and run")


def test_the_readme_stays_a_front_page():
    assert len(README.encode()) <= 8 * 1024, f"README.md is {len(README.encode())} bytes; move detail to docs/"
    assert "](docs/dashboard.svg)" in README and "tapgate shell-init" in README
    features = README.split("## What it does\n", 1)[1].strip().splitlines()
    assert len(features) >= 8
    for line in features:
        assert re.fullmatch(r"- \[.+\]\(docs/[\w-]+\.md\)", line), f"feature line without its page: {line}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_\[\]()]", "", heading.strip().lower())
    return "".join(c for c in text if c in " -" or unicodedata.category(c)[0] in "LN").replace(" ", "-")


def anchors(text: str) -> set[str]:
    outside_code = re.sub(r"```.*?```", "", text, flags=re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", outside_code, re.M)}


def test_every_link_between_the_pages_lands():
    for source in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = source.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"```.*?```", "", text, flags=re.S)):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (source.parent / path).resolve() if path else source
            assert file.exists(), f"{source.name}: link to missing {target}"
            if anchor and file.suffix == ".md":
                assert anchor in anchors(file.read_text()), f"{source.name}: no heading for {target}"


def test_the_generated_parts_are_current():
    stale = make_docs.stale_pages()
    assert not stale, f"stale: {', '.join(p.name for p in stale)}; run `{make_docs.COMMAND}`"


def test_the_generator_sees_every_option_mitmproxy_loads():
    with taddons.context(*gateway.addons) as tctx:
        loaded = {name for name in tctx.options.keys() if name.startswith("tapgate_")}
    assert len(loaded) >= 5
    assert {name for name, *_ in make_docs.gateway_options()} == loaded
    missing = [name for name in loaded if f"`{name}`" not in page("options.md")]
    assert not missing, f"options missing from docs/options.md: {missing}"


def test_every_cli_command_and_flag_is_documented():
    cli = page("cli.md")
    sub = next(a for a in make_docs.cli_parser()._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert f"tapgate {name}" in cli
        for action in command._actions:
            for flag in action.option_strings:
                assert flag in ("-h", "--help") or f"`{flag}" in cli, f"{name} {flag} missing from docs/cli.md"


def test_every_config_field_is_described_and_in_the_annotated_file(tmp_path):
    text = page("options.md")
    example = re.search(r"## The config file\n.*?```yaml\n(.+?)\n```", text, re.S).group(1)
    config = tmp_path / "tapgate.yaml"
    config.write_text(example)
    load_config(config)  # the annotated file is a valid config
    models = make_docs.config_models()
    assert len(models) >= 15
    for model, _ in models:
        assert issubclass(model, BaseModel) and f"### {model.__name__}" in text
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring for the reference"
            assert re.search(rf"\b{name}:", example), f"{model.__name__}.{name} missing from the annotated file"


def test_the_store_page_names_every_table_view_and_column(tmp_path):
    text = page("store.md")
    db = open_db(tmp_path / "tapgate.db")  # every migration applied
    for table in [*db.table_names(), *db.view_names()]:
        if table.startswith("_"):  # sqlite-utils' own bookkeeping
            continue
        assert f"`{table}`" in text, f"table {table} missing from docs/store.md"
        for column in db[table].columns:
            assert re.search(rf"`[^`\n]*\b{column.name}\b[^`\n]*`", text), f"{table}.{column.name} missing"


def test_every_sqlite3_recipe_runs_on_a_store(tmp_path):
    db = open_db(tmp_path / "tapgate.db")
    recipes = [q for p in sorted(DOCS.glob("*.md")) for q in re.findall(r'^sqlite3 \S+ "(.+)"$', p.read_text(), re.M)]
    assert len(recipes) >= 4
    for query in recipes:
        db.execute(query).fetchall()


def test_the_offline_recipe_sends_every_provider_it_calls_to_the_mock(tmp_path):
    config = tmp_path / "tapgate.yaml"
    config.write_text(re.search(r"tapgate\.yaml <<'EOF'\n(.+?)\nEOF\n", OFFLINE, re.S).group(1))
    providers = load_config(config).router.providers
    assert {name: p.base_url for name, p in providers.items()} == {
        "openai": "http://127.0.0.1:8765/v1", "anthropic": "http://127.0.0.1:8765", "gemini": "http://127.0.0.1:8765",
    }
    assert "mock_provider.py --port 8765" in OFFLINE
    pattern, target = re.search(r"--map-remote '@(.+?)@(.+?)'", OFFLINE).groups()
    assert target == "http://127.0.0.1:8765"
    for host in ("api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com"):
        assert re.match(pattern, f"https://{host}/v1/x") and re.match(pattern, f"https://{host}:443/v1/x")
    assert not re.match(pattern, "https://pypi.org/simple/")
    assert "connection_strategy=lazy" in OFFLINE


def test_the_readme_links_the_offline_recipe():
    assert "](docs/try-offline.md)" in README
