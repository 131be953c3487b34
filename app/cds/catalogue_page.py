"""The rule catalogue (docs/catalogue.md) as an HTML page whose heading ids are the anchors cards link to."""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from markdown_it import MarkdownIt

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Rule catalogue – low back pain pathway</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;line-height:1.5}}
h3:target{{background:#fff3c4}}blockquote{{border-left:4px solid #ccd;margin-left:0;padding-left:1rem}}
code{{background:#f3f3f6;padding:0 .2em}}</style></head>
<body><main>
{body}
</main></body></html>
"""


@lru_cache(maxsize=4)
def render(markdown: str, slug: Callable[[str], str]) -> str:
    """HTML of the catalogue; every heading gets `id` = slug(its text), the rule of the cards' links."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(markdown)
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and i + 1 < len(tokens):
            token.attrSet("id", slug(tokens[i + 1].content))
    return PAGE.format(body=md.renderer.render(tokens, md.options, {}))
