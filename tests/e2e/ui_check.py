"""What a user sees in the Dagster UI on the demo, checked on `dg dev` with headless Chromium.

Runs ``scripts/demo.sh --headless`` (one copy run of ``orders``), starts ``dg dev`` on a
free port, then checks, once over GraphQL and once in the rendered pages:

- a Columns section on both assets of ``orders`` (``dagster/column_schema``),
- two node labels a user tells apart in the lineage graph and the catalog list,
- sizes formatted (``dagster/size_bytes``: the UI's Storage shows "544KB", not 544335),

and that ``dg dev`` printed no SupersessionWarning and no "dagster.yaml ... will not be
used".  Screenshots land in ``--out``.  The browser is Debian's ``chromium`` driven by
Playwright (``pip install playwright``; no browser download: Playwright is pointed at
the installed binary).  Without either, the page checks are reported as skipped and the
GraphQL checks still run.

    .venv/bin/python -m tests.e2e.ui_check --out .tdtp/ui_check
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tdtp_assets import names

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXPORT_PATH = list(names.export_key("orders").path)
IMPORT_PATH = list(names.import_key("orders").path)
DAY = "2026-01-07"
# "544KB", "1.9MB": Intl.NumberFormat's compact byte unit, as the UI renders dagster/size_bytes.
SIZE_TEXT = re.compile(r"\b\d+(\.\d+)?\s?[kKMG]B\b")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


@dataclass
class Report:
    """Each fact checked: (what, passed, detail); screenshots taken; why the browser part was skipped."""

    facts: list[tuple[str, bool, str]] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)
    browser_skipped: str = ""

    def check(self, what: str, passed: bool, detail: str = "") -> None:
        self.facts.append((what, bool(passed), detail))

    @property
    def ok(self) -> bool:
        return all(passed for _, passed, _ in self.facts)

    def lines(self) -> list[str]:
        out = [f"{'ok  ' if passed else 'FAIL'} {what}{': ' + detail if detail else ''}" for what, passed, detail in self.facts]
        if self.browser_skipped:
            out.append(f"skip pages: {self.browser_skipped}")
        out += [f"screenshot {path}" for path in self.screenshots]
        return out


# ---------------------------------------------------------------------------- processes
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TDTP_TABLES", "VIRTUAL_ENV")}
    env.update({"TDTP_HOME": str(work / ".tdtp"), "DAGSTER_HOME": str(work / "dagster_home")})
    return env


def run_demo(work: Path) -> str:
    """``scripts/demo.sh --headless``: installs, generates the demo data, one copy run of orders."""
    proc = subprocess.run(
        ["bash", "scripts/demo.sh", "--headless"],
        cwd=ROOT, env={**_env(work), "DEMO_PARTITION": DAY}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/demo.sh --headless failed:\n{output[-3000:]}")
    return output


def _default_sigint() -> None:
    # A process started in the background of a non-interactive shell inherits SIGINT
    # ignored, and Dagster maps SIGTERM onto SIGINT's handler: restore the default so
    # that dg dev stops on SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class DgDev:
    """``dg dev`` on the demo, in its own process group, stopped by that group's id."""

    def __init__(self, work: Path, port: int) -> None:
        self.port = port
        self.log_path = work / "dg_dev.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(BIN / "dg"), "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=_env(work), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_default_sigint,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            self.url + "/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            doc = json.loads(response.read())
        if doc.get("errors"):
            raise RuntimeError(f"GraphQL errors: {doc['errors']}")
        return doc["data"]

    def wait_loaded(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dg dev exited:\n{self.log()[-3000:]}")
            try:
                entries = self.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    return
            except (urllib.error.URLError, OSError, RuntimeError, KeyError):
                pass
            time.sleep(1)
        raise TimeoutError(f"dg dev did not load the code location in {timeout:.0f} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


# ---------------------------------------------------------------------------- GraphQL facts
LOCATIONS = "query { workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"

ASSET = """
query Asset($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      metadataEntries { __typename label }
      assetMaterializations(limit: 1) {
        partition
        metadataEntries {
          __typename label
          ... on IntMetadataEntry { intValue }
          ... on UrlMetadataEntry { url }
          ... on TableSchemaMetadataEntry { schema { columns { name type constraints { nullable } } } }
        }
      }
    }
  }
}
"""

ASSET_KEYS = "query { assetNodes { assetKey { path } } }"


def graphql_facts(dev: DgDev, report: Report) -> None:
    """The same facts the pages show, read from the webserver's GraphQL API."""
    labels = sorted(node["assetKey"]["path"][-1] for node in dev.graphql(ASSET_KEYS)["assetNodes"])
    report.check(
        "graphql: node labels of orders differ (export, target table)",
        "orders" in labels and "orders_export" in labels and len(labels) == len(set(labels)),
        ", ".join(labels),
    )
    for path in (EXPORT_PATH, IMPORT_PATH):
        name = "/".join(path)
        node = dev.graphql(ASSET, {"key": {"path": path}})["assetNodeOrError"]
        if node["__typename"] != "AssetNode":
            report.check(f"graphql: {name} exists", False, node["__typename"])
            continue
        mats = node["assetMaterializations"]
        entries = {e["label"]: e for e in (mats[0]["metadataEntries"] if mats else [])}
        schema = entries.get("dagster/column_schema", {}).get("schema") or {}
        columns = [c["name"] for c in schema.get("columns", [])]
        report.check(f"graphql: {name} materialization has a column schema", "created_at" in columns, ", ".join(columns))
        size = entries.get("dagster/size_bytes", {})
        report.check(
            f"graphql: {name} size is dagster/size_bytes (int)",
            size.get("__typename") == "IntMetadataEntry" and (size.get("intValue") or 0) > 0,
            str(size.get("intValue")),
        )
        url_key = "stream" if path == EXPORT_PATH else "target"
        report.check(
            f"graphql: {name} {url_key} is a URL",
            entries.get(url_key, {}).get("__typename") == "UrlMetadataEntry",
            str(entries.get(url_key, {}).get("url")),
        )


# ---------------------------------------------------------------------------- pages
def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def page_facts(dev: DgDev, report: Report, out: Path) -> None:
    """Render the asset pages, the lineage graph and the catalog list in headless Chromium."""
    chromium = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        report.browser_skipped = "Playwright is not installed (pip install playwright)"
        return
    if chromium is None:
        report.browser_skipped = "no Chromium binary (Debian: apt-get install chromium)"
        return
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1100})
            for path in (EXPORT_PATH, IMPORT_PATH):
                name = "/".join(path)
                _open(page, f"{dev.url}/assets/{name}?view=overview", "Columns")
                text = page.inner_text("body")
                shot = out / f"asset_{path[-1]}.png"
                page.screenshot(path=str(shot), full_page=True)
                report.screenshots.append(shot)
                report.check(f"page: {name} shows a Columns section", "\nColumns\n" in f"\n{text}\n" and "created_at" in text)
                storage = re.search(r"Storage\s*\n\s*(\S+)", text)
                shown = storage.group(1) if storage else ""
                report.check(f"page: {name} shows its size formatted", bool(SIZE_TEXT.fullmatch(shown)), shown)
            _open(page, f"{dev.url}/asset-groups/demo", "orders_export")
            shot = out / "lineage_demo.png"
            page.screenshot(path=str(shot), full_page=True)
            report.screenshots.append(shot)
            labels = _graph_labels(page)
            report.check(
                "page: lineage graph labels the export and the target table differently",
                "orders_export" in labels and "orders" in labels,
                ", ".join(sorted(labels)),
            )
            # The lineage page's side list (the issue read "customers, customers, orders, orders").
            side = [line.strip() for line in page.inner_text("body").splitlines()]
            report.check(
                "page: lineage side list tells the two orders assets apart",
                "orders" in side and "orders_export" in side,
            )
            _open(page, f"{dev.url}/assets", "Asset name")
            shot = out / "catalog.png"
            page.screenshot(path=str(shot), full_page=True)
            report.screenshots.append(shot)
            rows = [line.strip() for line in page.inner_text("body").splitlines()]
            report.check(
                "page: catalog list tells the two orders assets apart",
                "tdtp / export / orders_export" in rows and "tdtp / import / orders" in rows,
            )
        finally:
            browser.close()


def _open(page: Any, url: str, wait_for_text: str) -> None:
    page.goto(url, wait_until="networkidle", timeout=90_000)
    _dismiss_popups(page)
    page.get_by_text(wait_for_text, exact=True).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # late data (live metadata, layout of the graph)
    _dismiss_popups(page)


def _dismiss_popups(page: Any) -> None:
    """The UI's first-visit community dialog covers the page; skip it as a user would."""
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.first.click()
        page.wait_for_timeout(300)


def _graph_labels(page: Any) -> set[str]:
    """The node labels of the lineage graph: each node is an SVG foreignObject whose text starts with it."""
    texts = page.eval_on_selector_all("foreignObject", "els => els.map(e => e.textContent || '')")
    return {t.split("Latest event")[0].strip() for t in texts if "Latest event" in t}


# ---------------------------------------------------------------------------- main
def run(work: Path, out: Path, *, browser: bool = True) -> Report:
    """The whole check on a fresh demo under ``work``; screenshots into ``out``."""
    report = Report()
    demo_output = run_demo(work)
    report.check("demo: no SupersessionWarning", "SupersessionWarning" not in demo_output)
    dev = DgDev(work, _free_port())
    try:
        dev.wait_loaded()
        graphql_facts(dev, report)
        if browser:
            page_facts(dev, report, out)
        else:
            report.browser_skipped = "not asked for"
    finally:
        dev.stop()
    log = dev.log()
    report.check("dg dev: no SupersessionWarning", "SupersessionWarning" not in log)
    report.check("dg dev: no 'dagster.yaml ... will not be used'", "will not be used" not in log)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".tdtp" / "ui_check", help="screenshots go here")
    parser.add_argument("--work", type=Path, default=None, help="demo home (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tdtp_ui_") as tmp:
        report = run(args.work or Path(tmp), args.out.resolve())
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
