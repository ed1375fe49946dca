"""Render a benchmark's report.html in headless Chromium and keep screenshots, to look at it.

    python benchmarks/report_render.py [--out benchmarks/results/report_render] [--size 128] [--keep-run DIR] [--full]

Runs ``mrrecon benchmark`` on a small simulated set (4 subjects, 8 coils, 2 slices; 6 classical methods;
random1d and poisson2d at 4x and 8x), then ``chromium --headless --screenshot`` at a 1280 px wide window, and
writes ``<out>_top.png`` (the first screen: header and tables), ``<out>_figure.png`` (the first setting's figures:
the page's head and that section alone, laid out as in the report), ``<out>_plot.png`` (the PSNR-vs-time section),
with ``--full`` ``<out>.png`` (the whole page, several MB), and ``<out>.json`` (what was rendered: figure sizes
against the page width, headings, captions, timings). Chromium comes from the Debian package ``chromium``
(``apt-get install chromium``); without it the script stops with a message. The flags keep Chromium off the
network and out of the user's profile (a fresh --user-data-dir per screenshot).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = "zero-filled,cg-sense,l1-wavelet,tv,grappa,spirit"
WIDTH = 1280
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("report_render: no chromium found; install the Debian package 'chromium' (apt-get install chromium)")


def screenshot(html: Path, png: Path, height: int) -> None:
    """Chromium's screenshot of ``html`` in a WIDTH x ``height`` window."""
    with tempfile.TemporaryDirectory(prefix="mrrecon-chromium-") as profile:
        cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}",
               f"--screenshot={png}", html.resolve().as_uri()]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if run.returncode != 0 or not png.is_file():
        sys.exit(f"report_render: chromium failed ({run.returncode}): {run.stderr[-2000:]}")


def section_page(html: Path, anchor: str, dest: Path) -> Path:
    """A page with the report's head (same CSS, same width rules) and only the section that starts at the ``<h2>``
    with id ``anchor`` (up to the next ``<h2>``): the section exactly as the report lays it out, in one window."""
    page = html.read_text()
    head = page[:page.index("<body>") + len("<body>")]
    start = page.index(f'<h2 id="{anchor}">')
    end = page.find("<h2", start + 4)
    dest.write_text(head + page[start:end if end > 0 else page.index("</body>")] + "</body></html>")
    return dest


def page_facts(html: Path) -> dict:
    """Headings and embedded image sizes of the report (are the figures within the page's width?)."""
    from PIL import Image

    page = html.read_text()
    images = []
    for alt, data in re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"', page):
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            images.append({"alt": alt, "width": im.width, "height": im.height})
    return {"h2": re.findall(r"<h2>([^<]*)</h2>", page), "table_headings": re.findall(r"<h3>([^<]*)</h3>", page),
            "captions": re.findall(r'<p class="cap">([^<]*)</p>', page), "images": images,
            "max_image_width": max((i["width"] for i in images), default=0), "has_elapsed": "Elapsed: " in page}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(HERE / "results" / "report_render"), help="path prefix of the outputs")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--keep-run", default=None, help="benchmark folder to keep (default: a temporary one)")
    ap.add_argument("--full", action="store_true", help="also the whole page as <out>.png (several MB)")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    mrrecon = [sys.executable, "-m", "mrrecon"]
    with tempfile.TemporaryDirectory(prefix="mrrecon-report-render-") as tmp:
        tmp = Path(tmp)
        run_dir = Path(args.keep_run) if args.keep_run else tmp / "bench"
        t0 = time.perf_counter()
        subprocess.run([*mrrecon, "simulate", "--out", str(tmp / "sim"), "--subjects", "4", "--size", str(args.size),
                        "--coils", "8", "--contrasts", "T2", "--slices", "2", "--seed", "0"], check=True)
        t_sim = time.perf_counter() - t0
        cmd = [*mrrecon, "benchmark", "--data", str(tmp / "sim"), "--methods", METHODS, "--masks",
               "random1d,poisson2d", "--accels", "4,8", "--out", str(run_dir), "--overwrite"]
        t0 = time.perf_counter()
        bench = subprocess.run(cmd, capture_output=True, text=True)
        t_bench = time.perf_counter() - t0
        if bench.returncode != 0:
            sys.exit(f"report_render: the benchmark failed:\n{bench.stdout}\n{bench.stderr}")
        html = run_dir / "report.html"
        facts = page_facts(html)
        # Page height: enough for every embedded image at its own size plus the text (a generous estimate).
        height = 1400 + sum(i["height"] + 80 for i in facts["images"])
        t0 = time.perf_counter()
        shot = None
        if args.full:  # the whole page (large: MR images compress poorly)
            screenshot(html, out.with_suffix(".png"), height)
            from PIL import Image

            with Image.open(out.with_suffix(".png")) as im:
                shot = {"width": im.width, "height": im.height}
        screenshot(html, out.with_name(out.name + "_top.png"), 1000)
        for anchor, suffix, h in (("figures-0", "_figure.png", 2000), ("psnr-vs-time", "_plot.png", 900)):
            screenshot(section_page(html, anchor, tmp / f"{anchor}.html"), out.with_name(out.name + suffix), h)
        t_chromium = time.perf_counter() - t0
    doc = {"command": "python benchmarks/report_render.py",
           "benchmark": " ".join(["mrrecon", *cmd[3:]]).replace(str(tmp), "<tmp>"),
           "window_width_px": WIDTH, "screenshot": shot, "page": facts,
           "figures_fit_the_page": facts["max_image_width"] <= 1200,  # the page's max-width
           "seconds": {"simulate": round(t_sim, 1), "benchmark": round(t_bench, 1),
                       "chromium": round(t_chromium, 1)}}
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: doc[k] for k in ("screenshot", "figures_fit_the_page", "seconds")}, indent=2))
    print(f"wrote {out.parent}/{out.name}{{{'.png,' if args.full else ''}_top.png,_figure.png,_plot.png,.json}}")


if __name__ == "__main__":
    main()
