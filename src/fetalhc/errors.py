"""fetalhc's exceptions and per-image outcomes, beneath every stage.

`FetalHCError` is a problem with the user's input (file, flag, data) rather than a bug: the
CLI turns it into one line and exit code 2. Its subclasses say what kind of problem, so a
caller (the web service's HTTP codes, a batch's row) decides by type, not by the message.
The image errors are also ValueErrors: code that treats "this image is unusable" as a
ValueError keeps working. `Status` is the outcome of measuring one image.
"""

from __future__ import annotations

from enum import Enum


class FetalHCError(Exception):
    """A problem with the user's input (file, flag, data) rather than a bug."""


class UnreadableImage(FetalHCError, ValueError):
    """An image that cannot be read or decoded (corrupt, truncated, not an image)."""


class EmptyImage(UnreadableImage):
    """A file or upload with no bytes."""


class NotAnImage(UnreadableImage):
    """Bytes that no reader recognises as an image."""


class ImageTooLarge(UnreadableImage):
    """An image over the pixel limit (`max_image_pixels`), refused before decoding."""


class UnsupportedImage(UnreadableImage):
    """A recognised image that fetalhc cannot use (a pixel format or codec it lacks)."""


class ImplausiblePixelSize(FetalHCError, ValueError):
    """A pixel size that is not a positive number in the plausible range of mm."""


class Status(str, Enum):
    """The outcome of measuring one image. `ok` only when HC is a trustworthy number of
    millimetres; every other value says why there is none (a detail may follow, see
    `status_text`). A str, so `result.status == "ok"` reads as it always did."""

    OK = "ok"
    NO_HEAD = "no_head"
    NO_PIXEL_SIZE = "no_pixel_size"
    IMPLAUSIBLE_PIXEL_SIZE = "implausible_pixel_size"
    IMPLAUSIBLE_HC = "implausible_hc"
    UNREADABLE = "unreadable"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value

    @property
    def failed(self) -> bool:
        """The image could not be measured at all (as opposed to measured without HC)."""
        return self in (Status.UNREADABLE, Status.ERROR)


def status_text(status: Status, detail: str = "") -> str:
    """How a status is written in CSV rows and JSON: `implausible_hc: HC 12 mm is ...`."""
    return f"{status.value}: {detail}" if detail else status.value


def parse_status(text: str) -> tuple[Status, str]:
    """The inverse of `status_text` (a row read back from a partial CSV)."""
    head, _, detail = str(text).partition(": ")
    return Status(head), detail


def one_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's message as one short line (pydicom's run over several)."""
    return " ".join(str(exc).split())[:limit]


def escaped(text, limit: int = 200) -> str:
    """A text for one line of a log or a message: control characters (a newline would
    forge a line) and non-ASCII escaped, length bounded."""
    return str(text).encode("unicode_escape").decode("ascii")[:limit]
