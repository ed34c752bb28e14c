"""The security headers of every page either service serves: My Library (the node's local API,
:mod:`node.pages`) and the Community Marketplace (the indexer, :mod:`indexer.api.routers.pages`).

One policy for both: scripts, styles, fonts and connections from the page's own origin only (no
inline script or style), images also as ``data:``, no plugins, no ``<base>``, forms only to the
origin, never framed (``frame-ancestors 'none'`` and ``X-Frame-Options``), ``nosniff``, no
referrer, and a browsing context and resources of the page's own origin.
"""

from __future__ import annotations

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
