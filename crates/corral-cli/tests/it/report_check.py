"""Checks a `--report FILE.html` of `corral bench` or `corral plan --predict` against the same
run's `--json` (its stdout, saved): the HTML parses with every element closed; each chart
section holds one chart; the run's model names and numbers are in it; FILE.json beside it holds
the same reports plus series; and Debian's Chromium (through Selenium and chromedriver) renders
it, every chart with a size, no console error, to a screenshot.

usage: report_check.py FILE.html STDOUT.json [SCREENSHOT.png]
"""

import json
import os
import sys
from html.parser import HTMLParser

from browser import chromium, console_errors

html_path, stdout_path = sys.argv[1:3]
screenshot = sys.argv[3] if len(sys.argv) > 3 else None
CHARTS = ["throughput-latency", "utilisation", "queue-compute", "layout"]
VOID = {"meta", "link", "br", "img", "input", "hr", "col", "area", "base", "wbr", "source"}


class Document(HTMLParser):
    """Every element closed in order; per section, its charts and its text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.sections, self.section = [], {}, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs["id"]
            self.sections[self.section] = {"svg": 0, "text": [], "chart": attrs.get("data-chart"), "cells": []}
        if tag == "svg" and self.section:
            self.sections[self.section]["svg"] += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-3:]} at {self.getpos()}"
        self.stack.pop()
        if tag == "section":
            self.section = None

    def handle_data(self, data):
        if self.section and data.strip():
            self.sections[self.section]["text"].append(data.strip())
            if self.stack and self.stack[-1] == "td":
                self.sections[self.section]["cells"].append(data.strip())


text = open(html_path).read()
document = Document()
document.feed(text)
document.close()
assert document.stack == [], f"unclosed: {document.stack}"
assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text, "an external asset"

stdout = json.load(open(stdout_path))
points = stdout["points"] if "points" in stdout else [stdout]
names = [m["name"] for m in points[-1]["models"]]
for chart in CHARTS:
    section = document.sections.get(chart)
    assert section is not None, f"no section {chart}: {list(document.sections)}"
    assert section["chart"] == chart and section["svg"] == 1, f"{chart}: {section['svg']} charts"
for name in names:
    for chart in ("throughput-latency", "queue-compute"):
        words = document.sections[chart]["text"]
        assert any(w.startswith(name) for w in words), f"{name} not in {chart}: {words[:20]}"
# The numbers: the throughput table, row by row, as --json says (and, for bench --rate, the
# prediction's rows as FILE.json holds them).
beside = json.load(open(html_path[:-len(".html")] + ".json"))
cells = document.sections["throughput-latency"]["cells"]
rows = [cells[i:i + 9] for i in range(0, len(cells), 9)]


def expect(reports):
    return [[m["name"], f"{m['offered_per_s']:.1f}", f"{m['throughput_per_s']:.1f}", f"{m['p50_ms']:.2f}",
             f"{m['p99_ms']:.2f}", f"{m['queue_ms']['mean']:.2f}", f"{m['compute_ms']:.2f}", str(m["failures"])]
            for r in reports for m in r["models"]]


measured = [r[1:] for r in rows if not r[0].endswith("(predicted)")]
assert measured == expect(points), f"table {measured} against --json {expect(points)}"
predicted = [r[1:] for r in rows if r[0].endswith("(predicted)")]
assert predicted == expect([p["predicted"] for p in beside["points"] if "predicted" in p]), predicted
if beside["title"] == "corral bench" and "cv, seed" in beside["settings"]:
    assert predicted, "bench --rate reports the prediction beside the measurement"
    legend = " ".join(document.sections["throughput-latency"]["text"])
    assert "(predicted)" in legend, legend
queue = " ".join(document.sections["queue-compute"]["text"])
for m in points[-1]["models"]:
    assert m["name"] in queue, queue
assert "Settings" in text and "command" in text

# FILE.json: the same reports, plus series.
assert len(beside["points"]) == len(points)
for mine, theirs in zip(beside["points"], points):
    series = mine.pop("series")
    mine.pop("load")
    mine.pop("predicted", None)
    assert mine == theirs, f"{mine} != {theirs}"
    assert series["interval_s"] == 0.25
    assert len(series["core_busy"]) == len(theirs["cores"]), series["core_busy"]
    assert all(len(c) > 0 and all(0 <= b <= 1 for b in c) for c in series["core_busy"])
    assert len(series["answered_per_s"]) == len(names)
    # Answers counted in steps add up to the calls answered.
    answered = [sum(steps) * series["interval_s"] for steps in series["answered_per_s"]]
    assert all(a >= round(m["throughput_per_s"] * theirs["elapsed_s"]) - 1e-6 for a, m in zip(answered, theirs["models"])), answered

driver = chromium(1200, 900)
try:
    driver.set_page_load_timeout(30)
    driver.get("file://" + os.path.abspath(html_path))
    sizes = driver.execute_script(
        "return [...document.querySelectorAll('section[data-chart] svg')].map(s => {"
        " const r = s.getBoundingClientRect(); return [s.closest('section').id, r.width, r.height]; });")
    assert [s[0] for s in sizes] == CHARTS and all(w > 100 and h > 50 for _, w, h in sizes), sizes
    errors = console_errors(driver)
    assert errors == [], errors
    if screenshot:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1200, height + 40)
        driver.save_screenshot(screenshot)
finally:
    driver.quit()
print(f"report checks passed: {len(points)} load points, models {names}")
