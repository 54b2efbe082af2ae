"""`rpgan explore`: the explorer's views and cache, its JSON API and errors, the command, and the
page in a real headless browser (Debian's chromium driven by selenium; skipped without one)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from analysis.explore.server import create_app, listen, url
from analysis.explore.views import ROW_DRAWS, Explorer
from rpgan.io.data import load_data
from rpgan.training.train import train
from tests.conftest import TINY_MODELS, tiny_run

import pandas as pd
import pytest

RPGAN = str(Path(sys.executable).with_name("rpgan"))


def _train(config, out: Path) -> Path:
    train(config, load_data("digits", config.model.image_size, config.model.channels), out, quiet=True)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny trained RPGAN run: 3 buckets of 3, 4 and 2 blocks."""
    return _train(tiny_run(), tmp_path_factory.mktemp("explore") / "run")


def _client(run: Path, seed: int = 0, results: Path | None = None):
    explorer = Explorer(str(run), "cpu", seed)
    return explorer, create_app(explorer, results).test_client()


def _view(client, query: str) -> dict:
    response = client.get(f"/api/view?{query}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_view_holds_the_image_and_every_block_of_every_bucket(run):
    explorer, client = _client(run)
    model = client.get("/api/model").get_json()
    assert model["mode"] == "paths" and model["blocks"] == [3, 4, 2] and model["results"] == []
    view = client.get("/api/random?index=0").get_json()
    path = view["state"]["path"]
    assert view["state"]["path_text"] == ",".join(map(str, path))
    assert [len(row["items"]) for row in view["rows"]] == [3, 4, 2]
    assert [row["bucket"] for row in view["rows"]] == [1, 2, 3]  # numbered as the labels and the README do
    for i, row in enumerate(view["rows"]):  # each bucket's row holds the path's own image at its block
        assert row["clickable"] and [item["block"] for item in row["items"]] == list(range(len(row["items"])))
        assert row["items"][path[i]]["image"] == view["image"]
    assert view["image"].startswith("data:image/png;base64,")


def test_a_swap_renders_the_other_rows_and_shows_the_swapped_block(run):
    explorer, client = _client(run)
    before = _view(client, "path=0,1,1")
    assert before["cached_rows"] == 0
    after = _view(client, "path=2,1,1")  # bucket 1's block 0 -> 2
    assert after["cached_rows"] == 1  # its own row does not depend on its block: from the cache
    assert after["image"] == before["rows"][0]["items"][2]["image"] != before["image"]
    assert after["rows"][0] == before["rows"][0] and after["rows"][1] != before["rows"][1]
    back = _view(client, "path=0,1,1")
    assert back["cached_rows"] == 3 and back == before | {"cached_rows": 3}


def test_random_states_follow_the_seed(run):
    def paths(seed: int) -> list[list[int]]:
        explorer = Explorer(str(run), "cpu", seed)
        return [list(explorer.random_state(k).path) for k in range(6)]

    assert paths(0) == paths(0)
    assert paths(0) != paths(1)


@pytest.mark.parametrize("query, message", [
    ("", "names no path"),
    ("path=9,0,0", "bucket 1 has blocks 0..2, got 9"),
    ("path=0,0", "needs 3 block indices"),
    ("path=a,b,c", "comma-separated block indices"),
    ("path=0,0,0&z=5", "takes no z"),
    ("path=0,0,0&coefficients=1,2", "only an EigenGAN"),
    ("path=0,0,0&noise=1.9", "takes no noise"),  # a path model: not echoed back and ignored
    ("path=0,0,0&foo=1", "unknown parameter 'foo'"),
])
def test_a_bad_view_request_is_a_one_line_400(run, query, message):
    _, client = _client(run)
    response = client.get(f"/api/view?{query}")
    error = response.get_json()["error"]
    assert response.status_code == 400 and message in error and "\n" not in error and "Traceback" not in error


def test_unknown_routes_and_plots_are_json_404s(run, tmp_path):
    _, client = _client(run, results=tmp_path)
    for route in ("/api/nothing", "/api/results/secret.txt", "/api/results/..%2F..%2Fconfig.json",
                  "/api/results/responsibility.png", "/api/random?index=-1", "/api/random?index=%C2%B2",
                  "/api/random?index=9" + "9" * 40):
        response = client.get(route)
        assert response.status_code in (400, 404) and response.get_json()["error"], route
    assert client.get("/").status_code == 200 and b"explore.js" in client.get("/").data


def test_a_vanished_checkpoint_is_a_410_and_the_model_stays(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    explorer, client = _client(copy)
    shown = _view(client, "path=1,2,0")
    shutil.rmtree(copy)
    response = client.post("/api/reload")
    assert response.status_code == 410 and "keeps showing the model loaded before" in response.get_json()["error"]
    assert _view(client, "path=1,2,0")["image"] == shown["image"]


def test_a_standard_gan_shows_noise_injection_per_layer(tmp_path):
    standard = dataclasses.replace(tiny_run(), model=dataclasses.replace(TINY_MODELS["resnet"], blocks=(1, 1, 1),
                                                                         input="gaussian"))
    _, client = _client(_train(standard, tmp_path / "standard"))
    assert client.get("/api/model").get_json()["mode"] == "noise"
    quiet, loud = _view(client, "path=0,0,0&z=3&noise=0"), _view(client, "path=0,0,0&z=3&noise=1")
    assert [len(r["items"]) for r in loud["rows"]] == [ROW_DRAWS] * 3 and not loud["rows"][0]["clickable"]
    assert {item["image"] for item in quiet["rows"][1]["items"]} == {quiet["image"]}  # no noise: the image
    assert len({item["image"] for item in loud["rows"][1]["items"]}) > 1
    assert _view(client, "path=0,0,0&z=4")["image"] != quiet["image"]  # another z, another image
    response = client.get("/api/view?path=0,0,0&z=3&noise=nan")
    assert response.status_code == 400 and "noise must be in [0, 2]" in response.get_json()["error"]


def test_an_eigengan_takes_its_coefficients(tmp_path):
    _, client = _client(_train(tiny_run("eigengan"), tmp_path / "eigen"))
    view = _view(client, "path=0,0,0&z=7")
    coefficients = view["state"]["coefficients"]
    assert len(coefficients) == 3 * 3 and len(view["rows"]) == 3
    moved = coefficients[:4] + [-3.0] + coefficients[5:]
    changed = _view(client, "path=0,0,0&z=7&coefficients=" + ",".join(map(str, moved)))
    assert changed["state"]["coefficients"] == moved and changed["image"] != view["image"]
    response = client.get("/api/view?path=0,0,0&z=7&coefficients=" + ",".join(["9"] * 9))
    assert response.status_code == 400 and "[-3, 3]" in response.get_json()["error"]


@pytest.mark.slow  # Inception on the CPU
def test_the_runs_analysis_results_are_shown_and_a_deleted_plot_is_a_404(rpgan, run, tmp_path):
    out = tmp_path / "analysis"
    for args in (["analyze", "--evaluations", 2, "--grids", 0], ["dissect", "--n", 4, "--units", 2, "--strips", 1],
                 ["directions", "--bucket", 2, "--directions", 2, "--steps", 2, "--batch", 4],
                 ["analyze", "--evaluations", 3, "--grids", 0]):  # a second job into the same folder
        code, _, err = rpgan(*args, "--ckpt", run, "--workers", 0, "--out", out)
        assert code == 0, err
    summary = pd.read_parquet(out / "responsibility_summary")  # the README's snippet, after two jobs
    assert summary["job_id"].nunique() == 2
    summary = summary[summary.created_at == summary.created_at.max()]
    pivot = summary[summary.distance == "semantic"].pivot(index="layer", columns="method", values="ratio_mean")
    assert list(pivot.index) == [1, 2, 3]
    _, client = _client(run, results=out)
    results = {r["name"]: r for r in client.get("/api/model").get_json()["results"]}
    assert list(results) == ["responsibility", "dissection", "directions"]
    assert all(r["error"] is None and r["plot"] for r in results.values())
    assert results["responsibility"]["jobs"] == 2 and results["dissection"]["jobs"] == 1
    responsibility = results["responsibility"]["table"]
    assert responsibility["columns"] == ["distance", "layer 1", "layer 2", "layer 3"]
    assert responsibility["rows"][0][:2] == ["semantic", "1.00 ± 0.00"]  # D_{1->1} is 1 by definition
    assert results["dissection"]["table"]["columns"][1:] == ["layer 1", "layer 2"]  # buckets 1..n-1
    assert [row[0] for row in results["directions"]["table"]["rows"]] == [0, 1]
    for r in results.values():
        assert client.get(f"/api/results/{r['plot']}").data[:4] == b"\x89PNG"
    (out / "responsibility.png").unlink()
    response = client.get("/api/results/responsibility.png")
    assert response.status_code == 404 and "rpgan analyze" in response.get_json()["error"]


def test_the_page_loads_nothing_from_outside_its_server():
    static = Path(__file__).resolve().parents[1] / "analysis" / "explore" / "static"
    files = sorted(static.iterdir())
    assert {f.name for f in files} == {"index.html", "explore.css", "explore.js"}
    for f in files:  # every URL is a path on the server: no scheme, no protocol-relative //host
        assert not re.search(r"(https?:|wss?:)?//[\w.-]+\.\w", f.read_text().replace("// ", "")), f.name


def test_the_command_refuses_a_missing_checkpoint_in_one_line(rpgan, tmp_path):
    code, _, err = rpgan("explore", "--ckpt", tmp_path / "nothing")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_another_host_is_warned_about_and_a_busy_port_is_one_line(rpgan, run):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = rpgan("explore", "--ckpt", run, "--host", "0.0.0.0", "--port", port)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2
    assert "warning: --host 0.0.0.0" in lines[0] and f"cannot listen on 0.0.0.0:{port}" in lines[1]
    code, _, err = rpgan("explore", "--ckpt", run, "--host", "203.0.113.5", "--port", 0)  # TEST-NET-3: not ours
    assert code == 2 and "not an address of this machine" in err.strip().splitlines()[-1] and "--port" not in err


@pytest.mark.slow  # a real server process
def test_the_command_serves_on_loopback_and_prints_the_url(run):
    proc = subprocess.Popen([RPGAN, "explore", "--ckpt", str(run), "--port", "0", "--seed", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("explore at "):
                address = line.split()[2]
                break
        assert address.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(address + "api/random?index=0", timeout=60) as response:
            view = json.load(response)
        assert view["state"]["path"] == list(Explorer(str(run), "cpu", 2).random_state(0).path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- the page in a real browser ------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def _browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed: pip install -e '.[test]'")
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver); .ci/run does")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)  # no driver download


def test_the_server_serves_this_machine_only_and_answers_json_to_what_its_http_layer_refuses(run, tmp_path):
    """DNS rebinding (a foreign Host), another site's POST, and a query too long for the HTTP
    layer (414) are refused with one-line JSON, over a real socket."""
    import http.client

    server = listen(create_app(Explorer(str(run), "cpu", 0), tmp_path), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def ask(method: str, path: str, headers: dict | None = None) -> tuple[int, str, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type"), json.loads(response.read())
        finally:
            connection.close()

    try:
        status, kind, body = ask("GET", "/api/model", {"Host": "evil.example"})
        assert status == 403 and kind == "application/json" and "this machine only" in body["error"]
        assert ask("GET", "/api/model", {"Host": f"localhost:{server.port}"})[0] == 200
        status, _, body = ask("POST", "/api/reload", {"Origin": "http://evil.example"})
        assert status == 403 and "cross-origin" in body["error"]
        assert ask("POST", "/api/reload", {"Origin": f"http://127.0.0.1:{server.port}"})[0] == 200
        status, kind, body = ask("GET", "/api/view?path=" + "0," * 50_000)
        assert status == 414 and kind == "application/json" and "414" in body["error"]
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture
def page(run, tmp_path):
    explorer = Explorer(str(run), "cpu", 0)
    server = listen(create_app(explorer, tmp_path), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    browser = _browser()
    try:
        yield browser, url(server)
    finally:
        browser.quit()
        server.shutdown()
        thread.join()


@pytest.mark.slow  # a browser
def test_clicking_a_block_swaps_it_into_the_path_and_back_returns(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, address = page
    browser.get(address)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".row")) == 3)
    path = browser.find_element(By.ID, "path").get_attribute("value")
    image = browser.find_element(By.ID, "image").get_attribute("src")
    blocks = [int(v) for v in path.split(",")]
    other = (blocks[1] + 1) % 4  # bucket 2 has 4 blocks
    browser.find_element(By.CSS_SELECTOR, f'.row[data-bucket="2"] img[data-block="{other}"]').click()
    swapped = ",".join(map(str, [blocks[0], other, blocks[2]]))
    wait.until(lambda b: b.find_element(By.ID, "path").get_attribute("value") == swapped)
    assert browser.find_element(By.ID, "image").get_attribute("src") != image
    current = browser.find_element(By.CSS_SELECTOR, '.row[data-bucket="2"] img.current')
    assert current.get_attribute("data-block") == str(other)
    assert browser.find_element(By.ID, "error").get_attribute("hidden")
    browser.find_element(By.TAG_NAME, "body").send_keys("b")  # back to the first path
    wait.until(lambda b: b.find_element(By.ID, "path").get_attribute("value") == path)
    assert browser.find_element(By.ID, "image").get_attribute("src") == image
