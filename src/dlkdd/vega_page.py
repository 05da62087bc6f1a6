"""An HTML page template with Vega, Vega-Lite and Vega-Embed inlined, so Vega charts render with no network.

The libraries come from the pinned ``vl-convert-python`` package (its ``javascript_bundle``; BSD-3-Clause, like the
Vega libraries it bundles), so nothing is vendored in the repository: ``make install`` writes the page once.
``body`` is the placeholder a renderer fills with its chart ``<div>``s (DVC's ``plots.html_template`` contract:
``{plot_divs}``, and no ``{scripts}``, which would add DVC's CDN ``<script>`` tags). The libraries are defined
globally (``vegaEmbed``, ``vega``, ``vegaLite``) before the body's inline scripts run.

    python -m dlkdd.vega_page .dvc/plots.html
"""
from __future__ import annotations

import sys
from pathlib import Path

from dlkdd.atomic import write_text_atomic

VEGA_LITE = "5.21"  # the Vega-Lite major DVC's plot specs are written for (their $schema is vega-lite/v5)
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

_PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- {credits}: inlined, no network needed -->
    <script type="text/javascript">(function () {{ "use strict";
{bundle}
}})();</script>
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {body}
</body>
</html>
"""


def vega_template(body: str = "{plot_divs}", vl_version: str = VEGA_LITE) -> str:
    """The page: an inline script defining the Vega libraries in ``<head>``, then ``body``."""
    import vl_convert as vlc

    bundle = vlc.javascript_bundle(vl_version=vl_version).replace("</script", "<\\/script")
    if any(p in bundle for p in PLACEHOLDERS):  # the renderer would substitute into the library's code
        raise ValueError(f"the vl-convert bundle contains a template placeholder {PLACEHOLDERS}")
    credits = (f"Vega {vlc.get_vega_version()}, Vega-Lite {vl_version}, Vega-Embed {vlc.get_vega_embed_version()} "
               f"from vl-convert-python {vlc.__version__}")
    return _PAGE.format(refresh_tag="{refresh_tag}", credits=credits, bundle=bundle, body=body)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m dlkdd.vega_page OUT.html")
    try:
        page = vega_template()
    except ImportError:
        sys.exit("error: vl-convert-python is not installed: pip install '.[pipeline]'")
    write_text_atomic(Path(args[0]), page)
    print(f"wrote {args[0]} (Vega libraries inlined: charts render offline)")


if __name__ == "__main__":
    main()
