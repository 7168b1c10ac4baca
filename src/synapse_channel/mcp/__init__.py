"""The MCP server: the hub's tools for assistants that speak MCP (Claude Code, Codex, Gemini, ...).

:mod:`.install` writes the server into an assistant's config and needs no
extra; :mod:`.server` needs the optional ``mcp`` SDK
(``pip install synapse-channel[mcp]``) and is imported only by
``synapse mcp serve``, so the rest of the CLI never loads it.
"""
