"""Headless Chromium against picamd's pages, in real time (cdp.py).

usage: python3 browser.py http://127.0.0.1:PORT OUT_DIR [CHROMIUM]

Checks, each printed as `PASS name: detail` or `FAIL name: detail`:
  - `/` (the still page) shows a 640x480 image and refreshes it: at least
    two images loaded after ~4 s, and the pixels differ between two of them
    (the test pattern's clock moves); screenshot OUT_DIR/still.png.
  - `/stream` (the live page) draws frames: window.picamd.framesDrawn grows
    over one second, and a hash of the canvas pixels differs between two
    moments; screenshot OUT_DIR/stream.png.
  - `/stream?encoding=base64` also draws frames (the article's text mode).
Exits 1 if any check failed. Standard library only.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser  # noqa: E402

# A hash of every pixel, with how much of the picture is not black and how
# many distinct colours a sample has: a blank or flat canvas fails the check
# even if its hash changes. FNV-1a over RGB.
PIXELS_JS = """
((el) => {
  let c = el;
  if (el instanceof HTMLImageElement) {
    if (!el.complete || !el.naturalWidth) return null;
    c = document.createElement('canvas');
    c.width = el.naturalWidth; c.height = el.naturalHeight;
    c.getContext('2d').drawImage(el, 0, 0);
  }
  if (!c.width || !c.height) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0x811c9dc5, lit = 0;
  const colours = new Set();
  for (let i = 0; i < d.length; i += 4) {
    h = Math.imul(h ^ d[i], 0x01000193) >>> 0;
    h = Math.imul(h ^ d[i + 1], 0x01000193) >>> 0;
    h = Math.imul(h ^ d[i + 2], 0x01000193) >>> 0;
    if (d[i] + d[i + 1] + d[i + 2] > 48) lit++;
    if (i % 256 === 0) colours.add((d[i] >> 4) << 8 | (d[i + 1] >> 4) << 4 | d[i + 2] >> 4);
  }
  return { w: c.width, h: c.height, hash: h.toString(16), lit: lit / (d.length / 4),
           colours: colours.size };
})(document.querySelector(SELECTOR))
"""

failures = 0


def report(name, ok, detail):
    global failures
    failures += 0 if ok else 1
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def pixels(b, selector):
    return b.eval(PIXELS_JS.replace("SELECTOR", repr(selector)))


def looks_like_pattern(p):
    """Not blank, not flat: a picture with content."""
    return p is not None and p["lit"] > 0.05 and p["colours"] >= 8


def still_page(b, base, out):
    b.navigate(base + "/")
    t0 = time.monotonic()
    b.wait_for(lambda: (b.eval("window.picamd && window.picamd.imagesLoaded") or 0) >= 1, 10,
               "the first image")
    first = pixels(b, "#still")
    n_first = b.eval("window.picamd.imagesLoaded")
    # The page refreshes every 1.5 s by default: give it ~4 s in all.
    time.sleep(max(0.0, 4.0 - (time.monotonic() - t0)))
    b.wait_for(lambda: b.eval("window.picamd.imagesLoaded") > n_first, 5, "a refreshed image")
    st = b.eval("({state: picamd.state, n: picamd.imagesLoaded, errors: picamd.errors, "
                "w: picamd.width, h: picamd.height, err: picamd.lastError})")
    later = pixels(b, "#still")
    size = b.screenshot(os.path.join(out, "still.png"))
    secs = time.monotonic() - t0
    report("chromium / still page shows the image",
           st["state"] == "ok" and (st["w"], st["h"]) == (640, 480) and looks_like_pattern(later),
           f"state {st['state']}, {st['w']}x{st['h']}, {later['lit']:.0%} lit, {later['colours']} colours"
           f"{', error ' + repr(st['err']) if st['err'] else ''}; still.png {size} B")
    report("chromium / still page refreshes",
           st["n"] >= 2 and st["errors"] == 0 and first is not None and first["hash"] != later["hash"],
           f"imagesLoaded {st['n']} after {secs:.1f} s, {st['errors']} errors, "
           f"pixels {first and first['hash']} -> {later['hash']}")


def stream_page(b, base, out, query="", shot=True):
    name = "/stream" + query
    b.navigate(base + name)
    b.wait_for(lambda: (b.eval("window.picamd && window.picamd.framesDrawn") or 0) >= 3, 10,
               "the first frames drawn")
    f1, t1 = b.eval("picamd.framesDrawn"), time.monotonic()
    p1 = pixels(b, "#canvas")
    time.sleep(1.0)
    f2, t2 = b.eval("picamd.framesDrawn"), time.monotonic()
    p2 = pixels(b, "#canvas")
    st = b.eval("({state: picamd.state, fps: picamd.fps, recv: picamd.framesReceived, "
                "dropped: picamd.framesDropped, errors: picamd.decodeErrors, "
                "w: picamd.width, h: picamd.height, connects: picamd.connects})")
    rate = (f2 - f1) / (t2 - t1)
    report(f"chromium {name} draws frames",
           f2 > f1 and st["state"] == "live" and st["errors"] == 0 and st["connects"] == 1,
           f"framesDrawn {f1} -> {f2} in {t2 - t1:.1f} s ({rate:.1f}/s), page fps {st['fps']}, "
           f"received {st['recv']}, dropped {st['dropped']}, decode errors {st['errors']}, "
           f"state {st['state']}, connects {st['connects']}")
    if shot:
        size = b.screenshot(os.path.join(out, "stream.png"))
        report(f"chromium {name} canvas changes",
               looks_like_pattern(p1) and looks_like_pattern(p2) and p1["hash"] != p2["hash"]
               and (p2["w"], p2["h"]) == (640, 480),
               f"canvas {p2['w']}x{p2['h']}, {p2['lit']:.0%} lit, {p2['colours']} colours, "
               f"pixels {p1['hash']} -> {p2['hash']}; stream.png {size} B")


def guarded(b, name, f):
    try:
        f()
    except Exception as e:  # a stuck page is a failed check, with the page's own words
        report(name, False, f"{type(e).__name__}: {e}")
        for line in b.console[-10:]:
            print(f"  page {line}")


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
    base, out = sys.argv[1].rstrip("/"), sys.argv[2]
    chromium = sys.argv[3] if len(sys.argv) == 4 else "chromium"
    os.makedirs(out, exist_ok=True)
    try:
        b = Browser(chromium)
    except Exception as e:
        report("chromium starts", False, f"{type(e).__name__}: {e}")
        sys.exit(1)
    try:
        print(f"{b.version()} against {base}", flush=True)
        guarded(b, "chromium / still page", lambda: still_page(b, base, out))
        guarded(b, "chromium /stream", lambda: stream_page(b, base, out))
        guarded(b, "chromium /stream?encoding=base64",
                lambda: stream_page(b, base, out, "?encoding=base64", shot=False))
        if failures:
            tail = b.stderr_tail()
            if tail:
                print("  chromium stderr:\n" + "\n".join("  | " + line for line in tail.splitlines()))
    finally:
        b.close()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
