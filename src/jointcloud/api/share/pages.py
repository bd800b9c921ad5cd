"""The HTML of link sharing: an object's page, a prefix's listing and the
page that says why a link does not work. Every name and value goes through
``esc`` (``html.escape``, quotes too); URLs are built from percent-encoded
segments and escaped again where they stand in an attribute. The pages carry
no script."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from urllib.parse import quote

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
color:#1d232a;background:#f5f7fa}
header{background:#1f3a5f;color:#fff;padding:.8em 1.5em;font-weight:600}
main{max-width:60em;margin:1.5em auto;padding:0 1em}
.card{background:#fff;border:1px solid #d8dee6;border-radius:8px;padding:1.2em 1.5em;
margin-bottom:1em}
h1{font-size:1.3em;word-break:break-all;margin:.2em 0 .6em}
dl{display:grid;grid-template-columns:max-content auto;gap:.3em 1em;margin:0}
dt{color:#5b6673}dd{margin:0;word-break:break-all}
a{color:#1d5fa8}
.button{display:inline-block;background:#1d5fa8;color:#fff;padding:.5em 1.1em;
border-radius:6px;text-decoration:none;font-weight:600;margin-right:.5em}
.crumbs{margin-bottom:.8em;word-break:break-all}
.note{color:#5b6673;font-size:.9em}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.35em .5em;border-bottom:1px solid #e7ebf0;word-break:break-all}
td.n{text-align:right;white-space:nowrap}
pre{background:#f3f5f8;padding:1em;overflow:auto;max-height:40em;white-space:pre-wrap;
word-break:break-word}
.preview img,.preview video{max-width:100%;max-height:70vh}
.preview iframe{width:100%;height:70vh;border:0}
"""


# The bidirectional embeddings, overrides and isolates reorder what a name
# shows: ``rtl\u202egnp.exe`` reads as "rtlexe.png". In names and other
# short values they are shown as their code points. (Joiners and the
# LRM/RLM marks stay: names in Persian, Arabic or with emoji need them.)
_REORDERING = {c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def esc(value: object) -> str:
    """``value`` as HTML text, with bidirectional controls made visible."""
    return escape(str(value).translate(_REORDERING), quote=True)


def esc_text(value: str) -> str:
    """A file's text as HTML, as it is (a preview shows the file)."""
    return escape(value, quote=True)


DOT_SEGMENTS = frozenset({".", ".."})


def url_path(*segments: str) -> str:
    """A URL path from segments (each may hold ``/``, kept as separators);
    every other reserved character percent-encoded.

    A key's ``.`` or ``..`` part is joined to the part before it by ``%2F``
    instead of ``/``: standing alone, browsers (WHATWG URL) remove it, and
    ``%2E``/``%2E%2E`` too, so the link would name another key. The
    server decodes ``%2F`` before splitting the path, so it reads the same
    key. Empty parts (``a//b``) are kept by browsers and stay as they are."""
    out = ""
    for part in "/".join(segments).split("/"):
        glue = "%2F" if out and part in DOT_SEGMENTS else "/"
        out += glue + quote(part, safe="")
    return out


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # unreachable


def when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def document(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        '<meta name=referrer content="no-referrer">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body><header>JointCloud shared files</header><main>{body}</main></body></html>\n"
    )


def error_page(status: int, title: str, message: str) -> str:
    body = (
        f'<div class="card"><h1>{esc(title)}</h1><p>{esc(message)}</p>'
        f'<p class="note">HTTP {status}</p></div>'
    )
    return document(title, body)


@dataclass(frozen=True)
class Crumb:
    label: str
    href: str | None  # None: the current place


def crumbs_html(crumbs: Sequence[Crumb]) -> str:
    parts = []
    for c in crumbs:
        if c.href is None:
            parts.append(f"<strong>{esc(c.label)}</strong>")
        else:
            parts.append(f'<a href="{esc(c.href)}">{esc(c.label)}</a>')
    return '<nav class="crumbs">' + " / ".join(parts) + "</nav>"


def breadcrumbs(access: str, bucket: str, path: str) -> list[Crumb]:
    """Links to the bucket and every prefix above ``path`` (the last part,
    the current place, without a link)."""
    if not path:
        return [Crumb(bucket, None)]
    out = [Crumb(bucket, url_path("s", access, bucket) + "/")]
    parts = path.split("/")
    trailing = path.endswith("/")
    if trailing:
        parts = parts[:-1]
    so_far = ""
    for i, part in enumerate(parts):
        so_far += part
        last = i == len(parts) - 1
        if last and not trailing:
            out.append(Crumb(part, None))
        else:
            so_far += "/"
            out.append(Crumb(part + "/", url_path("s", access, bucket, so_far)))
    if trailing:
        out[-1] = Crumb(out[-1].label, None)
    return out


@dataclass(frozen=True)
class ObjectView:
    access: str
    bucket: str
    path: str
    size: int
    content_type: str
    modified: datetime
    etag: str
    can_read: bool
    preview: str | None  # image, video, audio, pdf, text
    text: str | None = None  # the text preview (already decoded)
    truncated: bool = False
    expires: datetime | None = None


def object_page(view: ObjectView) -> str:
    name = view.path.rsplit("/", 1)[-1] or view.path
    raw = url_path("raw", view.access, view.bucket, view.path)
    preview = ""
    if view.can_read:
        src = esc(raw)
        if view.preview == "image":
            preview = f'<img id="preview" src="{src}" alt="{esc(name)}">'
        elif view.preview == "video":
            preview = f'<video id="preview" controls preload="metadata" src="{src}"></video>'
        elif view.preview == "audio":
            preview = f'<audio id="preview" controls preload="metadata" src="{src}"></audio>'
        elif view.preview == "pdf":
            preview = (
                f'<iframe id="preview" src="{src}" title="{esc(name)}"></iframe>'
                f'<p class="note"><a href="{src}">Open the PDF</a></p>'
            )
        elif view.preview == "text" and view.text is not None:
            note = (
                '<p class="note">The first 64 KiB are shown; download the file for the rest.</p>'
                if view.truncated
                else ""
            )
            preview = f'<pre id="preview">{esc_text(view.text)}</pre>{note}'
    if view.can_read:
        actions = (
            f'<p><a class="button" id="download" href="{esc(raw)}?download" '
            f'download="{esc(name)}">Download</a>'
            f'<a href="{esc(raw)}">Raw</a></p>'
        )
    else:
        actions = (
            '<p class="note">This link allows listing only: the file cannot be downloaded.</p>'
        )
    expiry = (
        f"<dt>Link expires</dt><dd>{esc(when(view.expires))}</dd>"
        if view.expires is not None
        else ""
    )
    body = (
        crumbs_html(breadcrumbs(view.access, view.bucket, view.path))
        + f'<div class="card"><h1 id="name">{esc(name)}</h1><dl>'
        f"<dt>Path</dt><dd>{esc(view.bucket)}/{esc(view.path)}</dd>"
        f'<dt>Size</dt><dd id="size">{esc(human_size(view.size))}</dd>'
        f'<dt>Type</dt><dd id="type">{esc(view.content_type)}</dd>'
        f"<dt>Modified</dt><dd>{esc(when(view.modified))}</dd>"
        f"<dt>ETag</dt><dd>{esc(view.etag)}</dd>{expiry}</dl>{actions}</div>"
    )
    if preview:
        body += f'<div class="card preview">{preview}</div>'
    return document(name, body)


@dataclass(frozen=True)
class Entry:
    name: str  # shown (relative to the listed prefix)
    href: str
    size: int | None  # None: a prefix
    modified: datetime | None = None
    raw: str | None = None  # a download link, where reads are allowed


@dataclass(frozen=True)
class ListingView:
    access: str
    bucket: str
    prefix: str
    entries: Sequence[Entry]
    next_href: str | None
    zip_href: str | None
    # False: the link forbids reading altogether (not merely here).
    can_read: bool
    expires: datetime | None = None


def listing_page(view: ListingView) -> str:
    rows = []
    for e in view.entries:
        kind = "dir" if e.size is None else "file"
        size = "" if e.size is None else esc(human_size(e.size))
        raw = (
            f'<a href="{esc(e.raw)}?download" download="{esc(e.name)}">download</a>'
            if e.raw is not None
            else ""
        )
        rows.append(
            f'<tr class="{kind}"><td><a class="item" href="{esc(e.href)}">{esc(e.name)}</a></td>'
            f'<td class="n">{size}</td><td>{esc(when(e.modified))}</td><td>{raw}</td></tr>'
        )
    table = (
        "<table><thead><tr><th>Name</th><th>Size</th><th>Modified</th><th></th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="note">Nothing here that this link can show.</p>'
    )
    more = (
        f'<p><a id="next" href="{esc(view.next_href)}">Next page</a></p>' if view.next_href else ""
    )
    zip_link = (
        f'<p><a class="button" id="zip" href="{esc(view.zip_href)}">Download all as zip</a></p>'
        if view.zip_href
        else ""
    )
    if not view.can_read:
        zip_link = '<p class="note">This link allows listing only: files cannot be downloaded.</p>'
    expiry = (
        f'<p class="note">This link expires {esc(when(view.expires))}.</p>'
        if view.expires is not None
        else ""
    )
    title = f"{view.bucket}/{view.prefix}"
    body = (
        crumbs_html(breadcrumbs(view.access, view.bucket, view.prefix))
        + f'<div class="card"><h1>{esc(title)}</h1>{zip_link}{table}{more}{expiry}</div>'
    )
    return document(title, body)


def buckets_page(access: str, names: Sequence[str]) -> str:
    items = "".join(
        f'<li><a class="item" href="{esc(url_path("s", access, n) + "/")}">{esc(n)}</a></li>'
        for n in names
    )
    body = (
        '<div class="card"><h1>Buckets</h1>'
        + (f"<ul>{items}</ul>" if items else '<p class="note">No bucket to show.</p>')
        + "</div>"
    )
    return document("Buckets", body)
