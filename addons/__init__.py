"""tapgate's mitmproxy addons; addons/gateway.py is the script mitmdump loads."""
