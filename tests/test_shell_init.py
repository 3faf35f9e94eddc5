"""`tapgate shell-init`: the mitmproxy CA created once, a bundle that trusts it beside the system roots,
and lines each shell accepts."""

import subprocess

from cli.main import main


def shell_init(capsys, tmp_path, *flags) -> str:
    argv = ["shell-init", "--confdir", str(tmp_path / "conf"), "--bundle", str(tmp_path / "bundle.pem"), *flags]
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


def test_fish_and_powershell_get_their_own_syntax(capsys, tmp_path):
    fish = shell_init(capsys, tmp_path, "--shell", "fish")
    assert "set -gx HTTPS_PROXY 'http://127.0.0.1:8080';" in fish
    powershell = shell_init(capsys, tmp_path, "--shell", "powershell")
    assert '$env:HTTPS_PROXY = "http://127.0.0.1:8080"' in powershell
