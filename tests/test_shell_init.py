"""`tapgate shell-init`: the mitmproxy CA created once, a bundle that trusts it beside the system roots,
and lines each shell accepts."""

import shutil
import subprocess
from pathlib import Path

from cli.main import main


def shell_init(capsys, tmp_path, *flags) -> str:
    argv = ["shell-init", "--confdir", str(tmp_path / "conf"), "--bundle", str(tmp_path / "bundle.pem"),
            "--java-store", str(tmp_path / "java-store"), *flags]
    assert main(argv) == 0
    return capsys.readouterr().out


def test_it_creates_the_ca_once_and_a_bundle_that_ends_with_it(capsys, tmp_path):
    shell_init(capsys, tmp_path)
    ca = tmp_path / "conf" / "mitmproxy-ca-cert.pem"
    first = ca.read_text()
    assert first.startswith("-----BEGIN CERTIFICATE-----")
    bundle = (tmp_path / "bundle.pem").read_text()
    assert bundle.endswith(first) and bundle.count("BEGIN CERTIFICATE") > 1  # the system roots come first
    shell_init(capsys, tmp_path)
    assert ca.read_text() == first  # an existing CA is kept: clients that trust it go on trusting it


def test_sh_takes_the_lines_as_they_are_printed(capsys, tmp_path):
    out = shell_init(capsys, tmp_path, "--proxy", "http://127.0.0.1:9090")
    script = out + 'printf "%s|%s|%s" "$HTTPS_PROXY" "$SSL_CERT_FILE" "$NODE_EXTRA_CA_CERTS"'
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10)
    assert done.stdout == "|".join(["http://127.0.0.1:9090", str(tmp_path / "bundle.pem"),
                                    str(tmp_path / "conf" / "mitmproxy-ca-cert.pem")])


def test_every_runtime_gets_its_lines_and_the_caveats_are_said(capsys, tmp_path):
    out = shell_init(capsys, tmp_path, "--proxy", "http://127.0.0.1:9090")
    script = out + 'printf "%s\\n%s" "$NODE_OPTIONS" "$JAVA_TOOL_OPTIONS"'
    node, java = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10).stdout.split("\n")
    preload = node.removeprefix("--require=")
    assert preload.endswith("proxy-preload.cjs") and Path(preload).is_file()
    assert "aiohttp needs ClientSession(trust_env=True)" in " ".join(out.split())
    assert "java.net.http.HttpClient uses no proxy" in " ".join(out.split())
    if shutil.which("keytool"):
        assert "-Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=9090" in java
        assert f"-Djavax.net.ssl.trustStore={tmp_path / 'java-store'}" in java
        assert (tmp_path / "java-store").is_file()
    else:
        assert java == "" and "no keytool (JDK) found" in out


def test_no_java(capsys, tmp_path):
    assert "export JAVA_TOOL_OPTIONS" not in shell_init(capsys, tmp_path, "--no-java")
    assert not (tmp_path / "java-store").exists()


def test_fish_and_powershell_get_their_own_syntax(capsys, tmp_path):
    fish = shell_init(capsys, tmp_path, "--shell", "fish")
    assert "set -gx HTTPS_PROXY 'http://127.0.0.1:8080';" in fish
    powershell = shell_init(capsys, tmp_path, "--shell", "powershell")
    assert '$env:HTTPS_PROXY = "http://127.0.0.1:8080"' in powershell
