"""Long texts become overlapping windows that fit and map back exactly."""

from __future__ import annotations

from deepke_llm.windows import split_windows


def words(text: str) -> int:
    return len(text.split())


def test_short_text_is_one_window():
    (window,) = split_windows("a b c", 10, words)
    assert (window.text, window.start, window.first, window.last) == ("a b c", 0, True, True)


def test_long_text_windows_fit_overlap_and_cover_everything():
    text = " ".join(f"Sentence number {i} ends here." for i in range(200))
    windows = split_windows(text, 50, words, overlap=0.2)
    assert len(windows) > 5
    assert all(words(w.text) <= 50 for w in windows)
    assert all(text[w.start:w.start + len(w.text)] == w.text for w in windows)
    assert windows[0].start == 0 and windows[-1].start + len(windows[-1].text) == len(text)
    for a, b in zip(windows, windows[1:], strict=False):
        assert b.start < a.start + len(a.text), "consecutive windows must overlap"
    # cuts fall after sentence ends, not inside words
    assert all(w.text.rstrip().endswith(".") for w in windows[:-1])


def test_chinese_text_without_spaces():
    text = "这是一个很长的句子。" * 100
    windows = split_windows(text, 40, len)
    assert all(len(w.text) <= 40 for w in windows)
    assert "".join(w.text for w in windows).replace(" ", "") != ""
    covered = set()
    for w in windows:
        covered.update(range(w.start, w.start + len(w.text)))
    assert covered == set(range(len(text)))
