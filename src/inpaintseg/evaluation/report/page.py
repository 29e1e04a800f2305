"""HTML pieces of the report: tables, the metrics table (model next to the baselines, the same rows as
`inpaintseg evaluate` prints), the header and the page. Everything is self-contained (no remote resource)."""

from __future__ import annotations

import html

CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1400px;margin:auto;padding:1em;color:#222}"
    "img{max-width:100%;height:auto}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}tr.chosen{background:#fff3b0;font-weight:bold}"
    ".header td{text-align:left}.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(620px,1fr));"
    "gap:1em}figure{margin:0;border:1px solid #ddd;padding:.4em}figcaption{font-size:.9em}"
    ".note{color:#555;font-size:.92em}.warning{background:#fde2e1;padding:.5em;border-left:4px solid #c00}"
    ".headline{background:#f3f6fc;border-left:5px solid #0b57d0;padding:.6em 1em;font-size:1.05em}"
    ".headline h2{margin-top:.2em}.headline p{margin:.4em 0}.toc{columns:2;max-width:700px}.toc li{margin:.1em 0}"
    ".breakdowns{display:flex;flex-wrap:wrap;gap:0 2em;align-items:flex-start}"
)


def esc(value) -> str:
    return html.escape(str(value))


def table(rows: list[dict], digits: int = 3, chosen=None) -> str:
    """A plain table of dict rows (keys of the first row as the header); ``chosen(row)`` marks a row."""
    if not rows:
        return "<p>(none)</p>"
    keys = list(rows[0])

    def cell(v):
        return f"{v:.{digits}f}" if isinstance(v, float) else esc(v)

    head = "".join(f"<th>{esc(k)}</th>" for k in keys)
    marked = " class='chosen'"
    body = "".join(
        f"<tr{marked if chosen is not None and chosen(r) else ''}>"
        + "".join(f"<td>{cell(r.get(k, ''))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def metrics_table(model_rows: list[tuple[str, str, str]], baselines: dict[str, list[tuple[str, str, str]]]) -> str:
    """Rows (key, label, text) of `evaluation.evaluate.summary_rows` for the model, with the baselines' text
    for the same key beside it. Model cells carry ``data-key`` (tests compare them with `evaluate --json`)."""
    by_key = {name: {key: text for key, _, text in rows} for name, rows in baselines.items()}
    head = "<tr><th>metric</th><th>model</th>" + "".join(f"<th>{esc(n)} (baseline)</th>" for n in baselines) + "</tr>"
    body = []
    for key, label, text in model_rows:
        cells = "".join(f"<td>{esc(by_key[n].get(key, ''))}</td>" for n in baselines)
        body.append(f"<tr><td>{esc(label)}</td><td data-key='{esc(key)}'>{esc(text)}</td>{cells}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


BREAKDOWN_LABELS = {"by_coverage": "truth coverage", "by_family": "family", "by_method": "method",
                    "by_mask_kind": "mask kind", "by_degradation": "degradation"}


def breakdown_table(name: str, groups: dict) -> str:
    """A ``by_*`` breakdown of the summary ({group: {"n": .., "dice_mean": ..}}) as a table (images as a count
    and a percent of all images)."""
    total = sum(info.get("n", 0) for info in groups.values()) or 1
    rows = "".join(f"<tr><td>{esc(g)}</td><td>{info.get('n', '')} ({100 * info.get('n', 0) / total:.0f}%)</td>"
                   f"<td data-key='{esc(name)}.{esc(g)}'>{info['dice_mean']:.4f}</td></tr>"
                   for g, info in groups.items())
    label = BREAKDOWN_LABELS.get(name, name.removeprefix("by_").replace("_", " "))
    return f"<div><h3>Dice by {esc(label)}</h3><table><tr><th>{esc(label)}</th><th>images</th>" \
           f"<th>mean Dice</th></tr>{rows}</table></div>"


def key_values(pairs: list[tuple[str, str]]) -> str:
    return "<table class='header'>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs) \
        + "</table>"


def figure(src: str, caption: str = "", full: str | None = None) -> str:
    """An image (linking to ``full`` or to itself, to open at full size) with a caption."""
    link = full or src
    # loaded eagerly: a printed or captured page has no gaps where lazy images were not yet fetched
    return (f"<figure><a href='{esc(link)}'><img src='{esc(src)}' alt='{esc(src)}'></a>"
            + (f"<figcaption>{caption}</figcaption>" if caption else "") + "</figure>")


def anchor(title: str) -> str:
    return "s-" + "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def with_contents(sections: list[str], lead: int = 1) -> str:
    """The sections with an id on every ``<h2>`` and, after the first ``lead`` sections, a contents list
    linking them."""
    import re

    titles: list[str] = []

    def tag(match) -> str:
        titles.append(html.unescape(match.group(1)))
        return f"<h2 id='{anchor(titles[-1])}'>{match.group(1)}</h2>"

    body = [re.sub(r"<h2>(.*?)</h2>", tag, section) for section in sections]
    toc = "<nav><h2>Contents</h2><ol class='toc'>" + "".join(
        f"<li><a href='#{anchor(t)}'>{esc(t)}</a></li>" for t in titles) + "</ol></nav>"
    return "".join(body[:lead]) + toc + "".join(body[lead:])


def page(title: str, sections: list[str], lead: int = 1) -> str:
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1>" + with_contents(sections, lead) + "</body></html>")
