"""Process titles, so `ps` shows what runs (`occasional: <name>`)."""

from __future__ import annotations


def set_title(title: str) -> None:
    try:
        import prctl

        prctl.set_proctitle(title)
        prctl.set_name(title.removeprefix("occasional: ")[:15])
    except Exception:
        pass
