"""The writable cache: $PRODTUNE_CACHE when it can be written, else $HOME's (the images' case)."""

from __future__ import annotations

from pathlib import Path

from components.common.cache import writable_cache_dir


def test_the_configured_root_is_used_when_writable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PRODTUNE_CACHE", str(tmp_path / "cache"))
    assert writable_cache_dir("gate") == tmp_path / "cache" / "gate"
    assert (tmp_path / "cache" / "gate").is_dir()


def test_a_root_that_cannot_be_written_falls_back_to_home(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")  # (chmod would not stop root: a file in the path does)
    monkeypatch.setenv("PRODTUNE_CACHE", str(blocker / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert writable_cache_dir("onnx") == tmp_path / "home" / ".cache" / "prodtune" / "onnx"
