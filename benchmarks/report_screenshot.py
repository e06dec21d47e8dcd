"""Screenshot a run's report page into docs/report.png (the README's picture).

The picture shows a real run's page, the demo's, not the test page with its planted tags:

    .venv/bin/tunelab demo                                   # writes demo/midi/run/report/index.html
    .venv/bin/python benchmarks/report_screenshot.py demo/midi/run   # -> docs/report.png

Writes the report first when the run has none (``tunelab report RUN``). Needs Debian's
``chromium`` (``.ci/run`` installs it), driven headless over its DevTools pipe by the same
helper as the report's browser test (``tests/system/headless.py``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Players show their length once the audio's metadata is in (or after 15 s at most).
WAIT_FOR_AUDIO = """(async () => {
  const audios = [...document.querySelectorAll('audio')];
  await Promise.all(audios.map(a => new Promise(done => {
    if (a.readyState >= 1 || a.error) return done();
    a.addEventListener('loadedmetadata', done, {once: true});
    a.addEventListener('error', done, {once: true});
    setTimeout(done, 15000);
  })));
  return audios.length;
})()"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a run directory, e.g. demo/midi/run")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "report.png")
    ap.add_argument("--width", type=int, default=1100)
    ap.add_argument("--height", type=int, default=2400)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))  # the browser helper lives with the tests
    from tests.system.headless import Browser, find_chromium

    if find_chromium() is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    page = args.run / "report" / "index.html"
    if not page.exists():
        from tunelab.report.page import build_report

        page = build_report(args.run)
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(Path(profile), width=args.width, height=args.height)
        try:
            browser.open(page.resolve().as_uri())
            players = browser.evaluate(WAIT_FOR_AUDIO)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            browser.screenshot(args.out)
        finally:
            browser.close()
    print(f"{args.out}: {page} ({players} players), {args.width} x {args.height}")


if __name__ == "__main__":
    main()
