"""The server launcher: `h4backup serve|api|worker|beat`, its TLS and the server-side user and
key commands. The REST client in `cli/` never imports it (an import contract)."""
