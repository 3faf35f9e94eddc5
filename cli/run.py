"""`tapgate run -- COMMAND ARGS`: one program with the gateway as its proxy and the gateway's CA trusted,
for it alone (its environment, nothing else on the machine), its calls tagged with the program's name,
working directory, git repository and branch, so `tapgate spend --by program` or `--by repo` says who spent."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from cli.runtimes import JAVA_STORE, environment, java_truststore
from cli.shell_init import BUNDLE, DEFAULT_CONFDIR, DEFAULT_PROXY, mitmproxy_ca, write_bundle
from core.runtags import NO_KEY, encode


def git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def without_credentials(url: str) -> str:
    """A remote URL as it can be stored: no user:password@ (an HTTPS remote may hold a token)."""
    if "://" in url:
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))
    return re.sub(r"^[^@/]+@", "", url)  # scp-like git@host:path


def git_tags(cwd: Path) -> dict[str, str]:
    """The repository (its origin remote, else its top folder's name) and branch the program runs in."""
    top = git(cwd, "rev-parse", "--show-toplevel")
    if top is None:
        return {}
    origin = git(cwd, "remote", "get-url", "origin")
    branch = git(cwd, "symbolic-ref", "--short", "-q", "HEAD")  # None when detached
    return {"repo": without_credentials(origin) if origin else Path(top).name, **({"branch": branch} if branch else {})}


def proxy_url(proxy: str, tags: dict[str, str], key: str | None) -> str:
    """The proxy URL with the tags as its user name and the gateway key, if any, as its password."""
    parts = urlsplit(proxy)
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{encode(tags)}:{quote(key, safe='') if key else NO_KEY}"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc}"))


def run_environment(args: argparse.Namespace, command: list[str], base: dict[str, str]) -> dict[str, str]:
    ca = mitmproxy_ca(Path(args.confdir).expanduser())
    bundle = write_bundle(ca, Path(args.bundle).expanduser())
    java = None if args.no_java else java_truststore(ca, Path(args.java_store).expanduser())
    cwd = Path.cwd()
    tags = {"program": Path(command[0]).name, "cwd": str(cwd), **git_tags(cwd)}
    values = environment(proxy_url(args.proxy, tags, args.key or base.get("TAPGATE_KEY")), ca, bundle, java)
    if base.get("NODE_OPTIONS"):  # the program's own Node options stay, after the preload
        values["NODE_OPTIONS"] += " " + base["NODE_OPTIONS"]
    if java is not None and base.get("JAVA_TOOL_OPTIONS"):
        values["JAVA_TOOL_OPTIONS"] += " " + base["JAVA_TOOL_OPTIONS"]
    lowercase = {name.lower(): value for name, value in values.items() if name.endswith("_PROXY")}
    return {**base, **values, **lowercase}  # curl and some tools read only the lowercase names


def cmd_run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("tapgate run: give the command to run, e.g. tapgate run -- claude", file=sys.stderr)
        return 2
    env = run_environment(args, command, dict(os.environ))
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as e:
        print(f"tapgate run: cannot start {command[0]}: {e.strerror or e}", file=sys.stderr)
        return 127
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # the terminal sent it to the program too: wait for it to finish
            continue


def add_command(sub) -> None:
    """`tapgate run` and its flags, on the command's subparsers."""
    s = sub.add_parser(
        "run",
        help="run one program with its LLM calls through the gateway, tagged with program, repo and branch",
        description="Run COMMAND with the gateway as its HTTPS proxy and the gateway's CA trusted, for it alone "
        "(as shell-init's lines would, for every runtime), its calls tagged with the program's name, working "
        "directory, git repository and branch. Exits with the program's exit status.",
    )
    s.add_argument("--proxy", default=DEFAULT_PROXY, help=f"the gateway's proxy URL (default {DEFAULT_PROXY})")
    s.add_argument("--key", help="a gateway key for the program's calls (default: $TAPGATE_KEY, if set)")
    s.add_argument("--confdir", default=DEFAULT_CONFDIR, help=f"mitmproxy's confdir (default {DEFAULT_CONFDIR})")
    s.add_argument("--bundle", default=BUNDLE, help=f"where to write the CA bundle (default {BUNDLE})")
    s.add_argument("--java-store", default=JAVA_STORE, help=f"where to write the Java trust store (default {JAVA_STORE})")
    s.add_argument("--no-java", action="store_true", help="no JAVA_TOOL_OPTIONS (and no keytool run)")
    s.add_argument("command", nargs=argparse.REMAINDER, help="the program and its arguments, after --")
    s.set_defaults(func=cmd_run)
