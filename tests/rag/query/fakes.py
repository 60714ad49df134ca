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
        self.closed_early = False

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> str:
        self.messages.append(list(messages))
        return self.reply

    def stream(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> Iterator[str]:
        """The reply word by word, so streaming code sees several pieces.

        ``closed_early`` records a consumer that closed the stream before its end.
        """
        self.messages.append(list(messages))
        finished = False
        try:
            for word in self.reply.split(" "):
                yield word + " "
            finished = True
        finally:
            self.closed_early = not finished
