"""The web page in a real headless browser (Debian's Chromium driven by Playwright), against a
real server whose backend is the local rule server: typed text -> highlighted spans with their
types, a relation row and arc, inline types, the Chinese example, downloads and a batch job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_server import rule_server
from serve_helpers import rule_model, running_app

from deepke_llm.backends.registry import load_backend

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's Chromium (/usr/bin/chromium) is not installed; "
                                       ".ci/run installs it")


@pytest.fixture(scope="module")
def page_url():
    with rule_server(answer=rule_model) as (url, _):
        backend = load_backend(base_url=url, api_model="m", max_concurrency=8)
        with running_app(backend) as (base, _app):
            yield base


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, page_url):
    context = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(page_url)
    page.wait_for_selector("#schema option[value='conll03']", state="attached")
    yield page
    context.close()
    # everything the page loaded came from the server itself (no CDN)
    assert requests and all(url.startswith(page_url) or url.startswith("blob:")
                            for url in requests), requests


def marks(page) -> list[tuple[str, str]]:
    found = page.eval_on_selector_all(
        "#doc mark.ent", "ms => ms.map(m => [m.firstChild.textContent, m.dataset.type])")
    return [tuple(pair) for pair in found]


def extract(page, text: str) -> None:
    page.fill("#text", text)
    page.click("#run")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('done')")


def test_typed_text_is_highlighted_by_type_and_downloads_as_jsonl(page, tmp_path):
    extract(page, "Barack Obama visited Paris with Angela Merkel.")
    assert marks(page) == [("Barack Obama", "person"), ("Paris", "location"),
                           ("Angela Merkel", "location")]
    label = page.inner_text("#doc mark.ent >> nth=0 >> span")
    assert label.lower() == "person"
    assert page.inner_text("#doc").startswith("Barack Obama")
    with page.expect_download() as download:
        page.click("#download-jsonl")
    (record,) = [json.loads(x) for x in Path(download.value.path()).read_text().splitlines()]
    assert (record["id"], record["entities"][0]) == (
        "text-1", {"type": "person", "text": "Barack Obama", "start": 0, "end": 12})
    page.screenshot(path=str(tmp_path / "web-page.png"), full_page=True)
    assert (tmp_path / "web-page.png").read_bytes()[:4] == b"\x89PNG"


def test_a_relation_is_a_table_row_and_an_arc(page):
    page.select_option("#task", "re")
    page.wait_for_selector("#schema option[value='conll04']", state="attached")
    page.select_option("#schema", "conll04")
    page.wait_for_function("document.querySelector('#types').value.includes('live in')")
    extract(page, "Barack Obama lives in Paris.")
    rows = page.eval_on_selector_all("#relations tbody tr",
                                     "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    assert rows == [["Barack Obama", "live in", "Paris"]]
    assert marks(page) == [("Barack Obama", "person"), ("Paris", "location")]
    assert page.eval_on_selector_all("#graph path.arc", "ps => ps.length") == 1
    assert page.eval_on_selector_all("#graph text", "ts => ts.map(t => t.textContent)") == [
        "live in", "Barack Obama", "Paris"]


def test_edited_types_send_an_inline_schema(page):
    page.click("#types-box summary")
    page.fill("#types", "hero")
    assert page.inner_text("#types-mode") == "(inline schema)"
    extract(page, "Wonder Woman saved Gotham.")
    assert marks(page) == [("Wonder Woman", "hero"), ("Gotham", "hero")]


def test_the_chinese_example_picks_a_chinese_schema(page):
    page.click("#example-zh")
    page.wait_for_function("document.querySelector('#schema').value === 'msra'")
    assert page.input_value("#text") == "习近平在北京会见了法国总统马克龙。"
    assert page.input_value("#types").splitlines() == ["人物", "地理位置", "组织机构"]
    page.click("#example-en")
    page.wait_for_function("document.querySelector('#schema').value === 'conll03'")
    assert page.input_value("#text").startswith("Barack Obama met Angela Merkel")


def test_an_uploaded_file_runs_as_a_job_with_progress_and_a_download(page, tmp_path):
    upload = tmp_path / "news.jsonl"
    upload.write_text('{"id": "n1", "text": "Alice met Bob."}\n'
                      '{"id": "n2", "text": "Carol left Rome."}\n', encoding="utf-8")
    page.set_input_files("#job-file", str(upload))
    page.click("#job-run")
    page.wait_for_selector("#job-download", state="visible")
    assert page.inner_text("#job-status") == "done: 2 documents, 4 records"
    assert page.eval_on_selector("#job-progress", "p => p.value") == 1
    with page.expect_download() as download:
        page.click("#job-download")
    records = [json.loads(x) for x in Path(download.value.path()).read_text().splitlines()]
    assert download.value.suggested_filename == "news.records.jsonl"
    assert [(r["id"], [e["text"] for e in r["entities"]]) for r in records] == [
        ("n1", ["Alice", "Bob"]), ("n2", ["Carol", "Rome"])]
