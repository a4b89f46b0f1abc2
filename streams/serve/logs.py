"""What `reco serve` prints: faust, mode and aiokafka log through Python logging, and left alone
they print ~80 INFO lines with ASCII tables at start-up, a line per retry during a broker outage
and a traceback for every failure `reco serve` already explains in one line of its own."""
from __future__ import annotations

import logging

from streams.clients import _FirstOfEachMessage

LIBRARIES = ("faust", "mode", "aiokafka")


def _from_library(record: logging.LogRecord) -> bool:
    return record.name.split(".", 1)[0] in LIBRARIES


class _LibraryRepeats(_FirstOfEachMessage):
    """The librdkafka filter, for the libraries' records only. It sits on the handlers: a
    filter on the `aiokafka` logger would not see records of its children."""

    def filter(self, record: logging.LogRecord) -> bool:
        return super().filter(record) if _from_library(record) else True


class _Explained(logging.Filter):
    """Drops the libraries' tracebacks ("Crashed reason=…") for the errors `reco serve` ends
    with a one-line message of its own."""

    def __init__(self, explained: tuple[type[BaseException], ...]):
        super().__init__()
        self.explained = explained

    def filter(self, record: logging.LogRecord) -> bool:
        if not _from_library(record):
            return True
        error = record.exc_info[1] if record.exc_info else None
        if error is None and record.args:  # log.exception("Crashed reason=%r", reason) after the fact
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            error = next((a for a in args if isinstance(a, BaseException)), None)
        return not isinstance(error, self.explained)


def quiet_libraries(level: str, explained: tuple[type[BaseException], ...]) -> None:
    """The libraries log at WARNING and above unless RECO_LOG_LEVEL=DEBUG; their repeats
    collapse and the explained errors lose their tracebacks (on every root handler: the CLI's
    logging.basicConfig one)."""
    if level.upper() != "DEBUG":
        for name in LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Explained(explained))
        handler.addFilter(_LibraryRepeats())
