"""The `tapgate` command and its views: reads the store, never imports mitmproxy."""
