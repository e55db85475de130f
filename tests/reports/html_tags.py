"""Parse a report the way a browser would: its real elements and attributes (escaped text is not a tag)."""

from html.parser import HTMLParser


class PageTags(HTMLParser):
    """The real elements and attributes of the page, as a browser would parse them (escaped text is not a tag)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.attrs: list[tuple[str, str]] = []
        self.scripts: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.names.add(tag)
        self.attrs += [(name, value or "") for name, value in attrs]
        if tag == "script":
            self.scripts.append({name: value or "" for name, value in attrs})
