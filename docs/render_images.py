"""Render a job summary and a PR comment (markdown files written by `modal-gpu-action run`) to the
PNG shown in README.md, with GitHub's own markdown renderer (cmarkgfm) and headless Chromium.

    uv run python docs/render_images.py SUMMARY.md COMMENT.md docs/images/report.png
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cmarkgfm
from cmarkgfm.cmark import Options

STYLE = """
body { font: 14px/1.5 -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif; color: #1f2328;
       margin: 0; padding: 16px; background: #f6f8fa; display: flex; gap: 16px; align-items: flex-start; }
.panel { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 16px; width: 680px; }
.label { font-size: 12px; color: #59636e; border-bottom: 1px solid #d0d7de; margin: 0 -16px 8px;
         padding: 0 16px 8px; font-weight: 600; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; display: block; width: max-content; max-width: 100%; overflow: auto; }
td, th { border: 1px solid #d0d7de; padding: 4px 10px; }
th { background: #f6f8fa; }
code, pre { font: 12px ui-monospace, 'DejaVu Sans Mono', monospace; background: #f6f8fa; }
pre { padding: 8px; overflow: hidden; white-space: pre-wrap; }
h2 { font-size: 20px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 16px; }
"""


def to_html(markdown: str) -> str:
    options = Options.CMARK_OPT_UNSAFE  # GitHub's tag filter is still applied by the extension
    return str(cmarkgfm.github_flavored_markdown_to_html(markdown, options=options))


def main(summary: Path, comment: Path, png: Path) -> None:
    page = f"""<!doctype html><html><head><meta charset="utf-8"><style>{STYLE}</style></head><body>
<div class="panel"><div class="label">Job summary</div>{to_html(summary.read_text())}</div>
<div class="panel"><div class="label">Pull request comment</div>{to_html(comment.read_text())}</div>
</body></html>"""
    with tempfile.TemporaryDirectory() as scratch:
        html = Path(scratch) / "page.html"
        html.write_text(page, encoding="utf-8")
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                f"--user-data-dir={scratch}/profile",
                "--window-size=1496,620",
                f"--screenshot={png.resolve()}",
                html.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
