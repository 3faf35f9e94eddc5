"""What each runtime needs so its HTTPS goes through the gateway with no code change (Python, curl, Node,
Java, Go), shared by `tapgate shell-init` (lines for a shell) and `tapgate run` (one program's environment)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

NODE_PRELOAD = Path(__file__).with_name("node") / "proxy-preload.cjs"
JAVA_STORE = "~/.tapgate/java-truststore"
JAVA_STORE_PASSWORD = "changeit"  # the JDK's own cacerts password: the store holds only public certificates
NO_PROXY = "localhost,127.0.0.1,::1"

# Said plainly, above the lines: what each runtime honours, and where it needs more than the environment.
NOTES = (
    "Python: requests, httpx and the OpenAI, Anthropic and Google SDKs read HTTPS_PROXY and SSL_CERT_FILE. "
    "aiohttp needs ClientSession(trust_env=True) to read them: without it, its calls bypass the gateway.",
    "curl: reads HTTPS_PROXY and CURL_CA_BUNDLE.",
    "Node: fetch and the SDKs on it (OpenAI, Anthropic) ignore HTTPS_PROXY before Node 24.5/22.21; the preload "
    "in NODE_OPTIONS sends fetch and the https module through the gateway (newer Node: NODE_USE_ENV_PROXY). "
    "NODE_OPTIONS is replaced, not added to. Libraries with their own agent (axios reads HTTPS_PROXY itself) "
    "or their own sockets are not covered.",
    "Java: JAVA_TOOL_OPTIONS sets the proxy and trust store for HttpURLConnection and libraries on the default "
    "ProxySelector (OkHttp, so the OpenAI Java SDK). java.net.http.HttpClient uses no proxy unless built with "
    ".proxy(ProxySelector.getDefault()): that one needs a code change. Java sends no gateway key from the "
    "proxy URL (use an X-Tapgate-Key header). Java prints 'Picked up JAVA_TOOL_OPTIONS' on stderr.",
    "Go: net/http reads HTTPS_PROXY and SSL_CERT_FILE on Linux (on macOS Go uses the system keychain: add the CA "
    "there). Rust (reqwest) reads HTTPS_PROXY; its CA trust depends on how it was built (SSL_CERT_FILE for "
    "native-tls/openssl builds).",
)


def java_truststore(ca: Path, store: Path) -> Path | None:
    """The JDK's trusted roots plus the gateway's CA, made with keytool once (again when the CA is newer).
    None when there is no JDK: Java's lines are then left out."""
    keytool = shutil.which("keytool")
    if keytool is None:
        return None
    if store.exists() and store.stat().st_mtime >= ca.stat().st_mtime:
        return store
    store.parent.mkdir(parents=True, exist_ok=True)
    cacerts = Path(keytool).resolve().parent.parent / "lib" / "security" / "cacerts"
    tmp = store.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    if cacerts.is_file():
        tmp.write_bytes(cacerts.read_bytes())
    done = subprocess.run([keytool, "-importcert", "-noprompt", "-alias", "tapgate-mitmproxy", "-file", str(ca),
                           "-keystore", str(tmp), "-storepass", JAVA_STORE_PASSWORD], capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"keytool could not add the gateway's CA to {store}: {done.stdout}{done.stderr}".strip())
    tmp.replace(store)
    return store


def java_options(proxy: str, store: Path) -> str:
    url = urlsplit(proxy)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    return " ".join([
        f"-Dhttps.proxyHost={host}", f"-Dhttps.proxyPort={port}", f"-Dhttp.proxyHost={host}", f"-Dhttp.proxyPort={port}",
        "-Dhttp.nonProxyHosts=localhost|127.0.0.1|[::1]",
        f"-Djavax.net.ssl.trustStore={store}", f"-Djavax.net.ssl.trustStorePassword={JAVA_STORE_PASSWORD}",
    ])


def environment(proxy: str, ca: Path, bundle: Path, java_store: Path | None) -> dict[str, str]:
    """The variables, runtime by runtime."""
    values = {
        "HTTPS_PROXY": proxy,
        "HTTP_PROXY": proxy,
        "NO_PROXY": NO_PROXY,
        "SSL_CERT_FILE": str(bundle),  # Python (httpx, ssl), Go, OpenSSL-based tools
        "REQUESTS_CA_BUNDLE": str(bundle),  # requests
        "CURL_CA_BUNDLE": str(bundle),  # curl
        "NODE_EXTRA_CA_CERTS": str(ca),  # Node adds this to its own roots
        "NODE_USE_ENV_PROXY": "1",  # Node 24.5+ and 22.21+: fetch and https read HTTPS_PROXY themselves
        "NODE_OPTIONS": f"--require={NODE_PRELOAD}",  # older Node: the preload does it
    }
    if java_store is not None:
        values["JAVA_TOOL_OPTIONS"] = java_options(proxy, java_store)
    return values
