"""report.html of the corpus run, opened in a real headless Chromium."""

from tests.data.curate.conftest import scenes_of

IMAGES_JS = "() => Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])"


def test_report_shows_the_funnel_reasons_and_thumbnails(run, browser):
    result, audit = run
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(result.report.as_uri(), wait_until="load")
    funnel = [row.split("\t") for row in page.locator("#funnel").inner_text().splitlines()[1:]]
    images = page.evaluate(IMAGES_JS)
    body = page.inner_text("body")
    assert [(label, int(count)) for label, count in funnel] == result.funnel
    scenes = [a for a in audit if a["type"] == "scene"]
    assert len(images) == 2 + len(scenes)  # funnel chart, histograms, one thumbnail per scene
    assert all(complete and width > 0 for complete, width, _ in images), images
    for reason in (
        "blurry",
        "static",
        "near_duplicate",
        "exact_duplicate",
        "empty",
        "truncated",
        "not_video",
    ):
        assert reason in body
    assert scenes_of(audit, "still.mp4")[0]["detail"] in body
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
