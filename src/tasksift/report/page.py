"""The parts every report page shares: style, inline script, tables, PNG figures and the page shell. Nothing
on a page refers to a file or an address outside it.

The inline script marks ``<body data-images-ok="N" data-images-total="M">`` once the browser has decoded N of
the M images, so a headless browser test can check that the page rendered with its images, and filters the
rows of every table that has a search box (``<input class="search" data-table="ID">``) to those whose text
holds the query; an address ending in ``#q=WORDS`` fills the first search box on load.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.grid{display:flex;gap:1em;flex-wrap:wrap}code{background:#f5f5f5;padding:1px 4px}
.text{max-width:28em;white-space:pre-wrap;font-size:.9em}.why{max-width:22em;font-size:.9em}.muted{color:#777}
input.search{font-size:1em;padding:4px 8px;width:24em}svg{border:1px solid #eee;margin:.5em 0;max-width:100%}
"""

SCRIPT = """
function tsFilter(input) {
  var q = input.value.toLowerCase(), shown = 0;
  var rows = document.querySelectorAll('#' + input.getAttribute('data-table') + ' tbody tr');
  Array.prototype.forEach.call(rows, function (r) {
    var words = Array.prototype.map.call(r.cells, function (c) { return c.textContent; }).join(' ');
    var hit = words.toLowerCase().indexOf(q) >= 0;
    r.style.display = hit ? '' : 'none';
    if (hit) { shown += 1; }
  });
  var count = document.getElementById(input.getAttribute('data-table') + '-count');
  if (count) { count.textContent = shown + ' of ' + rows.length + ' rows'; }
  document.getElementById(input.getAttribute('data-table')).setAttribute('data-shown', String(shown));
}
window.addEventListener('load', function () {
  var boxes = document.querySelectorAll('input.search');
  Array.prototype.forEach.call(boxes, function (b) { b.addEventListener('input', function () { tsFilter(b); }); });
  if (boxes.length && location.hash.indexOf('#q=') === 0) {
    boxes[0].value = decodeURIComponent(location.hash.slice(3));
    tsFilter(boxes[0]);
  }
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-ok', String(ok));
  document.body.setAttribute('data-images-total', String(imgs.length));
});
"""


def escape(value: Any) -> str:
    return html.escape(str(value))


def png(fig: Any) -> str:
    """A matplotlib figure as base64 PNG (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def img(name: str, data: str) -> str:
    return f'<img alt="{escape(name)}" src="data:image/png;base64,{data}">'


def table(header: list[str], rows: list[list[Any]], *, table_id: str | None = None, raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (cells already HTML)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    cell = (lambda c: str(c)) if raw else escape
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    ident = f' id="{escape(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def search_box(table_id: str, n: int, placeholder: str) -> str:
    return (f'<p><input class="search" type="search" data-table="{escape(table_id)}" '
            f'placeholder="{escape(placeholder)}" aria-label="{escape(placeholder)}"> '
            f'<span class="muted" id="{escape(table_id)}-count">{n:,} rows</span></p>')


def trim(text: str, limit: int) -> str:
    """``text`` on one line of at most ``limit`` characters (an ellipsis marks a cut)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def document(title: str, body: str) -> str:
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n<script>{SCRIPT}</script></body></html>")
