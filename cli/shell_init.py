"""`tapgate shell-init`: the environment lines that send a shell's HTTPS through the gateway and
make its clients trust the mitmproxy CA (created here, by mitmproxy, if it does not exist yet)."""

from __future__ import annotations

import argparse
import shlex
import textwrap
from pathlib import Path

from cli.runtimes import JAVA_STORE, NOTES, environment, java_truststore

DEFAULT_PROXY = "http://127.0.0.1:8080"
DEFAULT_CONFDIR = "~/.mitmproxy"
BUNDLE = "~/.tapgate/ca-bundle.pem"
SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")


def mitmproxy_ca(confdir: Path) -> Path:
    """The mitmproxy CA certificate, created the way mitmproxy creates it if it does not exist yet."""
    from mitmproxy.certs import CertStore
    from mitmproxy.options import CONF_BASENAME, KEY_SIZE

    cert = confdir / f"{CONF_BASENAME}-ca-cert.pem"
    if not cert.exists():
        CertStore.from_store(confdir, CONF_BASENAME, KEY_SIZE)
    return cert


def system_roots() -> str:
    """The machine's trusted roots, so one bundle serves the gateway's hosts and every other host."""
    import ssl  # here, not at the top: every `tapgate` command imports this module for its flags

    candidates = [ssl.get_default_verify_paths().cafile, *SYSTEM_BUNDLES]
    try:
        import certifi

        candidates.append(certifi.where())
    except ImportError:
        pass
    for path in candidates:
        if path and Path(path).is_file():
            return Path(path).read_text()
    return ""


def write_bundle(ca: Path, bundle: Path) -> Path:
    """System roots plus the mitmproxy CA: SSL_CERT_FILE replaces the trust store, it does not add to it."""
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_text(system_roots().rstrip("\n") + "\n" + ca.read_text())
    return bundle


def shell_lines(values: dict[str, str], shell: str) -> list[str]:
    if shell == "fish":
        return [f"set -gx {k} {v!r};" for k, v in values.items()]
    if shell == "powershell":
        return [f'$env:{k} = "{v}"' for k, v in values.items()]
    return [f"export {k}={shlex.quote(v)}" for k, v in values.items()]


def cmd_shell_init(args: argparse.Namespace) -> int:
    ca = mitmproxy_ca(Path(args.confdir).expanduser())
    bundle = write_bundle(ca, Path(args.bundle).expanduser())
    java = None if args.no_java else java_truststore(ca, Path(args.java_store).expanduser())
    print(f"# tapgate: send this shell's HTTPS through the gateway at {args.proxy} and trust its CA.")
    print('# Use: eval "$(tapgate shell-init)"   (fish: tapgate shell-init --shell fish | source)')
    for note in NOTES:
        print(textwrap.fill(note, 110, initial_indent="# ", subsequent_indent="#   "))
    if java is None and not args.no_java:
        print("# Java: no keytool (JDK) found, so no JAVA_TOOL_OPTIONS: Java's calls would not go through.")
    print("\n".join(shell_lines(environment(args.proxy, ca, bundle, java), args.shell)))
    return 0


def add_command(sub) -> None:
    """`tapgate shell-init` and its flags, on the command's subparsers."""
    s = sub.add_parser(
        "shell-init",
        help="print the environment lines that send a shell's traffic through the gateway",
        description="Print HTTPS_PROXY and CA-trust lines for Python, curl, Node, Java and Go, with a note on what "
        "each runtime honours. Creates the mitmproxy CA if it does not exist yet, a bundle of the system roots "
        "plus that CA, and (where a JDK is installed) a Java trust store with that CA.",
    )
    s.add_argument("--proxy", default=DEFAULT_PROXY, help=f"the gateway's proxy URL (default {DEFAULT_PROXY})")
    s.add_argument("--confdir", default=DEFAULT_CONFDIR, help=f"mitmproxy's confdir (default {DEFAULT_CONFDIR})")
    s.add_argument("--bundle", default=BUNDLE, help=f"where to write the CA bundle (default {BUNDLE})")
    s.add_argument("--java-store", default=JAVA_STORE, help=f"where to write the Java trust store (default {JAVA_STORE})")
    s.add_argument("--no-java", action="store_true", help="print no JAVA_TOOL_OPTIONS (and run no keytool)")
    s.add_argument("--shell", choices=("sh", "fish", "powershell"), default="sh", help="syntax (default sh)")
    s.set_defaults(func=cmd_shell_init)
