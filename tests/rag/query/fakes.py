"""A real Generator for tests: answers with a fixed text and records what it was sent."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


class RecordingGenerator:
    """Implements the Generator protocol; ``messages`` holds every prompt it got."""

    name = "recording"
    context_length = 4096

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.messages: list[list[dict[str, str]]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> str:
        self.messages.append(list(messages))
        return self.reply

    def stream(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> Iterator[str]:
        """The reply word by word, so streaming code sees several pieces."""
        self.messages.append(list(messages))
        for word in self.reply.split(" "):
            yield word + " "
