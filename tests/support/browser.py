"""Headless Chromium driven over the Chrome DevTools protocol (CDP): a websocket to one page target,
JSON commands by id. Only what the browser tests and the README screenshot need: navigate, evaluate
JavaScript, wait for a condition, take a screenshot.

Chromium comes from Debian (`.ci/system-deps.sh`); the CDP client is `websocket-client` (`test` extra).
The browser is started with its own profile dir and a free debugging port, and stopped by PID.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.topology import BIN, free_port, launch, wait_until

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")


def browser_path() -> str | None:
    """The first headless-capable Chromium on PATH, or None."""
    return next((found for name in BROWSER_NAMES if (found := shutil.which(name))), None)


class CdpError(RuntimeError):
    pass


class Page:
    """One browser tab, spoken to over its own CDP websocket."""

    def __init__(self, websocket_url: str):
        import websocket  # websocket-client

        self._socket = websocket.create_connection(websocket_url, timeout=30, suppress_origin=True)
        self._ids = itertools.count(1)

    def send(self, method: str, **params) -> dict:
        """One CDP command; returns its result (events that arrive meanwhile are dropped)."""
        command_id = next(self._ids)
        self._socket.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == command_id:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"JavaScript failed: {result['exceptionDetails'].get('text')} in {expression[:120]!r}")
        return result["result"].get("value")

    def navigate(self, url: str, timeout_s: float = 30) -> None:
        """Open `url` and wait until the document and everything it loads has loaded."""
        self.evaluate("window.__studyOldDocument = true")  # gone once the new document replaces this one
        self.send("Page.navigate", url=url)
        self.wait_for("!window.__studyOldDocument && document.readyState === 'complete'", timeout_s, f"load {url}")

    def wait_for(self, expression: str, timeout_s: float, what: str, poll_s: float = 0.25):
        """Poll a JavaScript expression until it is truthy (SPAs render after the load event)."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                text = self.evaluate("document.body ? document.body.innerText.slice(0, 2000) : ''")
                raise TimeoutError(f"{what}: not true after {timeout_s} s: {expression}\npage text:\n{text}")
            time.sleep(poll_s)

    def type_text(self, text: str) -> None:
        """Type into the focused element as a user would (React inputs ignore values set from JS)."""
        self.send("Input.insertText", text=text)

    def press_escape(self) -> None:
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key="Escape", code="Escape", windowsVirtualKeyCode=27)

    def click(self, element_js: str) -> None:
        """A real mouse click on the centre of the element `element_js` evaluates to (menus that
        open on pointer events ignore element.click())."""
        x, y = self.evaluate(f"(() => {{ const r = ({element_js}).getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def drag(self, x: float, y: float, dx: float) -> None:
        """Press the mouse at (x, y), move it by dx, release: e.g. a table column's resize handle."""
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        self.send("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", buttons=1, clickCount=1)
        for step in range(1, 11):
            self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x + dx * step / 10, y=y, button="left", buttons=1)
            time.sleep(0.03)
        self.send("Input.dispatchMouseEvent", type="mouseReleased", x=x + dx, y=y, button="left", buttons=0, clickCount=1)

    def set_viewport(self, width: int, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def screenshot(self, path: Path) -> None:
        png = self.send("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(png))

    def close(self) -> None:
        self._socket.close()


class Browser:
    """A headless Chromium process; `new_page()` opens tabs on it."""

    def __init__(self, executable: str, width: int = 1400, height: int = 900):
        self.profile = Path(tempfile.mkdtemp(prefix="study-chromium-"))
        self.port = free_port()
        argv = [executable, "--headless", f"--remote-debugging-port={self.port}", "--remote-debugging-address=127.0.0.1",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--no-sandbox", "about:blank"]
        # --no-sandbox: the sandbox refuses root and needs user namespaces that containers often lack;
        # the pages opened here are the project's own, on loopback.
        self.managed = launch("chromium", argv, self.profile)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: httpx.get(f"{self.base}/json/version", timeout=2).status_code == 200, 30, "chromium",
                   self.managed)
        self.pages: list[Page] = []

    def new_page(self) -> Page:
        target = httpx.put(f"{self.base}/json/new?about:blank", timeout=10).json()
        page = Page(target["webSocketDebuggerUrl"])
        page.send("Page.enable")
        page.send("Network.enable")
        page.send("Network.setCacheDisabled", cacheDisabled=True)  # a reload shows the files as they are now
        self.pages.append(page)
        return page

    def version(self) -> str:
        return httpx.get(f"{self.base}/json/version", timeout=5).json()["Browser"]

    def close(self) -> None:
        for page in self.pages:
            try:
                page.close()
            except Exception:  # noqa: BLE001 - the browser may be gone already
                pass
        self.managed.stop(grace_s=5)
        shutil.rmtree(self.profile, ignore_errors=True)


def start_mlflow_ui(tracking_uri: str, log_dir: Path):
    """`mlflow server` (what `mlflow ui` runs) on a free loopback port; returns (process, base URL)."""
    port = free_port()
    argv = [str(BIN / "mlflow"), "server", "--backend-store-uri", tracking_uri,
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    managed = launch("mlflow-ui", argv, log_dir, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, 120, "mlflow ui", managed, poll_s=0.3)
    except BaseException:
        managed.stop()
        raise
    return managed, url


# The run-name links of the runs table: what the classic view shows as each run's name.
RUN_NAMES_JS = """Array.from(new Set(Array.from(document.querySelectorAll('a[href*="/runs/"]'))
  .map(a => a.innerText.trim()).filter(t => t.length > 0)))"""
# The (+) beside a parent run: child runs stay folded under their parent until it is clicked.
EXPAND_JS = """(() => { const buttons = document.querySelectorAll('button[data-component-id*="runnamecellrenderer"]');
  buttons.forEach(b => b.click()); return buttons.length; })()"""
CLOSE_ASSISTANT_JS = """(() => { const b = document.querySelector('button[data-component-id="mlflow.assistant.chat_panel.close"]');
  if (b) b.click(); return true; })()"""


def classic_runs_url(mlflow_url: str, experiment_id: str) -> str:
    """The experiment's runs table. MLflow 3.17's UI opens every experiment in its GenAI view
    (traces) unless the sidebar switch says "Model training"; `workflowType` in the URL sets it."""
    return f"{mlflow_url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def open_classic_runs_view(page: Page, mlflow_url: str, experiment_id: str, parent_name: str,
                           child_count: int, timeout_s: float = 60) -> list[str]:
    """Open the experiment's classic runs view, unfold the parent run and wait until the table lists
    the parent and `child_count` more runs; returns the run names shown (in DOM order)."""
    page.navigate(classic_runs_url(mlflow_url, experiment_id), timeout_s)
    page.wait_for(f"({RUN_NAMES_JS}).includes({json.dumps(parent_name)})", timeout_s, "MLflow runs table shows the sweep")
    page.evaluate(CLOSE_ASSISTANT_JS)
    assert page.evaluate(EXPAND_JS) >= 1, "no (+) to unfold the parent run"
    page.wait_for(f"({RUN_NAMES_JS}).length >= {child_count + 1}", timeout_s, "MLflow runs table shows the child runs")
    return page.evaluate(RUN_NAMES_JS)
