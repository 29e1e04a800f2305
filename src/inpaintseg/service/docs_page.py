"""``GET /docs``: the OpenAPI schema rendered as a plain page here (no CDN: the page works offline)."""

from __future__ import annotations

from html import escape


def api_docs_html(schema: dict) -> str:
    """The OpenAPI schema as a plain page: each route with its summary and form fields, and each answer's
    fields with type and description (units included). Nothing is loaded from elsewhere."""
    components = schema.get("components", {}).get("schemas", {})

    def fields(name: str) -> str:
        props = components.get(name, {}).get("properties", {})
        rows = "".join(f"<tr><td><code>{escape(k)}</code></td><td>{escape(_type(v))}</td>"
                       f"<td>{escape(v.get('description', ''))}</td></tr>" for k, v in props.items())
        return f"<table><tr><th>field</th><th>type</th><th>meaning</th></tr>{rows}</table>"

    parts = [f"<h1>{escape(schema['info']['title'])} {escape(schema['info']['version'])}: HTTP API</h1>"
             f"<p>{escape(schema['info'].get('description', ''))} The machine-readable schema is "
             "<a href='/openapi.json'>/openapi.json</a>.</p>"]
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            parts.append(f"<h2><code>{method.upper()} {escape(path)}</code></h2><p>{escape(op.get('summary', ''))}</p>")
            form = op.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema", {})
            if form:
                rows = "".join(f"<tr><td><code>{escape(k)}</code></td><td>{escape(v.get('description', ''))}</td></tr>"
                               for k, v in form.get("properties", {}).items())
                parts.append(f"<h3>form fields (multipart/form-data)</h3><table>{rows}</table>")
            for status, answer in op.get("responses", {}).items():
                ref = answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
                name = ref.rsplit("/", 1)[-1]
                error = " (JSON body: error, status, message)" if name == "ErrorBody" else ""
                parts.append(f"<h3>{escape(status)}: {escape(answer.get('description', ''))}{error}</h3>")
                if name in components and status == "200":
                    parts.append(fields(name))
    for name in ("VerdictBody", "QualityBody"):
        parts.append(f"<h2>{name}</h2>" + fields(name))
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>inpaintseg API</title>"
            "<link rel='stylesheet' href='/static/style.css'></head><body class='docs'>" + "".join(parts)
            + "</body></html>")


def _type(prop: dict) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " | ".join(_type(p) for p in prop["anyOf"])
    return prop.get("type", "object")
